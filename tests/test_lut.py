"""LUT files (incremental, atomic, checked on load) and Eq. 2."""
import numpy as np
import pytest

from tinyhil.lut.interpolate import channels_alpha, expected, expected_add, expected_tf, hw_matrix
from tinyhil.lut.table import COLUMNS, OK, Lut, LutError, LutMeta, OpStore, op_columns, read_rows
from tinyhil.spaces import ops
from tinyhil.spaces.micronas import DynamicConv

META = LutMeta(board="qemu-m4", core="cortex-m4", clock_hz=25_000_000, counter="qemu-icount",
               tflm="tflm@1", compiler="gcc 12", flags="-O2", tinyhil="0.1.0")


def row(op, cycles=1000.0):
    r = op_columns(op)
    r.update(cycles=cycles, cycles_min=cycles, cycles_max=cycles, n=3, kernel_cycles=cycles - 50,
             ms=cycles / 25e3, arena_bytes=100, scratch_bytes=10, status=OK)
    return r


def conv(cin=4, cout=8):
    return ops.conv((16, 3, cin), cout, (3, 1))


def test_store_appends_and_resumes(tmp_path):
    path = tmp_path / "qemu-m4" / "ops.csv"
    store = OpStore(path, META)
    store.append(row(conv(4, 8)))
    store.append(row(conv(8, 8), 2000))
    again = OpStore(path, META)
    assert set(again.rows) == {conv(4, 8).key, conv(8, 8).key}
    with pytest.raises(LutError, match="already"):
        again.append(row(conv(4, 8)))


def test_store_rows_are_written_at_once_and_synced_in_groups(tmp_path, monkeypatch):
    """Every row is in the file as soon as it is appended (a killed run keeps
    it); fsync runs at most twice a second and at sync(), not once a row."""
    import os

    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    path = tmp_path / "ops.csv"
    store = OpStore(path, META)
    for cout in range(1, 41):
        store.append(row(conv(4, cout)))
        assert len(read_rows(path)) == cout  # whole, and there for any reader
    assert len(synced) <= 2
    before = len(synced)
    store.sync()
    assert len(synced) == before + 1
    store.sync()  # nothing new: no fsync
    assert len(synced) == before + 1
    store.SYNC_SECONDS = 0.0  # a row appended after the interval is synced with its write
    store.append(row(conv(8, 8)))
    assert len(synced) == before + 2 and not store._unsynced


def test_store_drops_a_torn_last_line_and_keeps_the_rest(tmp_path):
    path = tmp_path / "ops.csv"
    store = OpStore(path, META)
    store.append(row(conv(4, 8)))
    with open(path, "a") as f:
        f.write("conv2d/16x3x8-16x3x8/k3x1,conv2d,16x3")  # a crash mid-append
    again = OpStore(path, META)
    assert list(again.rows) == [conv(4, 8).key]
    again.append(row(conv(8, 8)))
    assert list(read_rows(path).index) == [conv(4, 8).key, conv(8, 8).key]


def test_store_from_another_setup_is_refused(tmp_path):
    path = tmp_path / "ops.csv"
    OpStore(path, META)
    other = LutMeta(**{**META.__dict__, "tflm": "tflm@2"})
    with pytest.raises(LutError, match="another set-up.*tflm"):
        OpStore(path, other)


def write_lut(tmp_path, rows):
    import pandas as pd

    lut = Lut(META, pd.DataFrame(rows, columns=COLUMNS).set_index("key", drop=False))
    path = tmp_path / "t.csv"
    lut.write(path)
    return path


@pytest.mark.parametrize("damage, message", [
    (lambda t: t[: len(t) - 5], "truncated"),
    (lambda t: "a,b,c\n" + t, "not a tinyhil LUT"),
    (lambda t: t.replace(",1000.0,", ",fast,", 1), "line 2: cycles is not a number"),
])
def test_corrupt_luts_are_named(tmp_path, damage, message):
    path = write_lut(tmp_path, [row(conv(4, 8)), row(conv(8, 8))])
    path.write_text(damage(path.read_text()))
    with pytest.raises(LutError, match=message):
        Lut.load(path)


