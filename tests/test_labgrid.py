"""A labgrid lab on loopback: coordinator and exporter on 127.0.0.1, the
exporter serving an emulated board's pty through ser2net; the nightly suite
runs on two local emulated boards and on the labgrid place at once."""
import ipaddress
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from tinyhil.board_catalog import get_board
from tinyhil.device.labgrid_board import LabgridError
from tinyhil.device.qemu import QemuProcess, wait_for_pty
from tinyhil.execute.inventory import parse_inventory
from tinyhil.regress.nightly import pinned_images, regress
from tinyhil.regress.suite import parse_suite
from tinyhil.report.junit import validate_junit

pytestmark = pytest.mark.device

PLACE = "tinyhil-remote-m4"
HELD = "tinyhil-held-m4"  # each test's places are its own: the coordinator is the module's
NO_DEBUGGER = "tinyhil-nodebug-m4"


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


@pytest.fixture(scope="module")
def coordinator(tmp_path_factory):
    """One coordinator for the module's tests; each test has places of its own."""
    missing = [t for t in ("labgrid-coordinator", "labgrid-exporter", "labgrid-client", "ser2net")
               if not tool(t)]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (pip: labgrid, apt: ser2net; scripts/setup.sh)")
    port = free_port()
    directory = tmp_path_factory.mktemp("coordinator")
    process = subprocess.Popen([tool("labgrid-coordinator"), "-l", f"127.0.0.1:{port}"],
                               cwd=directory, stdout=subprocess.DEVNULL,
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
            listening = set()  # where the place's ser2net listens while the suite runs
            running = threading.Event()

            def watch():  # rows reach the caller after the board let go: look while it works
                while not running.wait(0.05):
                    listening.update(listening_addresses(exporter.pid))

            watcher = threading.Thread(target=watch)
            watcher.start()
            try:
                result = regress(boards, suite, baseline, tmp_path / "out", tmp_path / "out/junit.xml",
                                 timeout=10.0, trend=False)
            finally:
                running.set()
                watcher.join()
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


# ---- reservations, waiting, flashing ------------------------------------------------

def lab_client(address: str, place: str, *args: str, user: str = "") -> str:
    env = {**os.environ, **({"LG_USERNAME": user} if user else {})}
    return subprocess.run([tool("labgrid-client"), "-x", address, "-p", place, *args], check=True,
                          capture_output=True, text=True, env=env).stdout


class Exporter:
    """labgrid-exporter on loopback serving `places` ({name: resources}), each place
    created on the coordinator, matched and tagged."""

    def __init__(self, coordinator: str, directory: Path, places: dict, tags: dict | None = None, env=None):
        self.config = directory / "exporter.yaml"
        self.config.write_text(yaml.safe_dump(places))
        self.process = subprocess.Popen(
            [tool("labgrid-exporter"), "-c", coordinator, "--name", "tinyhil-test", "--hostname", "127.0.0.1",
             str(self.config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=env or loopback_ser2net(directory / "bin"))
        try:
            for place in places:
                lab_client(coordinator, place, "create")
                lab_client(coordinator, place, "add-match", f"tinyhil-test/{place}/*")
                if tags:
                    lab_client(coordinator, place, "set-tags", *(f"{k}={v}" for k, v in tags.items()))
        except BaseException:
            stop(self.process)
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        stop(self.process)


@pytest.fixture(scope="module")
def measured_baseline(tmp_path_factory) -> Path:
    """Baselines measured here with today's firmware: 12 MicroNAS ops on a local board."""
    from tinyhil.measure.characterize import Characterizer

    luts = tmp_path_factory.mktemp("baseline") / "luts"
    result = Characterizer(get_board("qemu-m4"), luts).run("micronas", 29, 12, 9, limit=12)
    assert result.measured_now == 12
    return luts


@pytest.mark.slow
def test_places_reserved_by_tag_form_one_lane(tmp_path, coordinator, measured_baseline):
    baseline = measured_baseline
    suite = parse_suite({"name": "tagged", "repeats": 1, "per_image": 2, "lut_sample": 6, "deployments": ""},
                        "suite")
    reserve = {"coordinator": coordinator, "reserve": {"board": "qemu-m4"}, "wait": 30}
    boards = parse_inventory({"boards": [{"name": "rack-a", "board": "qemu-m4", "labgrid": reserve},
                                         {"name": "rack-b", "board": "qemu-m4", "labgrid": reserve}]})
    assert {b.lane for b in boards} == {"qemu-m4@board=qemu-m4"}
    images = pinned_images(boards, suite, baseline)
    assert images["rack-a"].image_id == images["rack-b"].image_id  # one lane, one image on every place
    config = get_board("qemu-m4")
    with QemuProcess(config.qemu_machine, images["rack-a"].elf, config.icount_shift) as qa, \
            QemuProcess(config.qemu_machine, images["rack-a"].elf, config.icount_shift) as qb:
        wait_for_pty(qa.pty)
        wait_for_pty(qb.pty)
        places = {f"m4-{n}": {"console": {"cls": "RawSerialPort", "port": q.pty, "speed": 115200}}
                  for n, q in (("a", qa), ("b", qb))}
        with Exporter(coordinator, tmp_path, places, tags={"board": "qemu-m4"}):
            result = regress(boards, suite, baseline, tmp_path / "out", timeout=10.0, trend=False)
    rows = result.rows
    assert set(rows["verdict"]) == {"pass"}, list(rows.loc[rows["verdict"] != "pass", "detail"])
    assert set(rows["environment"]) == {"qemu-m4@board=qemu-m4"} and rows["case"].nunique() == 6
    assert set(rows["farm_board"]) == {"rack-a", "rack-b"}  # both reserved places took jobs of the lane
    assert "Reservation" not in subprocess.run([tool("labgrid-client"), "-x", coordinator, "reservations"],
                                               capture_output=True, text=True).stdout  # all given back


@pytest.mark.slow
def test_a_place_held_by_another_user_is_waited_for(tmp_path, coordinator, measured_baseline):
    import threading

    baseline = measured_baseline
    suite = parse_suite({"name": "held", "repeats": 1, "per_image": 2, "lut_sample": 2, "deployments": ""}, "suite")

    def boards(wait):
        return parse_inventory({"boards": [{"name": "remote-m4", "board": "qemu-m4", "labgrid": {
            "coordinator": coordinator, "place": HELD, "wait": wait}}]})

    image = pinned_images(boards(0), suite, baseline)["remote-m4"]
    config = get_board("qemu-m4")
    with QemuProcess(config.qemu_machine, image.elf, config.icount_shift) as qemu:
        wait_for_pty(qemu.pty)
        with Exporter(coordinator, tmp_path, {HELD: {"console": {"cls": "RawSerialPort", "port": qemu.pty,
                                                                  "speed": 115200}}}):
            lab_client(coordinator, HELD, "acquire", user="someone-else")
            # not waited for: the cases are skipped, naming who holds the place
            short = regress(boards(1), suite, baseline, tmp_path / "short", timeout=10.0, trend=False)
            assert set(short.rows["verdict"]) == {"skipped"}
            assert "no labgrid place with name=tinyhil-held-m4 became free within 1 s" in short.rows["detail"][0]
            assert "someone-else" in short.rows["detail"][0]
            released = threading.Event()
            order = []

            def release_when_waited_for():
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:  # our reservation is queued behind the holder
                    out = subprocess.run([tool("labgrid-client"), "-x", coordinator, "reservations"],
                                         capture_output=True, text=True).stdout
                    if "waiting" in out:
                        lab_client(coordinator, HELD, "release", user="someone-else")
                        released.set()
                        return
                    time.sleep(0.2)

            releaser = threading.Thread(target=release_when_waited_for)
            releaser.start()
            result = regress(boards(120), suite, baseline, tmp_path / "out", timeout=10.0, trend=False,
                             on_row=lambda row: order.append(released.is_set()))
            releaser.join()
    assert released.is_set() and order and all(order)  # every figure came after the holder let go
    assert set(result.rows["verdict"]) == {"pass"}, list(result.rows["detail"])


def test_flashing_a_place_without_a_debugger_names_what_it_lacks(tmp_path, coordinator):
    from tinyhil.measure.characterize import Characterizer

    boards = parse_inventory({"boards": [{"name": "remote-m4", "board": "qemu-m4", "labgrid": {
        "coordinator": coordinator, "place": NO_DEBUGGER, "flash": True}}]})
    config = get_board("qemu-m4")
    with QemuProcess(config.qemu_machine, _any_image(config).elf, config.icount_shift) as qemu:
        wait_for_pty(qemu.pty)
        with Exporter(coordinator, tmp_path, {NO_DEBUGGER: {"console": {"cls": "RawSerialPort", "port": qemu.pty,
                                                                  "speed": 115200}}}):
            characterizer = Characterizer(config, tmp_path / "luts", open_device=boards[0].open)
            with pytest.raises(LabgridError, match=f"labgrid place {NO_DEBUGGER} cannot flash image [0-9a-f]+: it has no "
                               "debugger \\(no NetworkUSBDebugger among its resources: NetworkSerialPort, "
                               "RemotePlace\\)"):
                characterizer.run("micronas", 29, 12, 9, limit=2)
    assert not (tmp_path / "luts" / "qemu-m4" / "ops.csv").exists()  # nothing recorded


def _any_image(config):
    """A built image for the place's QEMU to run (a two-op characterization image)."""
    from tinyhil.image.firmware import build_image
    from tinyhil.measure.runner import ImageRunner, Item
    from tinyhil.models.single_op import op_seed, prepare_direct_models
    from tinyhil.models.tflite_model import TfliteModel
    from tinyhil.spaces import make_space

    ops = make_space("micronas", 29, 12, 9).op_configs()[:2]
    items = [Item(f"op-{n}", TfliteModel.from_bytes(p.read_bytes(), op.key), op_seed(op), op)
             for n, (op, p) in enumerate(((m.op, m.path) for m in prepare_direct_models(ops, workers=0)))]
    return build_image(ImageRunner(config).image_spec(items), config)


@pytest.fixture
def loopback_sshd(tmp_path):
    """sshd on 127.0.0.1 with keys of its own, and an `ssh` first on PATH that
    reaches it: labgrid runs openocd on the exporter host over SSH."""
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    if not Path(sshd).exists():
        pytest.skip("sshd not installed (apt: openssh-server; scripts/setup.sh)")
    d = tmp_path / "ssh"
    d.mkdir()
    for key in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True)
    (d / "authorized_keys").write_text((d / "client.pub").read_text())
    port = free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host\nAuthorizedKeysFile {d}/authorized_keys\n"
        f"PidFile {d}/sshd.pid\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n"
        "PermitRootLogin prohibit-password\n")
    host_key = " ".join((d / "host.pub").read_text().split()[:2])
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key}\n")  # labgrid checks host keys strictly
    (d / "ssh_config").write_text(
        f"Host 127.0.0.1\n  Port {port}\n  IdentityFile {d}/client\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {d}/known_hosts\n  BatchMode yes\n")
    bin_dir = tmp_path / "ssh-bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text(f"#!/bin/sh\nexec {shutil.which('ssh')} -F {d}/ssh_config \"$@\"\n")
    (bin_dir / "ssh").chmod(0o755)
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
    log = d / "sshd.log"
    process = subprocess.Popen([sshd, "-D", "-f", str(d / "sshd_config"), "-E", str(log)])
    try:
        wait_for_port(port)
        yield {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "log": log}
    finally:
        stop(process)


