"""JAX training (asdn_tf.training.train_jax): the same update as the TensorFlow trainer, weights that
TensorFlow loads, resuming, data parallelism, and no TensorFlow import. Each JAX part runs in
a child process with KERAS_BACKEND=jax; this process is the TensorFlow side."""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from asdn_tf.data.config import PhotoDegradation
from asdn_tf.training.config import TrainConfig
from asdn_tf.data import folder_data
from conftest import BLOCK_TENSORFLOW, ONE_LEVEL, run_jax
from jax_cache import jax_compilation_cache  # noqa: F401 (autouse)

ROOT = pathlib.Path(__file__).resolve().parents[1]
PATCH = 8
# A larger rate than the paper's: a branch that moved when it should not would move by about
# the rate, far beyond the tolerance.
TRAIN_CONFIG = TrainConfig(learning_rate=1e-3, clip_norm=0.05)
# (level, passes): two plain updates and one of a ×2r recursion's second step trained on the
# network's own first step (the ×2 branch, 10, runs in it but is not trained).
UPDATES = ((3, 1), (7, 1), (5, 2))
OWN_STEP = PhotoDegradation(clean_probability=1.0, recursion_probability=0.0,
                            own_step_probability=1.0)


def batch(level, seed, passes=1):
    """(x_up, hr) of two random patches at `level`, an own-step pair when `passes` is 2."""
    size = folder_data.hr_patch_size(PATCH, level)
    patches = np.random.default_rng(seed).integers(0, 256, (2, size, size, 3), np.uint8)
    x_up, hr, made = folder_data.training_pair(patches, level, PATCH,
                                               photo=OWN_STEP if passes == 2 else None,
                                               rng=np.random.default_rng(seed))
    assert made == passes
    return x_up, hr


@pytest.fixture(scope="module")
def jax_steps(tmp_path_factory):
    """From tiny weights: the UPDATES under JAX; returns the folder with the initial weights,
    the batches and what JAX wrote."""
    import keras
    from asdn_tf.nn.model import build_model
    folder = tmp_path_factory.mktemp("jax_steps")
    keras.utils.set_random_seed(0)
    build_model("tiny").save_weights(folder / "init.weights.h5")
    arrays = {}
    for index, (level, passes) in enumerate(UPDATES):
        arrays[f"x_up{index}"], arrays[f"hr{index}"] = batch(level, index, passes)
    arrays["probe"] = np.random.default_rng(9).random((1, 12, 12, 3), np.float32)
    np.savez(folder / "batches.npz", **arrays)
    run_jax(f"""
        import sys
        import numpy as np
        from asdn_tf.nn import config
        from asdn_tf.data.config import DataConfig, PhotoDegradation
        from asdn_tf.training.config import TrainConfig
        from asdn_tf.training import train_jax
        folder = sys.argv[1]
        train_config = TrainConfig(learning_rate={TRAIN_CONFIG.learning_rate},
                                   clip_norm={TRAIN_CONFIG.clip_norm})
        network, optimizer = train_jax.build(config.preset("tiny"), train_config)
        network.load_weights(folder + "/init.weights.h5")
        state = train_jax.initial_state(network, optimizer)
        arrays = np.load(folder + "/batches.npz")
        losses = []
        for index, (level, passes) in enumerate({UPDATES}):
            update = train_jax.make_update(network, optimizer, level, train_config.clip_norm,
                                           passes)
            loss, state = update(state, arrays[f"x_up{{index}}"], arrays[f"hr{{index}}"])
            losses.append(float(loss))
        train_jax.assign_state(network, optimizer, state)
        network.save_weights(folder + "/jax.weights.h5")
        output = np.asarray(network(arrays["probe"], scale=1.5))
        np.savez(folder + "/jax.npz", losses=losses, output=output,
                 *[np.asarray(w) for w in network.get_weights()])
    """, folder)
    return folder


