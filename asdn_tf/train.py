"""Training: python -m asdn_tf.train --flagfile=configs/cpu.txt

Every update draws one LFR level, trains the trunk and that level's branch only (L1 loss,
Adam, the learning rate halved on a schedule), and the loss is divided by the number of
replicas. Restarting the same command resumes from the newest checkpoint in --output_dir that
can be restored; `--restart` starts again from step 0 and moves the earlier run's files aside.
With `--strategy=multiworker` the same command runs on every machine, each with its own
TF_CONFIG: the chief alone writes --output_dir and the others follow its checkpoints.
FSDN (`--model=fsdn --scale=S`) fine-tunes a fixed-scale network, usually from ASDN weights
(`--init_from`).

The flags mirror `ModelConfig`, `DataConfig` and `TrainConfig` (asdn_tf/config.py); `--preset`
picks the base model config and any model flag given explicitly overrides it.

This module is the loop and the command line: the step is in asdn_tf/train_step.py and the
files of --output_dir in asdn_tf/run_folder.py. TensorFlow is imported when `train` runs, not
with this module, so that `main` can hand another Keras backend its own trainer.
"""

import contextlib
import math
import pathlib
import sys
import time

import numpy as np
from absl import app, flags, logging

from asdn_tf import cli, data_folders, pixels, progress, run_folder
from asdn_tf import config as config_lib
from asdn_tf.precision import dtype_policy
from asdn_tf.weights_io import BUNDLED, WEIGHTS_FOLDER, bundled_weights, load_model, read_sidecar
from asdn_tf.run_folder import TrainingError


def train(model_config, data_config, train_config, output_dir, model="asdn", scale=None,
          init_from=None, strategy="default", jit_compile="auto", mixed_precision="none",
          preset_name=None, restart=False):
    """Trains (or resumes) and returns the path of the final weights (None on a worker that
    is not the chief).

    Resumes from the newest checkpoint in `output_dir` that can be restored
    (`run_folder.restore_newest`); `restart` first moves the earlier run's files into
    `output_dir/previous-<time>/`.

    With several workers (`strategy="multiworker"`), `data_config.batch_size` is the global
    batch, split evenly over the replicas, each of which makes its own part of it. Only the
    chief touches `output_dir`: it restores, validates and writes checkpoints, state, curve,
    weights and logs, and sends the others its weights and optimizer state at the start; the
    others save their checkpoint copies (TF's multi-worker rule: every worker saves) into
    temporary folders that they remove at once. When a worker stops, the others stop with a
    TrainingError once TF's collective ops or coordination service notice.

    Raises:
        TrainingError, ValueError, FileNotFoundError: bad settings or data, or checkpoints
            none of which can be restored, stated in one line.
    """
    check_arguments(model, scale, mixed_precision)
    data_folders.require_sources(data_config.sources)
    from asdn_tf import train_step  # TensorFlow from here on
    distribution = train_step.make_strategy(strategy)
    cluster = train_step.cluster_of(distribution)
    if data_config.batch_size % cluster.replicas:
        raise TrainingError(f"--batch_size={data_config.batch_size} is the global batch: it must "
                            f"split evenly over the {cluster.replicas} replicas training together")
    init_from = resolve_init_from(init_from) if init_from and cluster.chief else None
    use_jit = train_step.resolve_jit(jit_compile)
    images = _validation_images(train_config) if cluster.chief else []
    configs = (model_config, data_config, train_config)
    batches = _batches(distribution, configs, model, scale)
    trainer = _build_trainer(distribution, configs, model, scale, mixed_precision)
    session = _Session(configs, model, scale, preset_name, pathlib.Path(output_dir),
                       distribution, cluster, trainer, use_jit, images)
    with run_folder.output_folder(session.output_dir) if cluster.chief \
            else contextlib.nullcontext():
        session.begin(restart, init_from)
        session.loop(batches)
        return session.finish()


def check_arguments(model, scale, mixed_precision):
    if model == "fsdn" and (scale is None or scale < 2):
        raise TrainingError("--model=fsdn needs --scale, an integer >= 2")
    if model not in ("asdn", "fsdn"):
        raise TrainingError(f"--model must be asdn or fsdn, got {model!r}")
    if mixed_precision not in ("none", "float16", "bfloat16"):
        raise TrainingError(f"--mixed_precision must be none, float16 or bfloat16, "
                            f"got {mixed_precision!r}")


def _validation_images(train_config):
    """The chief's validation set: [] when the run does not validate."""
    if not (train_config.validate_every and train_config.validation_dir):
        return []
    from asdn_tf import evaluate
    _check_validation_dir(train_config.validation_dir)
    return evaluate.load_set(train_config.validation_dir)