def test_flashing_through_the_places_debugger_runs_openocd_there(tmp_path, coordinator, loopback_sshd,
                                                                 monkeypatch):
    """The place exports an ST-LINK (a NetworkUSBDebugger): labgrid's OpenOCDDriver
    copies the image to the exporter host and runs openocd there; with no probe
    plugged in here, openocd's own error comes back, and nothing is recorded."""
    from tinyhil.measure.characterize import Characterizer

    if not shutil.which("openocd"):
        pytest.skip("openocd not installed (apt: openocd; scripts/setup.sh)")
    monkeypatch.setenv("PATH", loopback_sshd["PATH"])  # labgrid's ssh reaches the loopback sshd
    place = "tinyhil-nucleo"
    stlink = {"cls": "NetworkUSBDebugger", "host": "127.0.0.1", "busnum": 1, "devnum": 4, "path": "1-1.4",
              "vendor_id": 0x0483, "model_id": 0x374B}  # as an exporter with a plugged ST-LINK/V2-1 announces it
    boards = parse_inventory({"boards": [{"name": "f446", "board": "nucleo_f446re", "labgrid": {
        "coordinator": coordinator, "reserve": {"board": "nucleo_f446re"}, "flash": True, "wait": 10}}]})
    assert boards[0].lane == "nucleo_f446re"  # flashed: it serves the environment's lane
    with Exporter(coordinator, tmp_path, {place: {"debugger": stlink}}, tags={"board": "nucleo_f446re"}):
        characterizer = Characterizer(get_board("nucleo_f446re"), tmp_path / "luts", open_device=boards[0].open)
        with pytest.raises(LabgridError) as error:
            characterizer.run("micronas", 29, 12, 9, limit=2)
    message = str(error.value)
    assert f"labgrid place {place}: OpenOCDDriver could not flash firmware.elf: " in message, message
    assert re.search(r"Error: (open failed|.*[Nn]o device)|LIBUSB_ERROR|unable to open", message), message
    assert "Accepted publickey" in loopback_sshd["log"].read_text()  # openocd ran on the exporter host, over SSH
    assert not (tmp_path / "luts" / "nucleo_f446re" / "ops.csv").exists()  # nothing recorded


