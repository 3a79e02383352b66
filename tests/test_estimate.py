"""Estimators on small models computed by hand."""
from types import SimpleNamespace

import pandas as pd
import pytest

from tinyhil.estimate import (
    MacsProxy,
    MissingOps,
    appendix_a_peak,
    arena_estimate,
    cmsis_scratch_bytes,
    greedy_plan,
    lut_latency,
)
from tinyhil.estimate.memory import MODEL_INPUT_BYTES, OP_PADDING_BYTES, lifetimes, op_state, single_op_plan
from tinyhil.lut.table import COLUMNS, OK, Lut, LutMeta, op_columns
from tinyhil.spaces import ops
from tinyhil.spaces.arch import Builder, execution_order

META = LutMeta(board="qemu-m4", core="cortex-m4", clock_hz=25_000_000, counter="qemu-icount",
               tflm="t", compiler="c", flags="f", tinyhil="0", invoke_cycles=100.0,
               dispatch_cycles=10.0, space="test", input="8x2",
               extra={"classes": 3, "chain_arena_bytes": {"1": 300, "2": 400, "4": 600}})


def small_arch():
    """(8,1,2) -> conv 3x1 to 4 -> reshape 32 -> dense 3 -> softmax."""
    b = Builder((8, 1, 2))
    b.add(ops.conv((8, 1, 2), 4, (3, 1)))
    b.add(ops.reshape((8, 1, 4), (32,)))
    b.add(ops.dense(32, 3, "none"))
    b.add(ops.softmax(3))
    return b.build("test", {})


def lut_for(arch, cycles, arenas):
    rows = []
    for op, c, a in zip(arch.ops, cycles, arenas):
        r = op_columns(op)
        r.update(cycles=c + 50, cycles_min=c + 50, cycles_max=c + 50, n=3, kernel_cycles=c,
                 ms=0.0, arena_bytes=a, scratch_bytes=0, status=OK)
        rows.append(r)
    frame = pd.DataFrame(rows, columns=COLUMNS).set_index("key", drop=False)
    return Lut(META, frame)


def test_cmsis_scratch_sizes():
    assert cmsis_scratch_bytes(ops.conv((8, 1, 4), 8, (3, 1))) == 2 * 4 * 3 * 2
    assert cmsis_scratch_bytes(ops.conv((8, 1, 4), 8, (1, 1))) == 0  # 1x1 fast path
    assert cmsis_scratch_bytes(ops.conv((8, 4, 4), 8, (1, 1), (1, 2))) == 2 * 4 * 2
    assert cmsis_scratch_bytes(ops.depthwise((8, 1, 8), (3, 1))) == 8 * 3 * 2
    assert cmsis_scratch_bytes(ops.global_avg_pool((8, 1, 6))) == 6 * 4
    assert cmsis_scratch_bytes(ops.dense(32, 3)) == 0
    assert cmsis_scratch_bytes(ops.add((4, 4, 8))) == 0


def test_appendix_a_peak_by_hand():
    # conv: input 16 + output 32 + scratch 2*2*3*2 = 24 -> 72; reshape 64; dense 35; softmax 6
    assert appendix_a_peak(small_arch()) == 72


def test_greedy_plan_by_hand():
    # A (32, ops 0-1), B (16, ops 1-2), C (32, ops 2-3): C and A do not meet
    # in time and share offset 0; B, alive with both, goes above them.
    assert greedy_plan([(32, 0, 1), (16, 1, 2), (32, 2, 3)]) == 48
    # equal sizes: like TFLM, the buffer added last is placed first
    assert greedy_plan([(16, 0, 0), (16, 0, 1), (16, 1, 1)]) == 32
    lives = lifetimes(small_arch())
    assert lives[:5] == [(16, 0, 0), (32, 0, 1), (32, 1, 2), (16, 2, 3), (16, 3, 3)]
    assert lives[5:] == [(32, 0, 0)]  # the conv's 24-byte scratch, aligned