def _batches(distribution, configs, model, scale):
    """The training batches, each replica's part made by its own pipeline; seeds Keras, TF and
    NumPy with the run's seed first, for the data order and the initial weights."""
    import keras

    from asdn_tf import data as data_lib
    model_config, data_config, train_config = configs
    keras.utils.set_random_seed(train_config.seed)
    return distribution.distribute_datasets_from_function(
        lambda input_context: data_lib.training_dataset(
            data_config, model_config.num_levels, seed=train_config.seed,
            fixed_scale=scale if model == "fsdn" else None, input_context=input_context))


def _build_trainer(distribution, configs, model, scale, mixed_precision):
    """The network in the compute dtype of `mixed_precision` and its `Trainer`, on the
    strategy's devices."""
    from asdn_tf import train_step
    from asdn_tf.model import build_fsdn, build_model
    model_config, data_config, train_config = configs
    policy = "float32" if mixed_precision == "none" else f"mixed_{mixed_precision}"
    with distribution.scope():
        with dtype_policy(policy):  # the network keeps it; later builds in the process do not
            network = (build_fsdn(model_config, scale) if model == "fsdn"
                       else build_model(model_config))
        return train_step.compile_trainer(network, train_config, data_config.patch_size,
                                          mixed_precision)


class _Session:
    """One run of `train`: the loop and what its parts share."""

    def __init__(self, configs, model, scale, preset_name, output_dir, distribution, cluster,
                 trainer, use_jit, images):
        from asdn_tf import schedule, train_step
        self.model_config, self.data_config, self.train_config = configs
        self.model, self.scale, self.preset_name = model, scale, preset_name
        self.output_dir, self.distribution, self.cluster = output_dir, distribution, cluster
        self.network, self.optimizer = trainer.network, trainer.optimizer
        self.steps = train_step.per_level_steps(trainer, distribution, use_jit)
        self.schedule = schedule.learning_rate_schedule(self.train_config)
        self.images = images
        # FSDN is measured at its own scale only.
        self.validation_scales = (self.train_config.validation_scales if model == "asdn"
                                  else (float(scale),))
        self.checkpoints = run_folder.Checkpoints(
            output_dir, self.network, self.optimizer, self.train_config.keep_checkpoints,
            cluster.chief, cluster.task)
        self.state, self.writer, self.clock = run_folder.RunState(), None, None

    def step(self):
        return int(self.optimizer.iterations.numpy())

    def begin(self, restart, init_from):
        """Resumes, or warm-starts from `init_from`, in the run folder (the chief) or from the
        chief (the others)."""
        import tensorflow as tf
        if self.cluster.chief:
            self._resume(restart, init_from)
        self.writer = (tf.summary.create_file_writer(str(self.output_dir / run_folder.LOGS))
                       if self.cluster.chief else tf.summary.create_noop_writer())
        self.clock = time.time()
        if self.cluster.workers > 1:
            from asdn_tf import train_step
            with self._peers_checked():
                train_step.broadcast_from_chief(self.distribution, [*self.network.variables,
                                                                    *self.optimizer.variables])
            if not self.cluster.chief:
                logging.info("%s starts at step %d, the chief's", self.cluster.task, self.step())

    def _resume(self, restart, init_from):
        if restart:
            run_folder.set_aside_run(self.output_dir)
        if self.checkpoints.restore() is None and init_from:
            warm_start(self.network, init_from, self.model_config, self.model)
        self.state = run_folder.load_state(self.output_dir)
        # Read now so that a bad curve is set aside at the start, with its warning.
        run_folder.read_validation_curve(self.output_dir / run_folder.VALIDATION_CURVE)

    def _peers_checked(self):
        from asdn_tf import train_step
        return train_step.peers_checked(self.cluster, self.checkpoints.resume_point)

    def loop(self, batches):
        """Updates until train_config.steps, logging, validating and saving on the way."""
        config, total = self.train_config, self.train_config.steps
        first_step, started = self.step(), time.time()
        iterator = iter(batches)
        while self.step() < total:
            loss = self._update(iterator)
            step = self.step()
            if step % config.log_every == 0 or step == total:
                self._log(step, loss, (step - first_step) / max(time.time() - started, 1e-9))
            # Only the chief validates, with no collective op: the others wait in the next update.
            if self.images and (step % config.validate_every == 0 or step == total):
                self._validate(step)
            if step % config.checkpoint_every == 0 or step == total:
                self.checkpoints.save(self.state, self._elapsed)
        self.writer.flush()
        sys.stderr.write("\n")

    def _elapsed(self):
        """Seconds since the last call, or since the start."""
        now = time.time()
        seconds, self.clock = now - self.clock, now
        return seconds

    def _update(self, iterator):
        """One update; its loss, or TrainingError when that is not finite."""
        from asdn_tf import train_step
        with self._peers_checked():
            batch = next(iterator)
        update = (train_step.pop_update(batch, self.distribution) if self.model == "asdn"
                  else (None,))
        with self._peers_checked():
            loss = float(self.steps(*update)(batch))
        if not math.isfinite(loss):
            raise TrainingError(f"loss became {loss} at step {self.step()}; stopped without "
                                f"saving; {self.checkpoints.newest()}")
        return loss

    def _log(self, step, loss, rate):
        import tensorflow as tf
        learning_rate = float(self.schedule(step))
        with self.writer.as_default(step=step):
            tf.summary.scalar("loss", loss)
            tf.summary.scalar("learning_rate", learning_rate)
        _progress(step, self.train_config.steps, loss, learning_rate, rate)

    def _validate(self, step):
        """Validates, logs and records the PSNR; keeps the weights when they are the best."""
        import tensorflow as tf
        psnr = validate(self.network, self.images, self.validation_scales)
        with self.writer.as_default(step=step):
            for scale, value in psnr.items():
                tf.summary.scalar(f"validation/psnr_x{scale:g}", value)
            tf.summary.image("samples", _sample_images(
                self.network, self.images, self.validation_scales[0]), max_outputs=3)
        logging.info("step %d validation PSNR %s", step, ", ".join(
            f"x{scale:g} {value:.2f}" for scale, value in psnr.items()))
        self.state.latest_validation = {f"{scale:g}": value for scale, value in psnr.items()}
        run_folder.record_validation(self.output_dir / run_folder.VALIDATION_CURVE, step, psnr)
        if run_folder.mean_psnr(psnr) > self.state.best_psnr:
            self.state.best_psnr = run_folder.mean_psnr(psnr)
            run_folder.save_weights(self.network, self.output_dir / run_folder.BEST_WEIGHTS,
                                    self._sidecar())

    def _sidecar(self):
        return run_folder.WeightsSidecar(
            model=self.model, scale=self.scale, preset=self.preset_name,
            model_config=self.model_config, data_config=self.data_config,
            train_config=self.train_config, steps=self.step(),
            training_seconds=round(self.state.seconds, 1),
            validation_psnr=self.state.latest_validation)

    def finish(self):
        """Writes the final weights (the chief); returns their path, or None (the others)."""
        if not self.cluster.chief:
            logging.info("done: %s (%d steps); the chief writes the weights", self.cluster.task,
                         self.step())
            return None
        final_path = self.output_dir / run_folder.FINAL_WEIGHTS
        run_folder.save_weights(self.network, final_path, self._sidecar())
        logging.info("done: %s (%d steps)", final_path, self.step())
        return final_path