def test_inventory_places_by_name_or_tags_and_their_lanes():
    from tinyhil.execute.inventory import InventoryError, with_wait

    lab = "127.0.0.1:20408"
    boards = parse_inventory({"boards": [
        {"name": "named", "board": "qemu-m4", "labgrid": {"coordinator": lab, "place": "p1"}},
        {"name": "tag-a", "board": "qemu-m4", "labgrid": {"coordinator": lab, "reserve": {"board": "qemu-m4"}}},
        {"name": "tag-b", "board": "qemu-m4", "labgrid": {"coordinator": lab, "reserve": {"board": "qemu-m4"}}},
        {"name": "f446", "board": "nucleo_f446re", "labgrid": {
            "coordinator": lab, "reserve": {"board": "nucleo_f446re"}, "flash": True, "wait": 30,
            "drivers": {"ModbusCoilDriver": {"invert": False}}}}]})
    lanes = {b.name: b.lane for b in boards}
    assert lanes == {"named": "qemu-m4@named", "tag-a": "qemu-m4@board=qemu-m4", "tag-b": "qemu-m4@board=qemu-m4",
                     "f446": "nucleo_f446re"}  # a flashed place serves its environment's lane
    assert boards[3].labgrid.filters == ["board=nucleo_f446re"] and boards[0].labgrid.filters == ["name=p1"]
    assert boards[3].labgrid.drivers == (("ModbusCoilDriver", (("invert", False),)),)
    assert [b.labgrid.wait_s for b in with_wait(boards, 90)] == [90.0] * 4
    for bad, message in (({"coordinator": lab}, "either `place: NAME` or `reserve"),
                         ({"coordinator": lab, "place": "p", "reserve": {"a": "b"}}, "either"),
                         ({"coordinator": lab, "place": "p", "wait": -1}, "wait must be seconds"),
                         ({"coordinator": lab, "place": "p", "colour": 1}, "unknown labgrid key")):
        with pytest.raises(InventoryError, match=message):
            parse_inventory({"boards": [{"name": "x", "board": "qemu-m4", "labgrid": bad}]})