def test_lut_for_another_board_is_refused(tmp_path):
    path = write_lut(tmp_path, [row(conv())])
    with pytest.raises(LutError, match="another set-up: board"):
        Lut.load(path, expect=LutMeta(**{**META.__dict__, "board": "qemu-m33"}))
    (tmp_path / "t.meta.json").unlink()
    with pytest.raises(LutError, match="metadata sidecar"):
        Lut.load(path)


def test_lookup_refuses_flagged_rows(tmp_path):
    bad = row(conv(8, 8))
    bad["status"] = "mismatch: output differs"
    lut = Lut.load(write_lut(tmp_path, [row(conv(4, 8)), bad]))
    assert lut.cycles(conv(4, 8)) == 1000
    with pytest.raises(LutError, match="no good measurement"):
        lut.cycles(conv(8, 8))
    with pytest.raises(LutError, match="not in"):
        lut.cycles(conv(16, 8))


def test_eq2_one_hot_is_a_lookup_and_mixtures_interpolate():
    dyn = DynamicConv("c", (16, 3, 0), (3, 1), (1, 1), (4, 8), (8, 16, 24))
    cost = lambda op: 10.0 * op.in_channels + op.out_channels  # noqa: E731
    hw = hw_matrix(dyn, cost)
    assert hw.shape == (3, 2)  # rows: outputs (y), columns: inputs (x)
    assert expected(hw, [0, 1], [0, 0, 1]) == cost(dyn.op(8, 24))
    # half way between input options, two thirds towards 24 outputs
    assert expected(hw, channels_alpha((4, 8), 6), [0, 1 / 3, 2 / 3]) == pytest.approx(60 + 64 / 3)
    assert expected_add(np.array([1.0, 2.0, 4.0]), [0.5, 0.5, 0]) == 1.5


def test_channels_alpha():
    assert channels_alpha((8, 16, 24), 16).tolist() == [0, 1, 0]
    assert channels_alpha((8, 16, 24), 20).tolist() == [0, 0.5, 0.5]
    with pytest.raises(ValueError):
        channels_alpha((8, 16), 4)


def test_eq2_in_tensorflow_matches_numpy_and_its_gradients_finite_differences():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    hw = rng.uniform(1e3, 1e5, (8, 4))
    ax, ay = rng.dirichlet(np.ones(4)), rng.dirichlet(np.ones(8))
    tx, ty = tf.Variable(ax), tf.Variable(ay)
    with tf.GradientTape() as tape:
        value = expected_tf(hw, tx, ty)
    assert float(value) == pytest.approx(expected(hw, ax, ay))
    gx, gy = tape.gradient(value, [tx, ty])
    eps = 1e-6
    for i in range(4):
        d = np.zeros(4)
        d[i] = eps
        fd = (expected(hw, ax + d, ay) - expected(hw, ax - d, ay)) / (2 * eps)
        assert gx.numpy()[i] == pytest.approx(fd, rel=1e-6)
    for j in range(8):
        d = np.zeros(8)
        d[j] = eps
        fd = (expected(hw, ax, ay + d) - expected(hw, ax, ay - d)) / (2 * eps)
        assert gy.numpy()[j] == pytest.approx(fd, rel=1e-6)


def test_one_writer_per_store(tmp_path):
    from tinyhil.lut.table import exclusive

    path = tmp_path / "qemu-m4" / "ops.csv"
    with exclusive(path):
        with pytest.raises(LutError, match="another tinyhil process"):
            with exclusive(path):
                pass
    with exclusive(path):  # released
        pass


def test_images_are_evenly_packed():
    from types import SimpleNamespace

    from tinyhil.board_catalog import get_board
    from tinyhil.measure.runner import Item, pack

    model = SimpleNamespace(flatbuffer=bytes(1000))
    items = [Item(f"b{i}", model, i) for i in range(515)]
    images = pack(items, get_board("qemu-m4"), 100)
    assert len(images) == 6 and min(map(len, images)) >= 85
    assert [i.name for image in images for i in image] == [i.name for i in items]