def warm_start(network, init_from, model_config, model):
    """Initialises `network` from the weights file `init_from`: an FSDN from an ASDN's trunk
    (`model.init_from_asdn`), anything else weight for weight."""
    # float32, the precision the network's weights are kept in, whatever "auto" picks here.
    source = load_model(init_from, preset=None if read_sidecar(init_from) else model_config,
                        precision="float32")
    from asdn_tf.model import ASDN, init_from_asdn
    if model == "fsdn" and isinstance(source, ASDN):
        init_from_asdn(network, source)
    else:
        network.set_weights(source.get_weights())
    logging.info("initialised from %s", init_from)


def validate(network, images, scales):
    """Mean Y-PSNR per scale under the evaluation protocol (docs/protocol.md)."""
    from asdn_tf import evaluate
    rows = evaluate.evaluate({"validation": images}, scales, "asdn", network)
    return {float(row["scale"]): float(row["psnr"]) for row in rows}


def _sample_images(network, images, scale, count=3, crop=96):
    """Bicubic | SR | HR strips of a few validation crops, for TensorBoard."""
    from asdn_tf import evaluate
    samples = []
    for _, hr in images[:count]:
        hr = hr[:crop, :crop]
        hr, lr = evaluate.benchmark_pair(hr, scale)
        strip = [evaluate.super_resolve(lr.reshape(*lr.shape[:2], -1), scale, hr.shape[:2],
                                        method, network) for method in ("bicubic", "asdn")]
        strip.append(pixels.to_float(hr))
        strip = [pixels.to_rgb(part) for part in strip]
        samples.append(np.concatenate(strip, axis=1))
    return np.clip(np.stack(samples), 0.0, 1.0)


def _format_eta(seconds):
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _progress(step, total, loss, learning_rate, rate):
    eta = _format_eta((total - step) / rate) if rate > 0 else "?"
    progress.bar(log=True)(step, total, f"loss {loss:.4f} lr {learning_rate:.2e} "
                                        f"{rate:.2f} steps/s ETA {eta}")


