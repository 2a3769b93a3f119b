"""FSDN under JAX (asdn_tf.training.train_jax): the update TensorFlow makes, on the batches
asdn_tf.data.pipeline makes, and a command-line run without TensorFlow whose weights TensorFlow loads.
Each JAX part runs in a child process with KERAS_BACKEND=jax; this process is the TensorFlow
side."""

import json
import textwrap

import numpy as np
import pytest
from PIL import Image

from asdn_tf.data.config import DataConfig
from asdn_tf.training.config import TrainConfig
from asdn_tf.data import folder_data
from conftest import BLOCK_TENSORFLOW, run_jax
from jax_cache import jax_compilation_cache  # noqa: F401 (autouse)

PATCH, SCALE = 8, 2
DATA_CONFIG = DataConfig(patch_size=PATCH, batch_size=2)
# A larger rate than the paper's, so that the weights move well beyond the tolerance.
TRAIN_CONFIG = TrainConfig(learning_rate=1e-3, clip_norm=0.05)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for index in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), np.uint8)).save(folder / f"{index}.png")
    return folder


def test_batch_is_the_tf_pipelines(image_folder):
    """p×p LR made from (p·s)×(p·s) HR by the exact bicubic, as asdn_tf.data.pipeline's fixed_scale
    batches are."""
    from asdn_tf.data.imresize import imresize
    images = folder_data.load_folder_images([image_folder], PATCH * SCALE)
    batch = folder_data.fixed_scale_batch(images, DATA_CONFIG, 5, SCALE, seed=1)
    assert batch["hr"].shape == (2, PATCH * SCALE, PATCH * SCALE, 3)
    expected = imresize(batch["hr"], scale=1.0 / SCALE, size=(PATCH, PATCH)).numpy()
    np.testing.assert_allclose(batch["lr"], expected, atol=1e-5)
    again = folder_data.fixed_scale_batch(images, DATA_CONFIG, 5, SCALE, seed=1)
    np.testing.assert_array_equal(again["hr"], batch["hr"])


@pytest.mark.slow
def test_update_matches_tensorflow(tmp_path, image_folder):
    """Two FSDN updates from the same weights and batches: the same losses and weights under
    both backends, and every weight trained (no level's mask)."""
    import keras
    from asdn_tf.training import train_step
    from asdn_tf.nn.model import build_fsdn
    from asdn_tf.training.config import learning_rate_schedule
    keras.utils.set_random_seed(0)
    initial = build_fsdn("tiny", SCALE)
    initial.save_weights(tmp_path / "init.weights.h5")
    images = folder_data.load_folder_images([image_folder], PATCH * SCALE)
    batches = [folder_data.fixed_scale_batch(images, DATA_CONFIG, step, SCALE)
               for step in range(2)]
    np.savez(tmp_path / "batches.npz", **{f"{key}{step}": batch[key]
                                          for step, batch in enumerate(batches)
                                          for key in ("lr", "hr")})
    run_jax(f"""
        import sys
        import numpy as np
        from asdn_tf.nn import config
        from asdn_tf.data.config import DataConfig
        from asdn_tf.training.config import TrainConfig
        from asdn_tf.training import train_jax
        folder = sys.argv[1]
        train_config = TrainConfig(learning_rate={TRAIN_CONFIG.learning_rate},
                                   clip_norm={TRAIN_CONFIG.clip_norm})
        network, optimizer = train_jax.build(config.preset("tiny"), train_config,
                                             fixed_scale={SCALE})
        network.load_weights(folder + "/init.weights.h5")
        state = train_jax.initial_state(network, optimizer)
        update = train_jax.make_update(network, optimizer, None, train_config.clip_norm)
        arrays = np.load(folder + "/batches.npz")
        losses = []
        for step in range(2):
            loss, state = update(state, arrays[f"lr{{step}}"], arrays[f"hr{{step}}"])
            losses.append(float(loss))
        train_jax.assign_state(network, optimizer, state)
        np.savez(folder + "/jax.npz", losses=losses,
                 *[np.asarray(w) for w in network.get_weights()])
    """, tmp_path)
    network = build_fsdn("tiny", SCALE)
    network.load_weights(tmp_path / "init.weights.h5")
    trainer = train_step.Trainer(network, PATCH, TRAIN_CONFIG.clip_norm)
    optimizer = keras.optimizers.Adam(learning_rate_schedule(TRAIN_CONFIG))
    trainer.compile(optimizer=optimizer)
    optimizer.build(network.trainable_variables)
    losses = [float(trainer.train_step(batch)) for batch in batches]
    jax = np.load(tmp_path / "jax.npz")
    np.testing.assert_allclose(jax["losses"], losses, rtol=1e-5)
    trainable = {id(v) for v in network.trainable_variables}
    for index, (variable, start) in enumerate(zip(network.weights, initial.get_weights())):
        tf_weight = variable.numpy()
        np.testing.assert_allclose(jax[f"arr_{index}"], tf_weight, atol=1e-5)
        moved = np.abs(jax[f"arr_{index}"] - start).max()
        assert moved > 1e-5 if id(variable) in trainable else moved == 0, variable.path


