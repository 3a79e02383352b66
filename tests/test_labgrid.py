"""A labgrid lab on loopback: coordinator and exporter on 127.0.0.1, the
exporter serving an emulated board's pty through ser2net; the nightly suite
runs on two local emulated boards and on the labgrid place at once."""
import ipaddress
import os
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
from tinyhil.board_catalog import get_board
from tinyhil.device.qemu import QemuProcess, wait_for_pty
from tinyhil.execute.inventory import parse_inventory
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


LOOPBACK_SER2NET = """#!{python}
# ser2net for this test's lab: labgrid's exporter asks ser2net to listen on every
# interface ("tcp,PORT"); the lab is loopback only, so the accepter gets 127.0.0.1.
import os, re, sys
args = [re.sub(r",tcp,(\\d+)$", r",tcp,127.0.0.1,\\1", a) for a in sys.argv[1:]]  # ser2net >= 4.2
args = [re.sub(r"^(\\d+):telnet:", r"127.0.0.1,\\1:telnet:", a) for a in args]  # ser2net 3 (-C)
os.execv({real!r}, [{real!r}, *args])
"""


def loopback_ser2net(directory: Path) -> dict:
    """The environment of an exporter whose ser2net listens on 127.0.0.1 only."""
    directory.mkdir(parents=True, exist_ok=True)
    wrapper = directory / "ser2net"
    wrapper.write_text(LOOPBACK_SER2NET.format(python=sys.executable, real=tool("ser2net")))
    wrapper.chmod(0o755)
    return {**os.environ, "PATH": f"{directory}{os.pathsep}{os.environ.get('PATH', '')}"}


def listening_addresses(parent_pid: int, name: str = "ser2net") -> set[str]:
    """IPv4/IPv6 addresses on which the `name` children of `parent_pid` listen (from /proc)."""
    inodes = set()
    for proc in Path("/proc").iterdir():
        try:
            stat = (proc / "stat").read_text()
            comm, ppid = stat[stat.index("(") + 1:stat.rindex(")")], int(stat[stat.rindex(")") + 2:].split()[1])
            if comm == name and ppid == parent_pid:
                inodes |= {os.readlink(fd)[8:-1] for fd in (proc / "fd").iterdir()
                           if os.readlink(fd).startswith("socket:[")}
        except (OSError, ValueError):
            continue  # a process that ended meanwhile
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                raw = bytes.fromhex(fields[1].split(":")[0])
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))  # host-order words
                found.add(str(ipaddress.ip_address(words)))
    return found


def client(address: str, *args: str) -> None:
    subprocess.run([tool("labgrid-client"), "-x", address, "-p", PLACE, *args], check=True,
                   capture_output=True, text=True)


@pytest.mark.slow
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
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=loopback_ser2net(tmp_path / "bin"))
        try:
            client(coordinator, "create")
            client(coordinator, "add-match", f"tinyhil-test/{PLACE}/*")
            listening = set()  # where the place's ser2net listens while the remote board works

            def on_row(row):
                if row.farm_board == "remote-m4":
                    listening.update(listening_addresses(exporter.pid))

            result = regress(boards, suite, baseline, tmp_path / "out", tmp_path / "out/junit.xml",
                             timeout=10.0, on_row=on_row, trend=False)
        finally:
            stop(exporter)
        assert listening == {"127.0.0.1"}  # the board's serial port is reachable from this host only
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