def resolve_init_from(value):
    """The weights file --init_from names: a bundled model by name (weights_io.BUNDLED, e.g.
    "default"), or a path; a relative path not found from the working directory is looked up
    from the folder that holds the package (the repository root, or site-packages), so
    `asdn_tf/weights/...` works from anywhere.

    Raises:
        TrainingError: no such file.
    """
    if value in BUNDLED:
        path = bundled_weights(value)
        if not path.is_file():
            raise TrainingError(f"--init_from={value}: no {value} weights are bundled in this "
                                f"install ({path})")
        return path
    path = pathlib.Path(value)
    beside_package = WEIGHTS_FOLDER.parent.parent / path
    if not path.is_file() and not path.is_absolute() and beside_package.is_file():
        return beside_package
    if not path.is_file():
        raise TrainingError(f"--init_from weights not found: {value} (looked in "
                            f"{pathlib.Path.cwd()}; a bundled model is named by one of "
                            f"{', '.join(BUNDLED)})")
    return path


def _check_validation_dir(folder):
    if not pathlib.Path(folder).is_dir():
        raise TrainingError(f"--validation_dir {data_folders.missing_message(folder)}, or pass "
                            "--validate_every=0")


# ---- command line -------------------------------------------------------------------------

_CONFIG_CLASSES = (config_lib.ModelConfig, config_lib.DataConfig, config_lib.TrainConfig)


def define_flags(flag_values=flags.FLAGS):
    """Defines one flag per config field (`config.define_config_flags`) plus the run's flags."""
    for cls in _CONFIG_CLASSES:
        config_lib.define_config_flags(cls, flag_values)
    fv = {"flag_values": flag_values}
    flags.DEFINE_string("preset", "default",
                        f"Base model config: {sorted(config_lib.PRESETS)}.", **fv)
    flags.DEFINE_string("output_dir", "runs/default",
                        "Checkpoints, logs and weights go here.", **fv)
    flags.DEFINE_enum("model", "asdn", ["asdn", "fsdn"],
                      "Any-scale ASDN or fixed-scale FSDN.", **fv)
    flags.DEFINE_integer("scale", None, "FSDN's fixed integer scale.", **fv)
    flags.DEFINE_string("init_from", None,
                        "Warm-start weights (FSDN from ASDN): a .weights.h5 file, or the name "
                        f"of a model bundled in the package ({', '.join(BUNDLED)}).", **fv)
    flags.DEFINE_bool("restart", False,
                      "Start from step 0: the files of an earlier run in --output_dir "
                      "(checkpoints, state, curve, weights, logs) move to previous-<time>/ "
                      "there. Without it a run resumes, or stops when no checkpoint can be "
                      "restored.", **fv)
    flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multiworker", "tpu"],
                      "tf.distribute strategy.", **fv)
    flags.DEFINE_enum("mixed_precision", "none", ["none", "float16", "bfloat16"],
                      "Mixed-precision compute dtype.", **fv)
    flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"],
                      "XLA for the train step; auto: on only with a GPU.", **fv)


def configs_from_flags(values):
    """(ModelConfig, DataConfig, TrainConfig) from parsed flags; raises ValueError if invalid.
    The model config is the --preset's, with the model flags given explicitly over it."""
    model_config = config_lib.config_from_flags(config_lib.ModelConfig, values,
                                                base=config_lib.preset(values.preset))
    return (model_config, config_lib.config_from_flags(config_lib.DataConfig, values),
            config_lib.config_from_flags(config_lib.TrainConfig, values))


def run_from_flags(values):
    """Validates the parsed flags and trains; raises TrainingError, ValueError or OSError
    (a missing file, a full disk) with a one-line message for anything a user got wrong."""
    model_config, data_config, train_config = configs_from_flags(values)
    if not data_config.sources:
        raise TrainingError("--sources is empty: give image folders, globs or tfds:div2k")
    return _trainer_for_backend()(
        model_config, data_config, train_config, values.output_dir, values.model, values.scale,
        values.init_from, values.strategy, values.jit_compile, values.mixed_precision,
        values.preset, values.restart)


def _trainer_for_backend():
    """The `train` function for Keras's backend (KERAS_BACKEND): this module's for TensorFlow,
    `asdn_tf.train_jax`'s (the same recipe, no TensorFlow needed) for JAX."""
    import keras
    backend = keras.backend.backend()
    if backend == "jax":
        from asdn_tf import train_jax
        return train_jax.train
    if backend != "tensorflow":
        raise TrainingError(f"training runs on Keras's TensorFlow or JAX backend, not {backend}: "
                            "set KERAS_BACKEND=tensorflow or jax")
    return train


def main(argv):
    if len(argv) > 1:
        sys.exit(f"train: unexpected arguments {argv[1:]}")
    try:
        run_from_flags(flags.FLAGS)
    except (TrainingError, ValueError, OSError) as error:
        sys.exit(f"train: {error}")


def run():
    define_flags()
    app.run(main, flags_parser=cli.one_line_flags_parser("train"))


if __name__ == "__main__":
    run()
