"""Fault injection: a proxy that garbles, drops, duplicates and stalls frames,
boards reset and QEMU killed mid-benchmark, the host killed mid-run. Every
run must end with the right figures, no row lost or twice."""
import os
import select
import time

import pytest

from tinyhil.benchmarks.faults import campaign
from tinyhil.board_catalog import get_board
from tinyhil.device.fault_proxy import FaultPlan, FaultProxy, _Framer
from tinyhil.execute.inventory import emulated_farm
from tinyhil.protocol import SYNC, Frame, Kind
from tinyhil.regress.suite import Suite


def test_framer_cuts_frames_out_of_noise():
    a, b = Frame(Kind.INFO, 1, b"x" * 10).encode(), Frame(Kind.RUN, 2, b"").encode()
    framer = _Framer()
    parts = framer.feed(b"noise" + a[:5]) + framer.feed(a[5:] + b + b"\xa5")
    assert parts == [(False, b"noise"), (True, a), (True, b)]
    assert framer.buffer == bytearray(b"\xa5")  # maybe the start of the next frame


def test_fault_plan_checks_its_kinds():
    with pytest.raises(ValueError, match="unknown fault kind"):
        FaultPlan(kinds=("garble", "fire"))


def test_proxy_relays_and_mangles_on_a_seeded_schedule():
    board_master, board_slave = os.openpty()
    proxy = FaultProxy(FaultPlan(seed=3, to_host=1.0, to_board=0.0, kinds=("duplicate",)))
    host_port = proxy(os.ttyname(board_slave))
    host = os.open(host_port, os.O_RDWR | os.O_NOCTTY)
    try:
        frame = Frame(Kind.INFO | 0x80, 7, b"board=qemu").encode()
        os.write(board_master, frame)  # the board answers
        received = b""
        deadline = time.monotonic() + 5
        while len(received) < 2 * len(frame) and time.monotonic() < deadline:
            received += os.read(host, 4096)
        assert received == frame + frame and proxy.faults == {"duplicate": 1}
        request = Frame(Kind.INFO, 8).encode()
        os.write(host, request)  # the host asks: relayed untouched (to_board chance 0)
        got = b""
        while len(got) < len(request) and time.monotonic() < deadline:
            got += os.read(board_master, 4096)
        assert got == request
    finally:
        proxy.close()
        for fd in (host, board_master, board_slave):
            os.close(fd)


@pytest.mark.device
@pytest.mark.slow
def test_campaign_loses_nothing_and_records_no_wrong_number(tmp_path):
    root = os.environ.get("TINYHIL_PROJECT_DIR", "")
    baseline = (os.path.join(root, "luts") if root else "luts")
    suite = Suite("faults", repeats=2, per_image=3, lut_sample=2, deployments="")
    report = campaign(emulated_farm("qemu-m4", 2), suite, baseline, tmp_path, target_faults=45,
                      host_kills=1, seed=1, timeout=1.0,
                      plan=FaultPlan(to_host=0.4, to_board=0.1, board_faults=0.3, noise=0.3,
                                     idle_faults=0.1, boot_faults=0.2),
                      log=lambda _: None, impossible_baselines=3)
    assert report.total >= 45
    # every kind was tried, and all survived: correct figures, nothing lost or doubled
    assert set(report.injected) == {"garble", "drop", "duplicate", "stall", "board_reset",
                                    "qemu_killed", "host_killed", "noise",
                                    "impossible_baseline", "qemu_killed_idle",
                                    "qemu_killed_at_boot", "image_corrupted",
                                    "ops_csv_truncated"}, report.injected
    assert report.survived == report.injected
    assert report.rows_lost == 0 and report.rows_duplicated == 0 and report.wrong == 0
    assert not report.problems


def faulty_boards(config, plan, proxies):
    """open_device for a measurement path: a QEMU board behind a fault proxy."""
    from tinyhil.benchmarks.faults import board_actions
    from tinyhil.device.boards import QemuBoard

    def open_device():
        device = QemuBoard(config, timeout=1.0)
        proxy = FaultProxy(FaultPlan(**{**plan.__dict__, "seed": plan.seed + len(proxies)}))
        proxy.board_actions = board_actions(device)
        device.link = proxy
        proxies.append(proxy)
        return device
    return open_device


def injected(proxies):
    from collections import Counter

    total = Counter()
    for proxy in proxies:
        proxy.close()
        total.update(proxy.faults)
    return total


