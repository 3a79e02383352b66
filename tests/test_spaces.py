"""Search spaces enumerate exactly the op configurations hand-derived here."""
from collections import Counter

import pytest

from tinyhil.spaces import SpaceError, make_space, parse_input
from tinyhil.spaces.micronas import MicroNasSpace, SensorFusionCell, TimeReduceCell
from tinyhil.spaces.timenas import TimeNasSpace
from tinyhil.spaces.tinytnas import TinyTnasArch, TinyTnasSpace, explored_widths


def test_micronas_cell_counts_follow_the_paper():
    # N_TR: halvings of T while T/2 >= ts_ml = 16; N_SF: halvings of S while
    # S/2 >= ts_ms = 5 (at least one), times 1 + sf_s = 3.
    for (t, s), (n_tr, n_sf) in {(128, 9): (3, 3), (64, 30): (2, 6), (32, 5): (1, 3),
                                 (256, 3): (4, 3), (20, 10): (1, 3)}.items():
        space = MicroNasSpace(t, s, 6)
        assert (space.n_time_reduce, space.n_sensor_fusion) == (n_tr, n_sf), (t, s)
        cells = space.cells
        assert sum(isinstance(c, TimeReduceCell) for c in cells) == n_tr
        strides = [c.stride for c in cells if isinstance(c, SensorFusionCell)]
        assert strides == [2, 1, 1] * (n_sf // 3)


def test_micronas_enumeration_32x5_by_hand():
    """32x5, 3 classes: 1 Time-Reduce cell (32 -> 16), 3 Sensor-Fusion cells (5 -> 3 -> 3 -> 3).
    TR: 3 kernels x 1 input channel x 4 filter options                      =  12
    SF0 (stride 2): bottleneck 1x5, 4 TR options x 8 SF options            =  32
                    branches 3x1/5x1/7x1 on (16,3): 3 x 8 x 8              = 192
                    residual 1x1 stride (1,2): 4 x 8                       =  32
                    add on (16,3,f): 8                                     =   8
    SF1 (stride 1): bottleneck 1x3 on (16,3): 8 x 8                        =  64
                    residual 1x1: 8 x 8                                    =  64
                    branches and adds: same shapes as SF0                   =   0
    SF2: same as SF1                                                        =   0
    output: 1x1 conv 8 options -> 3, average pool, reshape, softmax         =  11
    """
    ops = MicroNasSpace(32, 5, 3).op_configs()
    assert len(ops) == 12 + 32 + 192 + 32 + 8 + 64 + 64 + 11 == 415
    assert Counter(o.op for o in ops) == {"conv2d": 404, "add": 8, "avg_pool2d": 1,
                                          "reshape": 1, "softmax": 1}
    assert len({o.key for o in ops}) == len(ops)
    tr = [o for o in ops if o.strides == (2, 1)]
    assert {o.output_shape for o in tr} == {(16, 5, f) for f in (4, 8, 12, 16)}


def test_micronas_grid_is_what_eq2_needs():
    space = MicroNasSpace(128, 9, 6)
    keys = {o.key for o in space.op_configs()}
    for conv in space.dynamic_convs():
        grid = conv.grid()
        assert len(grid) == len(conv.in_options) and len(grid[0]) == len(conv.out_options)
        assert all(op.key in keys for row in grid for op in row)


def test_tinytnas_template_and_search_widths():
    # 4 -> 5, 6, 7 (floor(4/4) = 1) and 8; 6 -> 7, 8, 9 and 12; 9 -> 11, 13, 15 and 18; ...
    assert explored_widths(4, 16) == (4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16)
    assert explored_widths(8, 20) == (8, 10, 12, 14, 15, 16, 17, 18, 20)
    space = TinyTnasSpace(8, 1, 2, k_max=8)
    ops = [o.key for o in space.arch_ops(TinyTnasArch(4, 4))]
    assert ops == [
        "depthwise_conv2d/8x1x1-8x1x1/k3x1/s1x1/same", "conv2d/8x1x1-8x1x4/k1x1/s1x1/same/relu",
        "max_pool2d/8x1x4-4x1x4/k2x1/s2x1/valid",
        "depthwise_conv2d/4x1x4-4x1x4/k3x1/s1x1/same", "conv2d/4x1x4-4x1x6/k1x1/s1x1/same/relu",
        "max_pool2d/4x1x6-2x1x6/k2x1/s2x1/valid",
        "depthwise_conv2d/2x1x6-2x1x6/k3x1/s1x1/same", "conv2d/2x1x6-2x1x9/k1x1/s1x1/same/relu",
        "max_pool2d/2x1x9-1x1x9/k2x1/s2x1/valid",
        # the fourth cell is dropped: the time axis has reached 1
        "depthwise_conv2d/1x1x9-1x1x9/k3x1/s1x1/same", "conv2d/1x1x9-1x1x13/k1x1/s1x1/same/relu",
        "avg_pool2d/1x1x13-1x1x13/k1x1/s1x1/valid", "reshape/1x1x13-13",
        "dense/13-19/relu", "dense/19-2", "softmax/2-2",
    ]


def test_timenas_enumeration_by_hand():
    """4x2 input, 3 classes, widths {8,16}, kernel 3, strides {1,2}, up to 2 layers.
    MLP: flatten 8; dense 8->{8,16}; 16->{8,16} (8->* already); heads 8->3, 16->3; softmax = 8
    CNN: layer 1 on t=4, 2 -> {8,16}, 2 strides                          = 4
         layer 2 on t in {4,2}, {8,16} -> {8,16}, 2 strides              = 16
    head: flatten (t,c) for t in {4,2,1}, c in {8,16}                      = 6
          dense t*c -> 3 for t*c in {32,64} (8 and 16 already in the MLP) = 2
    """
    space = TimeNasSpace(4, 2, 3, widths=(8, 16), kernels=(3,), strides=(1, 2), max_layers=2)
    ops = space.op_configs()
    assert len(ops) == 8 + 4 + 16 + 6 + 2 == 36
    assert Counter(o.op for o in ops) == {"conv2d": 20, "dense": 8, "reshape": 7, "softmax": 1}
    full = TimeNasSpace(100, 6, 4)
    assert sorted(full.lengths_by_depth()[2]) == [12, 17, 25, 34, 50, 100]


def test_timenas_regression_head_has_no_softmax():
    ops = TimeNasSpace(10, 1, 1, widths=(8,), kernels=(3,), strides=(1,), max_layers=2).op_configs()
    assert not any(o.op == "softmax" for o in ops)
    assert any(o.key == "dense/8-1" for o in ops)


def test_bad_space_inputs_say_why():
    with pytest.raises(SpaceError, match="unknown search space 'darts'.*micronas"):
        make_space("darts", 128, 9, 6)
    with pytest.raises(SpaceError, match="at least 2 samples to halve in time, got 1"):
        make_space("micronas", 1, 9, 6)
    with pytest.raises(SpaceError, match="WINDOWxCHANNELS"):
        parse_input("128")
    with pytest.raises(SpaceError, match="2 classes"):
        make_space("micronas", 128, 9, 1)