def test_store_line_cut_short_in_the_middle_is_named_and_measured_again(tmp_path):
    from tinyhil.board_catalog import get_board
    from tinyhil.lut.table import scan_rows
    from tinyhil.measure.characterize import Characterizer

    path = tmp_path / "qemu-m4" / "ops.csv"
    store = OpStore(path, META)
    for n in (4, 8, 12):
        store.append(row(conv(n, 8), 1000 + n))
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = ",".join(lines[2].split(",")[:15]) + "\n"  # row of conv(8, 8) lost its last columns
    path.write_text("".join(lines))

    scanned = scan_rows(path, allow_torn_tail=True)
    (bad,) = scanned.malformed
    assert bad.line == 3 and bad.key == conv(8, 8).key and f"15 fields where a row has {len(COLUMNS)}" in str(bad)
    assert str(path) in str(bad)
    with pytest.raises(LutError, match="line 3: 15 fields"):  # a space's table: an error
        read_rows(path)
    characterizer = Characterizer(get_board("qemu-m4"), tmp_path)
    assert characterizer.done_keys() == {conv(4, 8).key, conv(12, 8).key}  # measured again
    assert any("line 3" in line for line in characterizer.store_problems([conv(8, 8)]))

    again = OpStore(path, META)  # the next measurement's store: bad line set aside
    again.append(row(conv(8, 8), 1008))
    rows = read_rows(path)
    assert list(rows["cycles"]) == [1004, 1012, 1008]
    assert lines[1] in path.read_text() and lines[3] in path.read_text()  # good rows verbatim
    assert "line 3" in (path.parent / ".ops.csv.malformed").read_text()


def test_status_cut_short_is_not_a_row(tmp_path):
    from tinyhil.lut.table import scan_rows

    path = tmp_path / "ops.csv"
    store = OpStore(path, META)
    store.append(row(conv(4, 8)))
    store.append(row(conv(8, 8)))
    text = path.read_text().replace(",ok\n", ",o\n", 1)
    path.write_text(text)
    (bad,) = scan_rows(path, allow_torn_tail=True).malformed
    assert bad.line == 2 and "status 'o'" in bad.why


def failed_row(op, why="error: board qemu-m4 refused RUN: hard fault"):
    r = op_columns(op)
    r["status"] = why
    return r


def test_failed_ops_are_retried_up_to_the_limit(tmp_path):
    from tinyhil.board_catalog import get_board
    from tinyhil.lut.table import MAX_ATTEMPTS
    from tinyhil.measure.characterize import Characterizer

    path = tmp_path / "qemu-m4" / "ops.csv"
    store = OpStore(path, META)
    store.append(row(conv(4, 8)))
    store.append(failed_row(conv(8, 8), "error: hard fault\nat pc 0x1234"))
    characterizer = Characterizer(get_board("qemu-m4"), tmp_path)
    assert characterizer.done_keys() == {conv(4, 8).key}
    (retry,) = characterizer.store_problems([conv(4, 8), conv(8, 8)])
    assert f"attempt 2 of {MAX_ATTEMPTS}" in retry and conv(8, 8).key in retry
    for _ in range(MAX_ATTEMPTS - 1):
        OpStore(path, META).append(failed_row(conv(8, 8)))
    assert OpStore(path, META).attempts == {conv(8, 8).key: MAX_ATTEMPTS}
    assert characterizer.done_keys() == {conv(4, 8).key, conv(8, 8).key}  # given up on
    (still,) = characterizer.still_failing([conv(4, 8), conv(8, 8)])
    assert f"after {MAX_ATTEMPTS} attempt(s) (not retried again" in still

    OpStore(path, META).append(row(conv(8, 8), 1234))  # e.g. its rows removed by hand, or a later fix
    rows = read_rows(path)  # one row per op: the last attempt counts
    assert rows.loc[conv(8, 8).key, "status"] == OK and rows.loc[conv(8, 8).key, "cycles"] == 1234
    assert len(path.read_text().splitlines()) == 1 + 1 + MAX_ATTEMPTS + 1  # every attempt kept
    with pytest.raises(LutError, match="already"):
        OpStore(path, META).append(row(conv(8, 8)))


def test_a_good_row_twice_is_still_an_error(tmp_path):
    path = tmp_path / "ops.csv"
    OpStore(path, META).append(row(conv(4, 8)))
    with open(path, "a") as f:
        f.write(path.read_text().splitlines(keepends=True)[1])
    with pytest.raises(LutError, match="appears twice"):
        read_rows(path)