@pytest.mark.device
def test_characterize_through_a_faulty_line(tmp_path):
    from conftest import ROOT
    from tinyhil.lut.table import read_rows
    from tinyhil.measure.characterize import Characterizer

    config = get_board("qemu-m4")
    proxies = []
    plan = FaultPlan(seed=5, to_host=0.5, to_board=0.1, board_faults=0.2)
    luts = tmp_path / "luts"
    for _attempt in range(3):  # an op the board gave up on is measured by the next run
        result = Characterizer(config, luts, repeats=2, max_per_image=5,
                               open_device=faulty_boards(config, plan, proxies)).run(
            "micronas", 128, 9, 6, limit=6)
        if not result.timing.skipped:
            break
    faults = injected(proxies)
    assert sum(faults.values()) >= 5, faults
    rows = read_rows(luts / "qemu-m4" / "ops.csv")
    reference = read_rows(ROOT / "luts" / "qemu-m4" / "ops.csv").loc[rows.index]
    assert len(rows) == 6 and (rows["status"] == "ok").all()
    # exact counts: the same figures as the project's LUT, measured on a clean line
    assert (rows["cycles"] == reference["cycles"]).all()
    assert (rows["arena_bytes"] == reference["arena_bytes"]).all()


@pytest.mark.device
def test_run_through_a_faulty_line(models_dir):
    import tensorflow as tf

    from conftest import make_int8_model
    from tinyhil.measure.model import run_model

    L = tf.keras.layers
    model = make_int8_model(models_dir / "faulty_line.tflite",
                            [L.Conv1D(4, 3, activation="relu"), L.Flatten(), L.Dense(3)], (24, 3))
    config = get_board("qemu-m4")
    clean = run_model(model, config, repeats=3)
    proxies = []
    plan = FaultPlan(seed=9, to_host=0.6, to_board=0.2, board_faults=0.3)
    for _ in range(2):
        faulty = run_model(model, config, repeats=3, open_device=faulty_boards(config, plan, proxies))
        assert faulty.cycles == clean.cycles and faulty.output_matches
        assert faulty.device_output == clean.device_output
    assert sum(injected(proxies).values()) >= 2


def test_proxy_sends_noise_to_the_board_after_a_run_request():
    board_master, board_slave = os.openpty()
    proxy = FaultProxy(FaultPlan(seed=4, to_host=0.0, to_board=0.0, noise=1.0, noise_window_s=0.2))
    host_port = proxy(os.ttyname(board_slave))
    host = os.open(host_port, os.O_RDWR | os.O_NOCTTY)
    try:
        info, run = Frame(Kind.INFO, 1).encode(), Frame(Kind.RUN, 2, b"\x00" * 11).encode()
        os.write(host, info + run)
        got = b""
        deadline = time.monotonic() + 10
        while proxy.faults["noise"] == 0 or len(got) <= len(info + run) or proxy._noise_due:
            ready, _, _ = select.select([board_master], [], [], 0.1)
            if ready:
                got += os.read(board_master, 4096)
            assert time.monotonic() < deadline, (got, proxy.faults)
        time.sleep(0.3)  # anything still on its way
        ready, _, _ = select.select([board_master], [], [], 0)
        got += os.read(board_master, 4096) if ready else b""
        # the requests go through untouched, then noise follows the RUN only
        assert got.startswith(info + run) and len(got) > len(info + run)
        assert proxy.faults == {"noise": 1}
        assert SYNC[0] not in got[len(info + run):]  # noise never opens a false frame
    finally:
        proxy.close()
        for fd in (host, board_master, board_slave):
            os.close(fd)


def test_proxy_kills_the_board_between_requests_and_hangs_up_like_a_line():
    """After a reply reached the host, the board dies (idle_faults): the host
    gets the reply whole, then sees its line hang up (EIO), as on a QEMU pty."""
    import select
    import termios

    board_master, board_slave = os.openpty()
    proxy = FaultProxy(FaultPlan(seed=1, to_host=0.0, to_board=0.0, idle_faults=1.0))
    dead = []

    def kill_board():  # what SIGKILL does to QEMU's end of its pty
        os.close(board_master)
        dead.append(True)

    proxy.board_actions = {"qemu_killed_idle": kill_board, "board_reset": lambda: None}
    host = os.open(proxy(os.ttyname(board_slave)), os.O_RDWR | os.O_NOCTTY)
    try:
        reply = Frame(Kind.INFO | 0x80, 7, b"board=qemu").encode()
        os.write(board_master, reply)
        received, hung_up = b"", None
        deadline = time.monotonic() + 30
        while hung_up is None and time.monotonic() < deadline:
            if select.select([host], [], [], 0.1)[0]:
                try:
                    data = os.read(host, 4096)
                except OSError as error:
                    hung_up = error
                    break
                received += data
                hung_up = None if data else "end of file"
        assert received == reply and dead and proxy.faults == {"qemu_killed_idle": 1}
        assert hung_up is not None  # the line is gone ...
        with pytest.raises(termios.error):  # ... and pyserial's tcflush says so, as on QEMU's pty
            termios.tcflush(host, termios.TCIFLUSH)
    finally:
        proxy.close()
        for fd in (host, board_slave):
            os.close(fd)
