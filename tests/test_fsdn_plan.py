"""The recursion with an FSDN: its integer factors first (×3.3 = FSDN ×3 then ASDN ×1.1), on the
whole image or by regions, and ASDN alone on request."""

import numpy as np
import pytest

import asdn_tf
from asdn_tf.inference import engine, fsdn_step, recursion
from asdn_tf.nn.config import ModelConfig


@pytest.mark.parametrize("scale, steps", [
    (2, [(2, (20, 20))]),
    (3, [(3, (30, 30))]),
    (2.5, [(2, (20, 20)), (1.25, (25, 25))]),
    (5.7, [(4, (40, 40)), (1.425, (57, 57))]),
    (8, [(4, (40, 40)), (2, (80, 80))]),
    (32, [(4, (40, 40)), (4, (160, 160)), (2, (320, 320))]),
    (1.5, [(1.5, (15, 15))]),
])
def test_the_plan_takes_the_largest_factor_that_fits_then_asdn(scale, steps):
    size = (round(10 * scale), round(10 * scale))
    assert recursion.plan(10, 10, scale, size, (2, 3, 4)) == pytest.approx(steps)


def test_the_plan_is_asdns_alone_without_factors_or_when_they_miss_the_size():
    assert recursion.plan(10, 10, 3.3, (33, 33)) == recursion.plan(10, 10, 3.3, (33, 33), ())
    assert recursion.plan(10, 10, 3, (30, 31), (2, 3, 4)) == [(2.0, (20, 20)), (1.5, (30, 31))]
    step, target = recursion.plan(10, 10, 3.3, (33, 33), (2, 3, 4))[0]
    assert (step, target) == (3, (30, 30)) and isinstance(step, int)


def _networks(config="tiny"):
    asdn = asdn_tf.build_model(config)
    fsdn = asdn_tf.build_fsdn(config, (2, 3, 4))
    rng = np.random.default_rng(0)
    for weight in fsdn.weights:  # away from a fresh build's zero biases
        weight.assign(weight + rng.normal(0, 0.02, weight.shape).astype("float32"))
    return asdn, fsdn


def _image(height=23, width=31, seed=1):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_an_integer_scale_is_the_fsdns_pass():
    asdn, fsdn = _networks()
    image = _image()
    output = asdn_tf.upscale(image, 3, model=asdn, fsdn=fsdn)
    expected = np.clip(np.asarray(fsdn(image[None].astype("float32") / 255, scale=3))[0], 0, 1)
    # The traced pass and the eager one differ in float rounding: a grey level at most.
    difference = np.abs(output.astype(int) - np.round(expected * 255))
    assert difference.max() <= 1 and difference.mean() < 0.01


def test_a_scale_between_runs_the_fsdn_then_asdn_for_the_rest():
    asdn, fsdn = _networks()
    image = _image()
    output = asdn_tf.upscale(image, 3.3, model=asdn, fsdn=fsdn)
    first = engine.run(fsdn_free := asdn, image.astype("float32") / 255, 3, (69, 93), fsdn=fsdn)
    rest = engine.run(fsdn_free, first, 1.1, (76, 102), dtype=np.uint8)
    assert output.shape == (76, 102, 3)
    np.testing.assert_array_equal(output, rest)


def test_asdn_alone_on_request_and_when_no_fsdn_ships():
    asdn, fsdn = _networks()
    image = _image()
    alone = asdn_tf.upscale(image, 3, model=asdn, fsdn=None)
    assert np.array_equal(alone, asdn_tf.upscale(image, 3, model=asdn))  # "auto": none paired
    assert not np.array_equal(alone, asdn_tf.upscale(image, 3, model=asdn, fsdn=fsdn))


def test_regions_give_the_whole_images_pass_without_attention():
    config = ModelConfig(num_blocks=2, num_layers=2, features=8, growth=8, sa_features=4,
                         channel_attention=False)
    _, fsdn = _networks(config)
    image = _image(40, 52).astype("float32") / 255
    whole = fsdn_step.upscale_step(fsdn, image, 2, 0, None, lambda: None)
    radius = 1 + config.num_blocks * config.num_layers
    tiled = fsdn_step.upscale_step(fsdn, image, 2, 16, radius, lambda: None)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_regions_take_the_samples_channel_means():
    _, fsdn = _networks()
    image = _image(90, 100).astype("float32") / 255
    passes = []
    whole = fsdn_step.upscale_step(fsdn, image, 3, 0, None, lambda: None)
    tiled = fsdn_step.upscale_step(fsdn, image, 3, 32, None, lambda: passes.append(1))
    assert len(passes) == fsdn_step.count_passes(fsdn.model_config, (90, 100), 3, 32) == 12
    assert np.abs(tiled - whole).max() < 2 / 255