RESETTER = "tinyhil-reset-m4"


def test_reset_and_power_cycle_go_through_the_places_labgrid_drivers(tmp_path, coordinator):
    """The inventory gives the place labgrid drivers: a DigitalOutputResetDriver on a
    (file) digital output for ResetProtocol, an ExternalPowerDriver for PowerProtocol;
    the board's recovery steps use them, and the board answers again after each."""
    output, power_log = tmp_path / "reset-line", tmp_path / "power.log"
    drivers = {"FileDigitalOutputDriver": {"filepath": str(output), "false_repr": "released\n",
                                           "true_repr": "pressed\n"},
               "DigitalOutputResetDriver": {"delay": 0.0},
               "ExternalPowerDriver": {"cmd_on": "true", "cmd_off": "true",
                                       "cmd_cycle": f"sh -c 'echo cycled >> {power_log}'"}}
    boards = parse_inventory({"boards": [{"name": "remote-m4", "board": "qemu-m4", "labgrid": {
        "coordinator": coordinator, "place": RESETTER, "drivers": drivers}}]})
    output.write_text("idle\n")  # the reset line, as a file the output driver writes
    config = get_board("qemu-m4")
    image = _any_image(config)
    with QemuProcess(config.qemu_machine, image.elf, config.icount_shift) as qemu:
        wait_for_pty(qemu.pty)
        with Exporter(coordinator, tmp_path, {RESETTER: {"console": {"cls": "RawSerialPort", "port": qemu.pty,
                                                                     "speed": 115200}}}):
            with boards[0].open(timeout=10.0) as board:
                assert board.boot(image).build_id == image.image_id
                assert output.read_text() == "idle\n" and not power_log.exists()
                assert board.recover("reset").build_id == image.image_id
                assert output.read_text() == "released\n"  # pressed, then let go, by labgrid's reset driver
                assert board.recover("power_cycle").build_id == image.image_id
                assert power_log.read_text() == "cycled\n"
            lab_client(coordinator, RESETTER, "acquire", user="someone-else")  # given back on close: free
            lab_client(coordinator, RESETTER, "release", user="someone-else")
