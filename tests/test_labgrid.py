"""A labgrid lab on loopback: coordinator and exporter on 127.0.0.1, the
exporter serving an emulated board's pty through ser2net; the nightly suite
runs on two local emulated boards and on the labgrid place at once."""
import shutil
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from tinyhil.boards import get_board
from tinyhil.device.qemu import QemuProcess, wait_for_pty
from tinyhil.regress.inventory import parse_inventory
from tinyhil.regress.nightly import pinned_images, regress
from tinyhil.regress.suite import parse_suite
from tinyhil.report.junit import validate_junit

pytestmark = pytest.mark.device

PLACE = "tinyhil-remote-m4"


def tool(name: str) -> str | None:
    beside_python = Path(sys.executable).with_name(name)
    return str(beside_python) if beside_python.exists() else shutil.which(name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def coordinator(tmp_path):
    missing = [t for t in ("labgrid-coordinator", "labgrid-exporter", "labgrid-client", "ser2net")
               if not tool(t)]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (pip: labgrid, apt: ser2net; scripts/setup.sh)")
    port = free_port()
    (tmp_path / "coordinator").mkdir()
    process = subprocess.Popen([tool("labgrid-coordinator"), "-l", f"127.0.0.1:{port}"],
                               cwd=tmp_path / "coordinator", stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield f"127.0.0.1:{port}"
    finally:
        stop(process)


def client(address: str, *args: str) -> None:
    subprocess.run([tool("labgrid-client"), "-x", address, "-p", PLACE, *args], check=True,
                   capture_output=True, text=True)


def test_nightly_on_two_local_boards_and_a_labgrid_place(tmp_path, coordinator):
    baseline = tmp_path / "luts"
    (baseline / "qemu-m4").mkdir(parents=True)
    for suffix in (".csv", ".meta.json"):
        shutil.copy(ROOT / "luts/qemu-m4" / f"micronas-128x9-c6{suffix}", baseline / "qemu-m4")
    suite = parse_suite({"name": "nightly-lab", "repeats": 2, "per_image": 2, "lut_sample": 4,
                         "deployments": ""}, "suite")
    boards = parse_inventory({"boards": [
        {"name": "m4-a", "board": "qemu-m4"}, {"name": "m4-b", "board": "qemu-m4"},
        {"name": "remote-m4", "board": "qemu-m4",
         "labgrid": {"coordinator": coordinator, "place": PLACE}}]})

    # the lab's side: the remote board runs its lane's image; the exporter serves its pty
    image = pinned_images(boards, suite, baseline)["remote-m4"]
    config = get_board("qemu-m4")
    with QemuProcess(config.qemu_machine, image.elf, config.icount_shift) as qemu:
        wait_for_pty(qemu.pty)
        exporter_config = tmp_path / "exporter.yaml"
        exporter_config.write_text(yaml.safe_dump(
            {PLACE: {"console": {"cls": "RawSerialPort", "port": qemu.pty, "speed": 115200}}}))
        exporter = subprocess.Popen(
            [tool("labgrid-exporter"), "-c", coordinator, "--name", "tinyhil-test",
             "--hostname", "127.0.0.1", str(exporter_config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            client(coordinator, "create")
            client(coordinator, "add-match", f"tinyhil-test/{PLACE}/*")
            result = regress(boards, suite, baseline, tmp_path / "out", tmp_path / "out/junit.xml",
                             timeout=10.0, trend=False)
        finally:
            stop(exporter)
        assert qemu.alive()  # the remote board was used, not restarted

    rows = result.rows
    assert set(rows["environment"]) == {"qemu-m4", "qemu-m4@remote-m4"}
    remote = rows[rows["environment"] == "qemu-m4@remote-m4"]
    assert set(remote["farm_board"]) == {"remote-m4"} and remote["case"].nunique() == 4
    assert set(rows["verdict"]) == {"pass"}, list(rows.loc[rows["verdict"] != "pass", "detail"])
    local = rows[rows["environment"] == "qemu-m4"]
    assert set(local["farm_board"]) == {"m4-a", "m4-b"}
    # the same op measured locally and through labgrid: the same exact count
    both = local.merge(remote, on=["case", "metric"])
    assert len(both) == 8 and (both["measured_x"] == both["measured_y"]).all()
    validate_junit(result.junit_path)
    suites = [s.get("name") for s in ET.parse(result.junit_path).getroot().iter("testsuite")]
    assert suites == ["nightly-lab.qemu-m4", "nightly-lab.qemu-m4@remote-m4"]