def test_large_steps_are_cut_into_regions_that_fit_the_budget():
    config = asdn_tf.FSDN(ModelConfig(features=64, growth=32), 2).model_config
    assert fsdn_step.choose_tile(config, (200, 200), 2) == 0
    side = fsdn_step.choose_tile(config, (1200, 1200), 4)
    assert side >= 64
    assert fsdn_step.pass_bytes(config, 4, (side + 24) ** 2) <= engine.tiling.MEMORY_BUDGET


def test_anything_else_as_the_fsdn_is_one_line():
    with pytest.raises(TypeError, match='fsdn must be "auto", None or an FSDN'):
        asdn_tf.upscale(_image(), 2, model=asdn_tf.build_model("tiny"), fsdn="x4.h5")


def _saved_fsdn(folder, fsdn):
    """An FSDN weights file with the sidecar training writes."""
    from asdn_tf.data.config import DataConfig
    from asdn_tf.training.config import TrainConfig
    from asdn_tf.training import run_folder
    path = folder / "fsdn.weights.h5"
    run_folder.save_weights(fsdn, path, run_folder.WeightsSidecar(
        model="fsdn", scale=fsdn.scales, preset="tiny", model_config=fsdn.model_config,
        data_config=DataConfig(), train_config=TrainConfig(), steps=0,
        training_seconds=0.0, validation_psnr={}))
    return path


def test_the_command_runs_an_fsdn_file_for_the_integer_part(tmp_path, capsys, weights):
    from conftest import _cli, _save
    from asdn_tf.inference.weights_io import load_model
    _, fsdn = _networks()
    fsdn_path = _saved_fsdn(tmp_path, fsdn)
    source = _save(tmp_path / "in.png")
    status, _, err = _cli(capsys, f"--input={source}", f"--output={tmp_path / 'out.png'}",
                          "--scale=3.3", f"--weights={weights}", "--preset=tiny",
                          f"--fsdn={fsdn_path}", "--precision=float32")
    assert status == 0, err
    expected = asdn_tf.upscale(np.asarray(asdn_tf.io.image_io.read_image(source)), 3.3,
                               model=load_model(weights, "tiny", precision="float32"),
                               fsdn=load_model(fsdn_path, precision="float32"))
    np.testing.assert_array_equal(asdn_tf.io.image_io.read_image(tmp_path / "out.png"), expected)


@pytest.mark.parametrize("value, words", [
    ("missing.weights.h5", "--fsdn: weights file not found: missing.weights.h5"),
    ("asdn", "is not an FSDN"),
])
def test_a_bad_fsdn_flag_is_one_line_before_any_work(tmp_path, capsys, weights, value, words):
    from conftest import _cli, _save
    if value == "asdn":
        value = tmp_path / "asdn.weights.h5"
        value.write_bytes(weights.read_bytes())
        (tmp_path / "asdn.json").write_text('{"model": "asdn"}')
    source = _save(tmp_path / "in.png")
    status, _, err = _cli(capsys, f"--input={source}", f"--output={tmp_path / 'out.png'}",
                          "--scale=2", f"--fsdn={value}")
    assert status == 1 and words in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.png").exists()


def test_evaluate_measures_the_plan_it_is_given(tmp_path, datasets_dir, weights):
    from asdn_tf.cli import evaluate
    _, fsdn = _networks()
    fsdn_path = _saved_fsdn(tmp_path, fsdn)
    common = dict(data_dir=datasets_dir, sets=["Set5"], scales=["3"], method="asdn",
                  weights=str(weights), preset="tiny", precision="float32")
    alone = evaluate.run(**common, fsdn="none", output_json=tmp_path / "alone.json")
    plan = evaluate.run(**common, fsdn=str(fsdn_path), output_json=tmp_path / "plan.json")
    assert "plan: ASDN's x2 recursion alone" in alone
    assert "plan: x2, x3, x4 by the FSDN, then ASDN" in plan  # the factors it has
    import json
    rows = [json.loads((tmp_path / f"{name}.json").read_text())["results"][0]
            for name in ("alone", "plan")]
    assert [row["fsdn"] for row in rows] == [False, True] and rows[0]["psnr"] != rows[1]["psnr"]