@pytest.mark.slow
def test_command_line_without_tensorflow(tmp_path, image_folder):
    """`python -m asdn_tf.train --model=fsdn` under JAX, TensorFlow unimportable: starts from an
    ASDN's trunk, validates at its own scale (as TensorFlow measures it), resumes, and writes
    final weights that TensorFlow loads and runs as JAX does."""
    import keras
    from asdn_tf.evaluation import benchmark
    from asdn_tf.training import train_tf
    from asdn_tf.nn.model import build_model
    from asdn_tf.inference.weights_io import load_model
    keras.utils.set_random_seed(1)
    asdn = build_model("tiny")
    asdn.save_weights(tmp_path / "asdn.weights.h5")
    output_dir = tmp_path / "run"
    flagfile = tmp_path / "flags.txt"
    common = (f"--sources={image_folder}\n--patch_size={PATCH}\n--batch_size=2\n"
              f"--checkpoint_every=1\n--validate_every=2\n--validation_dir={image_folder}\n"
              f"--log_every=1\n--model=fsdn\n--scale={SCALE}\n--preset=tiny\n"
              f"--init_from={tmp_path / 'asdn.weights.h5'}\n--output_dir={output_dir}\n")
    probe = np.random.default_rng(9).random((1, 10, 12, 3), np.float32)
    np.save(tmp_path / "probe.npy", probe)
    # One JAX process runs both: the first run (1 update) through the flags the command parses,
    # then the same command line for 2 updates through the command's own entry point, which
    # resumes from the first run's checkpoint and writes what the final weights give under JAX.
    command = BLOCK_TENSORFLOW + textwrap.dedent("""
        import pathlib, sys
        import numpy as np
        from absl import flags
        from asdn_tf.inference.weights_io import load_model
        from asdn_tf.cli import train
        first, second = sys.argv[1:]
        folder = pathlib.Path(first).parent
        values = flags.FlagValues()
        train.define_flags(values)
        values(["train", f"--flagfile={first}"])
        train.run_from_flags(values)
        print("-- the second run --", file=sys.stderr, flush=True)
        sys.argv[1:] = [f"--flagfile={second}"]
        try:
            train.run()
        except SystemExit as stop:
            assert not stop.code, stop.code
        model = load_model(folder / "run" / "final.weights.h5", precision="float32")
        np.save(folder / "jax_output.npy", np.asarray(model(np.load(folder / "probe.npy"))))
        assert not [name for name in sys.modules if name.startswith("tensorflow")]
    """)
    flagfile.write_text(common + "--steps=1\n")
    (tmp_path / "flags2.txt").write_text(common + "--steps=2\n")
    result = run_jax(command, flagfile, tmp_path / "flags2.txt")
    first, second = result.stderr.split("-- the second run --\n")
    assert "ckpt-1.npz at step 1" in second and "resumed from" not in first
    sidecar = json.loads((output_dir / "final.json").read_text())
    assert (sidecar["model"], sidecar["scale"], sidecar["steps"]) == ("fsdn", SCALE, 2)
    assert list(sidecar["validation_psnr"]) == [str(SCALE)]
    fsdn = load_model(output_dir / "final.weights.h5", precision="float32")
    np.testing.assert_allclose(np.asarray(fsdn(probe)), np.load(tmp_path / "jax_output.npy"),
                               atol=1e-5)
    # Two Adam updates move a weight by about the rate (1e-4); a trunk not taken from the
    # ASDN would differ by its random initialisation.
    for trained, source in zip(fsdn.trunk.get_weights(), asdn.trunk.get_weights()):
        assert np.abs(trained - source).max() < 1e-3
    psnr = train_tf.validate(fsdn, benchmark.load_set(image_folder), (float(SCALE),))
    assert sidecar["validation_psnr"][str(SCALE)] == pytest.approx(psnr[SCALE], abs=1e-3)
