"""Training: python -m asdn_tf.train --flagfile=configs/cpu.txt

Every update draws one LFR level, trains the trunk and that level's branch only (L1 loss,
Adam, the learning rate halved on a schedule), and the loss is divided by the number of
replicas. Restarting the same command resumes from the newest checkpoint in --output_dir that
can be restored; `--restart` starts again from step 0 and moves the earlier run's files aside.
With `--strategy=multiworker` the same command runs on every machine, each with its own
TF_CONFIG: the chief alone writes --output_dir and the others follow its checkpoints.
FSDN (`--model=fsdn --scale=S`) fine-tunes a fixed-scale network, usually from ASDN weights
(`--init_from`).

The flags mirror `ModelConfig` (asdn_tf/nn/config.py), `DataConfig` (asdn_tf/data/config.py)
and `TrainConfig` (asdn_tf/training/config.py); `--preset` picks the base model config and
any model flag given explicitly overrides it.

This module is the TensorFlow step adapter of the one loop (asdn_tf/training/loop.py): the step
is in asdn_tf/training/train_step.py, the files of --output_dir in asdn_tf/training/run_folder.py
and the command line in asdn_tf/cli/train.py.
TensorFlow is imported when `train` runs, not with this module, so that the command can hand
another Keras backend its own trainer.
"""


import contextlib
import pathlib
import time

import numpy as np
from absl import logging

from asdn_tf.inference.precision import dtype_policy
from asdn_tf.data import data_folders
from asdn_tf.evaluation import benchmark
from asdn_tf.io import pixels
from asdn_tf.training import loop, run_folder, tf_checkpoints
from asdn_tf.training.common import (check_arguments, check_validation_dir, resolve_init_from,
                                     warm_start)
from asdn_tf.training.errors import TrainingError


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
    with run_folder.output_folder(session.loop.output_dir) if cluster.chief \
            else contextlib.nullcontext():
        session.begin(restart, init_from)
        return session.run(batches)


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
    """One run of `train` under TensorFlow: the step adapter `loop.Loop` drives (see there)."""

    def __init__(self, configs, model, scale, preset_name, output_dir, distribution, cluster,
                 trainer, use_jit, images):
        from asdn_tf.training import train_step
        model_config, data_config, train_config = configs
        self.model, self.distribution, self.cluster = model, distribution, cluster
        self.network, self.optimizer = trainer.network, trainer.optimizer
        self.steps = train_step.per_level_steps(trainer, distribution, use_jit)
        self.images, self.iterator, self.writer = images, None, None
        self.checkpoints = tf_checkpoints.Checkpoints(
            output_dir, self.network, self.optimizer, train_config.keep_checkpoints,
            cluster.chief, cluster.task)
        self.loop = loop.Loop(self, self.checkpoints, self.network, output_dir,
                              run_folder.WeightsSidecar(
                                  model=model, scale=scale, preset=preset_name,
                                  model_config=model_config, data_config=data_config,
                                  train_config=train_config, steps=0, training_seconds=0.0,
                                  validation_psnr={}), images, cluster.chief)

    def step(self):
        return int(self.optimizer.iterations.numpy())

    def begin(self, restart, init_from):
        """Resumes, or warm-starts from `init_from`, in the run folder (the chief) or from the
        chief (the others)."""
        import tensorflow as tf
        output_dir = self.loop.output_dir
        if self.cluster.chief:
            self.loop.state = loop.resume(output_dir, restart, self.checkpoints,
                                          lambda: self._warm_start(init_from))
        self.writer = (tf.summary.create_file_writer(str(output_dir / run_folder.LOGS))
                       if self.cluster.chief else tf.summary.create_noop_writer())
        self.loop.clock = time.time()
        if self.cluster.workers > 1:
            from asdn_tf.training import train_step
            with self._peers_checked():
                train_step.broadcast_from_chief(self.distribution, [*self.network.variables,
                                                                    *self.optimizer.variables])
            if not self.cluster.chief:
                logging.info("%s starts at step %d, the chief's", self.cluster.task, self.step())

    def _warm_start(self, init_from):
        if init_from:
            warm_start(self.network, init_from, self.loop.sidecar.model_config, self.model)

    def _peers_checked(self):
        from asdn_tf.training import train_step
        return train_step.peers_checked(self.cluster, self.checkpoints.resume_point)

    def run(self, batches):
        self.iterator = iter(batches)
        self.loop.run()
        self.writer.flush()
        return self.loop.finish(self.cluster.task)

    def update(self):
        from asdn_tf.training import train_step
        with self._peers_checked():
            batch = next(self.iterator)
        update = train_step.pop_update(batch, self.distribution)
        with self._peers_checked():
            return float(self.steps(*update)(batch))

    def sync(self):
        """TensorFlow's updates write the variables themselves."""

    def validate(self, scales):
        return validate(self.network, self.images, scales)

    def summarize(self, step, values, samples=False):
        import tensorflow as tf
        with self.writer.as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(name, value)
            if samples:
                tf.summary.image("samples", _sample_images(
                    self.network, self.images, self.loop.scales[0]), max_outputs=3)


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
