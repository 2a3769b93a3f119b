"""Training: python -m asdn_tf.train --flagfile=configs/cpu.txt

Every update draws one LFR level, trains the trunk and that level's branch only (L1 loss,
Adam, the learning rate halved on a schedule), and the loss is divided by the number of
replicas. Restarting the same command resumes from the newest checkpoint in --output_dir that
can be restored; `--restart` starts again from step 0 and moves the earlier run's files aside.
With `--strategy=multiworker` the same command runs on every machine, each with its own
TF_CONFIG: the chief alone writes --output_dir and the others follow its checkpoints.
FSDN (`--model=fsdn --scale=S`) fine-tunes a fixed-scale network, usually from ASDN weights
(`--init_from`).

The flags mirror `ModelConfig`, `DataConfig` and `TrainConfig` (asdn_tf/nn/config.py); `--preset`
picks the base model config and any model flag given explicitly overrides it.

This module is the TensorFlow loop: the step is in asdn_tf/training/train_step.py, the files of
--output_dir in asdn_tf/training/run_folder.py and the command line in asdn_tf/cli/train.py.
TensorFlow is imported when `train` runs, not with this module, so that the command can hand
another Keras backend its own trainer.
"""


import contextlib
import math
import pathlib
import sys
import time

import numpy as np
from absl import logging

from asdn_tf.inference.precision import dtype_policy
from asdn_tf.data import data_folders
from asdn_tf.evaluation import benchmark
from asdn_tf.io import pixels
from asdn_tf.training import common, run_folder, tf_checkpoints
from asdn_tf.training.common import (check_arguments, check_validation_dir, resolve_init_from,
                                     warm_start)
from asdn_tf.training.run_folder import TrainingError


def train(model_config, data_config, train_config, output_dir, model="asdn", scale=None,
          init_from=None, strategy="default", jit_compile="auto", mixed_precision="none",
          preset_name=None, restart=False):
    """Trains (or resumes) and returns the path of the final weights (None on a worker that
    is not the chief).

    Resumes from the newest checkpoint in `output_dir` that can be restored
    (`tf_checkpoints.restore_newest`); `restart` first moves the earlier run's files into
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
    from asdn_tf.training import train_step  # TensorFlow from here on
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


def _validation_images(train_config):
    """The chief's validation set: [] when the run does not validate."""
    if not (train_config.validate_every and train_config.validation_dir):
        return []
    check_validation_dir(train_config.validation_dir)
    return benchmark.load_set(train_config.validation_dir)


def _batches(distribution, configs, model, scale):
    """The training batches, each replica's part made by its own pipeline; seeds Keras, TF and
    NumPy with the run's seed first, for the data order and the initial weights."""
    import keras

    from asdn_tf.data import pipeline as data_lib
    model_config, data_config, train_config = configs
    keras.utils.set_random_seed(train_config.seed)
    return distribution.distribute_datasets_from_function(
        lambda input_context: data_lib.training_dataset(
            data_config, model_config.num_levels, seed=train_config.seed,
            fixed_scale=scale if model == "fsdn" else None, input_context=input_context))


def _build_trainer(distribution, configs, model, scale, mixed_precision):
    """The network in the compute dtype of `mixed_precision` and its `Trainer`, on the
    strategy's devices."""
    from asdn_tf.training import train_step
    from asdn_tf.nn.model import build_fsdn, build_model
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
        from asdn_tf.training import schedule, train_step
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
        self.checkpoints = tf_checkpoints.Checkpoints(
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
            from asdn_tf.training import train_step
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
        from asdn_tf.training import train_step
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
        from asdn_tf.training import train_step
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
        common.progress_line(step, self.train_config.steps, loss, learning_rate, rate)

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


def validate(network, images, scales):
    """Mean Y-PSNR per scale under the evaluation protocol (docs/protocol.md)."""
    rows = benchmark.evaluate({"validation": images}, scales, "asdn", network)
    return {float(row["scale"]): float(row["psnr"]) for row in rows}


def _sample_images(network, images, scale, count=3, crop=96):
    """Bicubic | SR | HR strips of a few validation crops, for TensorBoard."""
    samples = []
    for _, hr in images[:count]:
        hr = hr[:crop, :crop]
        hr, lr = benchmark.benchmark_pair(hr, scale)
        strip = [benchmark.super_resolve(lr.reshape(*lr.shape[:2], -1), scale, hr.shape[:2],
                                        method, network) for method in ("bicubic", "asdn")]
        strip.append(pixels.to_float(hr))
        strip = [pixels.to_rgb(part) for part in strip]
        samples.append(np.concatenate(strip, axis=1))
    return np.clip(np.stack(samples), 0.0, 1.0)
