"""One rule decides whether a device output equals the host interpreter's."""
import zlib

from tinyhil.verdict import EXACT, MISMATCH, OK, ONE_STEP, ROUNDING, compare_output, largest_steps, usable


def int8(*values: int) -> bytes:
    return bytes(v & 0xFF for v in values)


def test_equal_outputs_are_exact():
    c = compare_output(int8(1, -2, 3), int8(1, -2, 3))
    assert (c.kind, c.max_steps, c.status) == (EXACT, 0, OK) and c.usable


def test_one_step_off_is_usable_and_counted():
    c = compare_output(int8(1, -2, 4, 0), int8(1, -1, 3, 0))  # -2 vs -1 and 4 vs 3
    assert (c.kind, c.max_steps, c.steps_off, c.size) == (ONE_STEP, 1, 2, 4)
    assert c.status.startswith(ROUNDING) and "2 of 4 outputs one step off" in c.status
    assert usable(c.status) and c.usable


def test_two_steps_off_or_wrapping_is_a_mismatch():
    c = compare_output(int8(127, 0), int8(-128, 0))  # int8, not bytes: 255 steps apart
    assert (c.kind, c.max_steps) == (MISMATCH, 255) and not usable(c.status)
    assert "by up to 255 steps" in c.status


def test_crc_only_outputs_compare_by_crc_and_size():
    host = bytes(range(64))
    assert compare_output(None, host, zlib.crc32(host), len(host)).kind == EXACT
    wrong = compare_output(None, host, zlib.crc32(host) ^ 1, len(host))
    assert (wrong.kind, wrong.max_steps) == (MISMATCH, None) and not wrong.usable
    assert compare_output(int8(1, 2), int8(1, 2, 3)).kind == MISMATCH  # a short output


def test_largest_steps_counts_an_unknown_output_as_255():
    exact, off = compare_output(int8(1), int8(1)), compare_output(int8(2), int8(1))
    assert largest_steps([exact, off]) == 1
    assert largest_steps([exact, compare_output(None, int8(1))]) == 255
    assert largest_steps([]) == 0