@pytest.mark.slow
def test_one_update_matches_tensorflow(jax_steps):
    import keras
    from asdn_tf.training import train_step as train_lib
    from asdn_tf.training.config import learning_rate_schedule
    from asdn_tf.nn.model import build_model
    network = build_model("tiny")
    network.load_weights(jax_steps / "init.weights.h5")
    optimizer = keras.optimizers.Adam(learning_rate_schedule(TRAIN_CONFIG))
    trainer = train_lib.Trainer(network, PATCH, TRAIN_CONFIG.clip_norm)
    trainer.compile(optimizer=optimizer)
    optimizer.build(network.trainable_variables)
    arrays = np.load(jax_steps / "batches.npz")
    losses = [float(trainer.train_step({"x_up": arrays[f"x_up{index}"],
                                        "hr": arrays[f"hr{index}"]}, level, passes))
              for index, (level, passes) in enumerate(UPDATES)]
    jax = np.load(jax_steps / "jax.npz")
    np.testing.assert_allclose(jax["losses"], losses, rtol=1e-5)
    weights = network.get_weights()
    initial = build_model("tiny")
    initial.load_weights(jax_steps / "init.weights.h5")
    moved = differences = 0.0
    for index, (tf_weight, start) in enumerate(zip(weights, initial.get_weights())):
        differences = max(differences, np.abs(jax[f"arr_{index}"] - tf_weight).max())
        moved = max(moved, np.abs(tf_weight - start).max())
    assert differences <= 1e-5 < moved
    # Branches other than the three trained stay as they were under both backends.
    for level in (0, 10):
        for variable in network.branches[level].trainable_variables:
            index = next(i for i, v in enumerate(network.weights) if v is variable)
            np.testing.assert_array_equal(jax[f"arr_{index}"], initial.get_weights()[index])


def test_weights_written_under_jax_load_in_tensorflow(jax_steps):
    from asdn_tf.inference.weights_io import load_model
    model = load_model(jax_steps / "jax.weights.h5", preset="tiny", precision="float32")
    probe = np.load(jax_steps / "batches.npz")["probe"]
    output = np.asarray(model(probe, scale=1.5))
    np.testing.assert_allclose(output, np.load(jax_steps / "jax.npz")["output"], atol=1e-5)


# Trains into each (folder, steps) of its arguments after the image folder.
TRAIN_SCRIPT = BLOCK_TENSORFLOW + f"""
import sys
from asdn_tf.nn import config
from asdn_tf.data.config import DataConfig, PhotoDegradation
from asdn_tf.training.config import TrainConfig
from asdn_tf.training import train_jax
data_config = DataConfig(sources=(sys.argv[1],), patch_size=8, batch_size=2,
                         level_weights={ONE_LEVEL})
for output_dir, steps in zip(sys.argv[2::2], sys.argv[3::2]):
    train_config = TrainConfig(steps=int(steps), checkpoint_every=1, validate_every=0,
                               log_every=1)
    train_jax.train(config.preset("tiny"), data_config, train_config, output_dir,
                    preset_name="tiny")
assert not [name for name in sys.modules if name.startswith("tensorflow")]
"""


@pytest.mark.slow
def test_resumes_at_the_right_step(tmp_path, image_folder):
    """2 updates, then the same command for 4 with a damaged newer checkpoint beside: it
    resumes at step 2 and ends where 4 updates in one go end. Every run, the command line's
    included, runs with TensorFlow made unimportable."""
    interrupted, whole = tmp_path / "interrupted", tmp_path / "whole"
    flagfile = tmp_path / "flags.txt"
    flagfile.write_text(f"--sources={image_folder}\n--patch_size=8\n--batch_size=2\n"
                        f"--steps=4\n--checkpoint_every=1\n--validate_every=0\n--log_every=1\n"
                        f"--level_weights={','.join(map(str, ONE_LEVEL))}\n"
                        f"--preset=tiny\n--output_dir={interrupted}\n")
    # One JAX process: TRAIN_SCRIPT's runs, then the command line through its entry point.
    result = run_jax(TRAIN_SCRIPT + textwrap.dedent(f"""
        import pathlib
        pathlib.Path(sys.argv[2], "checkpoints", "ckpt-3.npz").write_bytes(b"killed while writing")
        print("-- the command --", file=sys.stderr, flush=True)
        sys.argv[1:] = ["--flagfile={flagfile}"]
        from asdn_tf.cli.train import run
        try:
            run()
        except SystemExit as stop:
            assert not stop.code, stop.code
        assert not [name for name in sys.modules if name.startswith("tensorflow")]
    """), image_folder, interrupted, 2, whole, 4)
    before, command = result.stderr.split("-- the command --\n")
    assert "resumed from" in command and "ckpt-2.npz at step 2" in command
    assert "ckpt-3 cannot be restored" in command and "resumed from" not in before
    sidecar = json.loads((interrupted / "final.json").read_text())
    assert sidecar["steps"] == 4 and sidecar["backend"].startswith("jax ")
    from asdn_tf.inference.weights_io import load_model
    for resumed, straight in zip(load_model(interrupted / "final.weights.h5",
                                            precision="float32").get_weights(),
                                 load_model(whole / "final.weights.h5",
                                            precision="float32").get_weights()):
        np.testing.assert_array_equal(resumed, straight)