def test_the_converter_folds_a_squeeze_into_fully_connected():
    assert small_arch().runtime() == small_arch()  # a real flatten stays
    b = Builder((8, 1, 4))
    b.add(ops.global_avg_pool((8, 1, 4)))
    b.add(ops.reshape((1, 1, 4), (4,)))  # only drops unit axes: TFLite folds it
    b.add(ops.dense(4, 3, "none"))
    runtime = b.build("test", {}).runtime()
    assert [op.op for op in runtime.ops] == ["avg_pool2d", "dense"]
    assert runtime.nodes[1].inputs == (0,)  # the dense reads the pooled tensor


def test_lut_latency_adds_kernels_and_overheads():
    arch = small_arch()
    lut = lut_for(arch, [1000, 20, 300, 40], [500, 300, 400, 350])
    assert lut_latency(arch, lut) == 1000 + 20 + 300 + 40 + 100 + 4 * 10


def test_missing_op_names_the_key_and_the_command():
    arch = small_arch()
    lut = lut_for(arch, [1000, 20, 300, 40], [1, 1, 1, 1])
    lut.rows = lut.rows.drop(arch.ops[2].key)
    with pytest.raises(MissingOps, match=r"dense/32-3.*tinyhil characterize --space test --input 8x2 --classes 3"):
        lut_latency(arch, lut)


def test_macs_proxy_is_a_least_squares_line():
    arch = small_arch()
    lut = lut_for(arch, [0, 0, 0, 0], [1, 1, 1, 1])
    lut.rows["macs"] = [10, 20, 30, 40]
    lut.rows["cycles"] = [2 * m + 100 for m in (10, 20, 30, 40)]
    proxy = MacsProxy.fit(lut)
    assert proxy.slope == pytest.approx(2) and proxy.intercept == pytest.approx(100)
    assert proxy(arch) == pytest.approx(2 * arch.macs + 100)


def test_arena_estimate_by_hand():
    arch = small_arch()
    arenas = [500, 300, 400, 350]
    lut = lut_for(arch, [1, 1, 1, 1], arenas)
    # chains: arena - planned (32) = 268, 368, 568 over n = 1, 2, 4: fixed part 168
    fixed = 168
    state = sum(a - single_op_plan(op) - fixed + OP_PADDING_BYTES for op, a in zip(arch.ops, arenas))
    plan = greedy_plan(lifetimes(arch))
    assert arena_estimate(arch, lut) == pytest.approx(plan + fixed + state, abs=1)


def branches_declared_first():
    """conv -> three parallel convs, declared before the two adds that sum them."""
    b = Builder((8, 1, 4))
    stem = b.add(ops.conv((8, 1, 4), 8, (1, 1)))
    branches = [b.add(ops.conv((8, 1, 8), 8, (k, 1)), stem) for k in (1, 3, 5)]
    first = b.add(ops.add((8, 1, 8)), branches[0], branches[1])
    b.add(ops.add((8, 1, 8)), first, branches[2])
    return b.build("test", {})


def test_a_branch_is_summed_as_soon_as_it_is_computed():
    arch = branches_declared_first()
    assert execution_order(arch.nodes) == [0, 1, 2, 4, 3, 5]
    runtime = arch.runtime()
    assert [(n.op.op, n.op.kernel) for n in runtime.nodes] == [
        ("conv2d", (1, 1)), ("conv2d", (1, 1)), ("conv2d", (3, 1)), ("add", (1, 1)),
        ("conv2d", (5, 1)), ("add", (1, 1))]
    assert [n.inputs for n in runtime.nodes] == [(-1,), (0,), (0,), (1, 2), (0,), (3, 4)]
    # in that order the three 64-byte branch outputs are never alive together
    assert greedy_plan(lifetimes(runtime)) == greedy_plan(lifetimes(arch)) - 64


def test_an_add_in_a_network_has_no_model_inputs_of_its_own():
    add = branches_declared_first().ops[4]
    lut = lut_for(SimpleNamespace(ops=[add]), [1], [300])
    expected = 300 - single_op_plan(add) - 168 - MODEL_INPUT_BYTES + OP_PADDING_BYTES
    assert op_state(add, lut, 168) == pytest.approx(expected)
