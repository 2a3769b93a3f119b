"""The FSDN bundled with the default model: it loads, says where it comes from, runs the integer
part of the default model's scales, and keeps the rule it shipped under."""

import json

import numpy as np
import pytest

import asdn_tf
from asdn_tf.evaluation import benchmark
from asdn_tf.inference import weights_io


def _sidecar():
    path = weights_io.WEIGHTS_FOLDER / f"{weights_io.BUNDLED_FSDN['default']}.json"
    return json.loads(path.read_text())


def test_the_bundled_fsdn_loads_with_its_sidecar():
    fsdn = weights_io.shared_fsdn("float32", "default")
    assert isinstance(fsdn, asdn_tf.FSDN) and tuple(fsdn.scales) == (2, 3, 4)
    assert fsdn.model_config == asdn_tf.preset("fsdn")
    sidecar = _sidecar()
    assert sidecar["model"] == "fsdn" and sidecar["preset"] == "fsdn"
    assert sidecar["command"] == "python -m asdn_tf.train --flagfile=configs/fsdn.txt"
    assert sidecar["steps"] > 0 and sidecar["training_seconds"] > 0 and sidecar["machine"]
    assert set(sidecar["validation_psnr"]) >= {"2", "3", "4"}


def test_the_default_model_runs_it_for_the_integer_part():
    image = np.random.default_rng(0).integers(0, 256, (21, 26, 3), dtype=np.uint8)
    asdn = asdn_tf.load_pretrained("default", "float32")
    fsdn = weights_io.shared_fsdn("float32", "default")
    chosen = asdn_tf.upscale(image, 3.3, model="default", precision="float32")
    np.testing.assert_array_equal(chosen, asdn_tf.upscale(image, 3.3, model=asdn, fsdn=fsdn))
    assert not np.array_equal(chosen, asdn_tf.upscale(image, 3.3, model=asdn, fsdn=None))
    # Below ×2 there is no integer part: ASDN alone, whatever is paired with it.
    np.testing.assert_array_equal(asdn_tf.upscale(image, 1.5, model="default", precision="float32"),
                                  asdn_tf.upscale(image, 1.5, model=asdn, fsdn=None))


@pytest.mark.slow
def test_it_beats_the_default_model_alone_on_set5(datasets_dir):
    """The shipping rule's largest margins, kept: ≥ 0.25 dB at ×3 and ×4 on Set5 (float32)."""
    images = {"Set5": benchmark.load_set(datasets_dir / "Set5")}
    asdn = asdn_tf.load_pretrained("default", "float32")
    fsdn = weights_io.shared_fsdn("float32", "default")
    alone = benchmark.evaluate(images, [3, 4], "asdn", asdn, fsdn=None)
    plan = benchmark.evaluate(images, [3, 4], "asdn", asdn, fsdn=fsdn)
    for before, after in zip(alone, plan):
        assert after["psnr"] >= before["psnr"] + 0.25, (before, after)