@pytest.mark.slow
def test_data_parallel_matches_one_device(tmp_path):
    """--strategy=mirrored: DataParallel over two (forced) CPU devices gives the update one
    device gives on the same global batch."""
    level = 5
    np.savez(tmp_path / "batch.npz", *batch(level, 0), *batch(level, 1))
    result = run_jax(f"""
        import sys
        import jax, keras
        import numpy as np
        from asdn_tf.nn import config
        from asdn_tf.data.config import DataConfig, PhotoDegradation
        from asdn_tf.training.config import TrainConfig
        from asdn_tf.training import train_jax
        arrays = np.load(sys.argv[1])
        x_up = np.concatenate([arrays["arr_0"], arrays["arr_2"]])
        hr = np.concatenate([arrays["arr_1"], arrays["arr_3"]])
        results = []
        for strategy in ("default", "mirrored"):
            devices = train_jax.set_distribution(strategy)
            keras.utils.set_random_seed(0)
            network, optimizer = train_jax.build(config.preset("tiny"), TrainConfig())
            update = train_jax.make_update(network, optimizer, {level})
            loss, state = update(train_jax.initial_state(network, optimizer),
                                 *train_jax.distribute_batch([x_up, hr]))
            results.append((devices, float(loss), [np.asarray(w) for w in state[0]]))
        (one, loss_one, weights_one), (two, loss_two, weights_two) = results
        print(one, two, loss_one, loss_two,
              max(np.abs(a - b).max() for a, b in zip(weights_one, weights_two)))
    """, tmp_path / "batch.npz", devices=2)
    one, two, loss_one, loss_two, difference = result.stdout.split()[-5:]
    assert (one, two) == ("1", "2")
    # The two devices sum their halves in another order: float32 rounding only.
    assert abs(float(loss_one) - float(loss_two)) <= 1e-5 * float(loss_one)
    assert float(difference) <= 1e-5


@pytest.mark.slow
def test_imports_without_tensorflow_and_refuses_what_needs_it():
    result = subprocess.run(
        [sys.executable, "-c", BLOCK_TENSORFLOW + textwrap.dedent("""
        from asdn_tf.nn import config
        from asdn_tf.data.config import DataConfig, PhotoDegradation
        from asdn_tf.training.config import TrainConfig
        from asdn_tf.training import train_jax
        for data in [DataConfig(sources=("tfds:div2k",)),
              DataConfig(sources=("x",), degrade_in_step=True)]:
            try:
                train_jax.train(config.preset("tiny"), data, TrainConfig(), "unused")
            except (ValueError, train_jax.TrainingError) as error:  # train.main: one line
                print(error)
        """)], capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert "tfds:div2k needs TensorFlow" in lines[0]
    assert "--degrade_in_step is the tf.data pipeline's" in lines[1]


@pytest.mark.parametrize("scale", [2.0, 3.0, 1.5])
def test_validation_follows_the_evaluation_protocol(tiny_model, datasets_dir, scale):
    """train_jax's validation (keras.ops and numpy) measures what asdn_tf.evaluate measures,
    a gray image and the ×2 recursion included."""
    from asdn_tf.evaluation import benchmark
    from asdn_tf.training import train_jax
    rgb = benchmark.load_set(datasets_dir / "Set5")[0][1][:70, :61]
    for hr in (rgb, rgb[..., 1]):
        expected = benchmark.measure(hr, scale, "asdn", tiny_model)[0]
        assert train_jax.measure_psnr(tiny_model, hr, scale) == pytest.approx(expected, abs=1e-3)
