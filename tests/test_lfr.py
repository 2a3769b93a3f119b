import math

import numpy as np
import pytest

from asdn_tf.nn import lfr
from asdn_tf.nn.lfr import level_and_weight_ops

LEVEL_VECTORS = [(1.27, 3, 0.3), (1.05, 1, 0.5), (1.1, 1, 0.0), (1.3, 3, 0.0), (1.95, 10, 0.5),
                 (2.0, 10, 0.0), (1.0001, 1, 0.999)]
PLANS = [(3, [2, 1.5]), (4, [2, 2]), (2.8, [2, 1.4]), (5.7, [2, 2, 1.425]), (8, [2, 2, 2]),
         (32, [2, 2, 2, 2, 2]), (1.5, [1.5]), (2, [2])]


@pytest.mark.parametrize("scale,level,weight", LEVEL_VECTORS)
def test_level_and_weight_vectors(scale, level, weight):
    i, w = lfr.level_and_weight(scale)
    assert i == level
    assert w == pytest.approx(weight, abs=1e-9)


@pytest.mark.parametrize("scale,level,weight", LEVEL_VECTORS)
def test_level_and_weight_ops_matches(scale, level, weight):
    i, w = level_and_weight_ops(np.float32(scale))
    assert int(i) == level
    assert float(w) == pytest.approx(weight, abs=1e-5)


def test_every_level_scale_has_zero_weight():
    for index, r in enumerate(lfr.level_scales()[1:], start=1):
        assert lfr.level_and_weight(r) == (index, 0.0)
        i, w = level_and_weight_ops(np.float32(r))
        assert (int(i), float(w)) == (index, 0.0)


def test_ops_agree_with_python_on_a_grid():
    for r in np.linspace(1.0005, 2.0, 397):
        i, w = lfr.level_and_weight(float(r))
        ti, tw = level_and_weight_ops(np.float64(r))
        assert int(ti) == i
        assert float(tw) == pytest.approx(w, abs=1e-5)
        assert 1 <= i <= 10 and 0.0 <= w < 1.0


@pytest.mark.parametrize("scale,plan", PLANS)
def test_recursion_plan_vectors(scale, plan):
    assert lfr.recursion_plan(scale) == pytest.approx(plan, abs=1e-12)
    assert int(lfr.num_steps_ops(np.float64(scale))) == len(plan)


@pytest.mark.parametrize("scale,plan", PLANS)
def test_step_size_ops_match_step_sizes(scale, plan):
    for height, width in [(10, 7), (13, 29), (1, 3)]:
        expected = lfr.step_sizes(height, width, scale)
        assert [step for step, _ in expected] == pytest.approx(plan, abs=1e-12)
        final = expected[-1][1]
        for index, (step, size) in enumerate(expected):
            tensor_step, tensor_size = lfr.step_size_ops(np.float64(scale), np.int32(index),
                                                         height, width, final)
            assert float(tensor_step) == pytest.approx(step, abs=1e-12)
            assert tuple(int(side) for side in tensor_size) == size


def test_step_sizes_vectors():
    # docs/method.md: intermediate sizes are round(h · product of the steps so far).
    assert lfr.step_sizes(10, 10, 5.7) == [(2.0, (20, 20)), (2.0, (40, 40)), (1.425, (57, 57))]
    assert lfr.step_sizes(5, 3, 3.3) == [(2.0, (10, 6)), (1.65, (17, 10))]
    assert lfr.step_sizes(5, 3, 3.3, size=(18, 11))[-1] == (1.65, (18, 11))


def test_plan_steps_off_a_power_of_two_by_less_than_the_snap_are_two():
    for scale in (2.0000002, 4 * (1 + 1e-8), float(np.float32(2.0000002))):
        plan = lfr.recursion_plan(scale)
        assert all(step == 2.0 for step in plan)
        assert int(lfr.num_steps_ops(np.float64(scale))) == len(plan)
        step, _ = lfr.step_size_ops(np.float64(scale), len(plan) - 1, 4, 4, (9, 9))
        assert float(step) == 2.0


def test_recursion_plan_reaches_the_scale():
    for scale in np.linspace(1.01, 32, 500):
        plan = lfr.recursion_plan(float(scale))
        assert math.prod(plan) == pytest.approx(scale)
        assert all(1.0 < step <= 2.0 for step in plan)


@pytest.mark.parametrize("bad,words", [(1.0, "not an upscaling"), (0.5, "greater than 1"),
                                       (-1, "greater than 1"), (float("nan"), "finite"),
                                       (float("inf"), "finite"), (33, "at most 32"),
                                       ("abc", "number")])
def test_bad_scales_name_the_range(bad, words):
    with pytest.raises(ValueError, match=words):
        lfr.recursion_plan(bad)


def test_max_scale_is_configurable():
    assert lfr.recursion_plan(64, max_scale=64) == [2.0] * 6
    with pytest.raises(ValueError, match="at most 16"):
        lfr.check_scale(20, max_scale=16)


def test_level_and_weight_rejects_scales_above_two():
    with pytest.raises(ValueError, match="at most 2"):
        lfr.level_and_weight(2.5)


def test_output_size_rounds_half_up():
    assert lfr.output_size(10, 15, 1.5) == (15, 23)
    assert lfr.output_size(7, 9, 3.3) == (23, 30)
    for dtype in ("int32", "float64"):
        sizes = lfr.output_size_ops(np.int32(10), np.int64(15), 1.5, dtype=dtype)
        assert [float(side) for side in sizes] == [15, 23]
    assert [int(side) for side in lfr.output_size_ops(7, 9, np.float64(3.3))] == [23, 30]


def test_output_size_ops_keep_a_python_scale_in_float64():
    # Rounded to float32 this scale is 2.5, and 3 × 2.5 would round up to 8.
    scale = 2.5 - 1e-9
    assert lfr.output_size(3, 3, scale) == (7, 7)
    assert [int(side) for side in lfr.output_size_ops(3, 3, scale)] == [7, 7]


def test_level_scale_ops_match_level_scales():
    scales = lfr.level_scales()
    assert [float(lfr.level_scale_ops(np.int32(level))) for level in range(11)] == scales


@pytest.mark.parametrize("text", ["1_5", "nan", "inf", "0x2", "\u0661.\u0665", "2,5", "",
                                  "1.5e0", ".5e1"])
def test_scale_text_must_be_a_plain_decimal(text):
    with pytest.raises(ValueError, match="must be a number in"):
        lfr.check_scale(text)


@pytest.mark.parametrize("text,value", [("2", 2.0), (" 3.3 ", 3.3), ("1.5", 1.5), ("4.", 4.0)])
def test_plain_decimal_scale_text_is_read(text, value):
    assert lfr.check_scale(text) == value
