"""The TF train step: one update of the trunk and one LFR level's branch, on every replica of a
tf.distribute strategy. `python -m asdn_tf.train` and bench/run.py build their steps here.

Example:
    >>> trainer = compile_trainer(build_model("tiny"), TrainConfig(), patch_size=48)
    >>> step = per_level_steps(trainer)
    >>> loss = step(*pop_update(batch))(batch)        # ASDN: the level; FSDN: the head
"""

import contextlib
import dataclasses
import json
import logging as python_logging
import os
import re

import keras
import tensorflow as tf

from asdn_tf.io import errors
from asdn_tf.nn import lfr
from asdn_tf.data import pipeline as data_lib
from asdn_tf.data.imresize import imresize
from asdn_tf.nn.model import FSDN
from asdn_tf.training.errors import TrainingError
from asdn_tf.training.config import learning_rate_schedule


class Trainer(keras.Model):
    """Wraps ASDN or FSDN with the paper's train step.

    `train_step(batch, level, passes)` takes the level as a Python int: the step is traced once
    per level and only the trunk and that branch (an FSDN's: that head) are handed to the
    optimizer, so the other branches get neither gradient nor Adam's momentum. With `passes=2` the batch's x_up is the
    ×2 first step's input of a recursion, and the level is trained on the network's own output
    of that step (`own_first_step`).

    Args:
        network: the `ASDN` or `FSDN` being trained.
        patch_size: int, LR patch side (used when degradation runs in the step).
        clip_norm: float, clip the global norm of each update's gradient to this (0: no
            clipping).
    """

    def __init__(self, network, patch_size=48, clip_norm=0.0, **kwargs):
        super().__init__(**kwargs)
        self.network = network
        self.patch_size = patch_size
        self.clip_norm = clip_norm
        self.is_fsdn = isinstance(network, FSDN)

    def call(self, inputs, level=None):
        return self.network(inputs, level=level)

    def step_variables(self, level):
        if self.is_fsdn:
            return (self.network.trunk.trainable_variables
                    + self.network.heads[self.network.head_index(level=level or 0)]
                    .trainable_variables)
        return (self.network.trunk.trainable_variables
                + self.network.branches[level].trainable_variables)

    def train_step(self, batch, level=None, passes=1):
        if self.is_fsdn:
            inputs, target = batch["lr"], batch["hr"]
        elif "x_up" in batch:
            inputs, target = batch["x_up"], batch["hr"]
        else:
            inputs, target, _ = data_lib.training_pair(batch["hr"], level, self.patch_size,
                                                       self.network.num_levels)
        if passes == 2:
            inputs = self.own_first_step(inputs, level, tf.shape(target)[1:3])
        variables = self.step_variables(level)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            prediction = tf.cast(self(inputs, level=level, training=True), tf.float32)
            loss = tf.reduce_mean(tf.abs(target - prediction))
            scaled = self.optimizer.scale_loss(loss / replicas)
        gradients = tape.gradient(scaled, variables)
        if self.clip_norm:
            gradients = self._clip(gradients, replicas)
        self.optimizer.apply(gradients, variables)
        return loss

    def own_first_step(self, x_up, level, size):
        """The input of the step at `level` when it follows the network's own ×2 step on `x_up`
        (inference's recursion: clipped, brought up by the level's scale to `size`); no
        gradient flows into the first step."""
        first = self.network(x_up, level=self.network.num_levels - 1, training=False)
        first = tf.stop_gradient(tf.clip_by_value(tf.cast(first, tf.float32), 0.0, 1.0))
        scale = lfr.level_scales(self.network.num_levels)[level]
        return imresize(first, scale=scale, size=size)

    def _clip(self, gradients, replicas):
        """Clips by the norm of the whole batch's gradient. (Keras's `global_clipnorm` clips
        each replica's share before the optimizer sums them: a different update.) With several
        replicas the sum is made here, and each replica hands the optimizer 1/replicas of it."""
        if replicas > 1:
            gradients = tf.distribute.get_replica_context().all_reduce(
                tf.distribute.ReduceOp.SUM, gradients)
        # float16 gradients are still multiplied by the loss scale, which the optimizer divides.
        limit = self.clip_norm * getattr(self.optimizer, "dynamic_scale", 1.0)
        gradients, _ = tf.clip_by_global_norm(gradients, limit)
        return [gradient / replicas for gradient in gradients]


def compile_trainer(network, train_config, patch_size=48, mixed_precision="none"):
    """A `Trainer` of `network` with the paper's optimizer, Adam on `learning_rate_schedule`,
    built for the network's variables; its loss is scaled when `mixed_precision` is "float16".
    Call it inside the strategy's scope."""
    optimizer = keras.optimizers.Adam(learning_rate_schedule(train_config))
    if mixed_precision == "float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    trainer = Trainer(network, patch_size, train_config.clip_norm)
    trainer.compile(optimizer=optimizer)
    optimizer.build(network.trainable_variables)
    return trainer


class _ExpectedRetracing(python_logging.Filter):
    """The step is traced once per LFR level by design; TF's retracing warning says otherwise."""

    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


def per_level_steps(trainer, distribution=None, jit_compile=False):
    """`step(level, passes=1)`: the tf.function of one update at `level` (an FSDN's head) with
    `passes` network passes (`Trainer.train_step`), made on first use. It runs
    `trainer.train_step` on every replica of `distribution` (default: the current strategy) and
    returns the loss, the mean over the replicas."""
    distribution = distribution or tf.distribute.get_strategy()
    logger = tf.get_logger()
    if not any(isinstance(f, _ExpectedRetracing) for f in logger.filters):
        logger.addFilter(_ExpectedRetracing())
    functions = {}

    def step(level, passes=1):
        if (level, passes) not in functions:
            def replica_step(batch):
                return trainer.train_step(batch, level, passes)

            def distributed_step(batch):
                losses = distribution.run(replica_step, args=(batch,))
                return distribution.reduce(tf.distribute.ReduceOp.MEAN, losses, axis=None)

            functions[level, passes] = tf.function(distributed_step, jit_compile=jit_compile)
        return functions[level, passes]

    return step


def pop_update(batch, distribution=None):
    """Takes the LFR level (an FSDN's head) out of a batch (one per update) as a Python int, and the
    update's network passes (1 unless the batch holds "passes"): (level, passes)."""
    distribution = distribution or tf.distribute.get_strategy()

    def pop(key):
        return int(distribution.experimental_local_results(batch.pop(key))[0][0])

    return pop("level"), pop("passes") if "passes" in batch else 1


def resolve_jit(value):
    """--jit_compile=auto|true|false; auto turns XLA on only with a GPU (it is slower on CPU)."""
    if value == "auto":
        return bool(tf.config.list_physical_devices("GPU"))
    if value in ("true", "false"):
        return value == "true"
    raise TrainingError(f"--jit_compile must be auto, true or false, got {value!r}")


# ---- several replicas and workers -------------------------------------------------------------

def make_strategy(name):
    """tf.distribute strategy by name: default, mirrored, multiworker or tpu.

    multiworker reads the cluster from TF_CONFIG, must be made before any other TensorFlow
    work in the process, and returns once every worker of the cluster has started.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        task = _check_tf_config()
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        except (tf.errors.OpError, RuntimeError, ValueError) as error:
            raise TrainingError(f"cannot start {task} of TF_CONFIG's cluster: "
                                f"{errors.first_line(error)}") from None
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise TrainingError(f"--strategy must be default, mirrored, multiworker or tpu, got {name!r}")


_TF_CONFIG_HELP = ('(JSON, e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                   '"task": {"type": "worker", "index": 0}}; docs/training.md: On several '
                   'machines)')


def _check_tf_config():
    """Names this process's task in TF_CONFIG ("worker 1"); raises TrainingError when TF_CONFIG
    is missing or does not describe a cluster of chief and workers that holds the task."""
    text = os.environ.get("TF_CONFIG", "")
    if not text.strip():
        raise TrainingError(f"--strategy=multiworker needs TF_CONFIG set on each worker "
                            f"{_TF_CONFIG_HELP}")
    try:
        config = json.loads(text)
    except ValueError as error:
        raise TrainingError(f"TF_CONFIG is not JSON ({error}) {_TF_CONFIG_HELP}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise TrainingError(f"TF_CONFIG needs a cluster and a task {_TF_CONFIG_HELP}")
    jobs = {job: cluster.get(job) for job in ("chief", "worker") if job in cluster}
    others = sorted(set(cluster) - set(jobs))
    if others or not jobs or not all(isinstance(hosts, list) and hosts and all(
            isinstance(host, str) and ":" in host for host in hosts) for hosts in jobs.values()):
        raise TrainingError(f"TF_CONFIG's cluster must list host:port addresses under "
                            f"\"worker\" (and optionally one \"chief\"), got {cluster!r}")
    kind, index = task.get("type"), task.get("index", 0)
    if kind not in jobs or not isinstance(index, int) or not 0 <= index < len(jobs[kind]):
        raise TrainingError(f"TF_CONFIG's task {task!r} is not in its cluster {cluster!r}")
    return f"{kind} {index}"


@dataclasses.dataclass(frozen=True)
class Cluster:
    """Who trains together under a strategy.

    Args:
        workers: int, processes (several with multiworker, else one).
        replicas: int, replicas of the step, over all workers.
        chief: bool, this process restores, validates and writes the run folder.
        task: str, this process in messages: "worker 1", or "this process" alone.
    """

    workers: int
    replicas: int
    chief: bool
    task: str


def cluster_of(distribution):
    """The `Cluster` that trains under `distribution`."""
    resolver = getattr(distribution, "cluster_resolver", None)
    workers = 1
    if isinstance(distribution, tf.distribute.MultiWorkerMirroredStrategy) and resolver:
        spec = resolver.cluster_spec().as_dict()
        workers = len(spec.get("chief", ())) + len(spec.get("worker", ()))
    return Cluster(workers, distribution.num_replicas_in_sync,
                   distribution.extended.should_checkpoint,
                   f"{resolver.task_type} {resolver.task_id}" if workers > 1 else "this process")


def broadcast_from_chief(distribution, variables):
    """Gives every worker the chief's values of `variables` in one all-reduce: only the chief
    restores checkpoints and warm-starts (the run folder may be on its disk alone)."""

    groups = {}  # an all-reduce packs its tensors together: one per dtype
    for variable in variables:
        groups.setdefault(variable.dtype, []).append(variable)

    def chief_values():
        context = tf.distribute.get_replica_context()
        chief = tf.equal(context.replica_id_in_sync_group, 0)
        return [context.all_reduce(tf.distribute.ReduceOp.SUM, [
            tf.where(chief, variable, tf.zeros_like(variable)) for variable in group])
            for group in groups.values()]

    @tf.function
    def broadcast():
        values = distribution.experimental_local_results(distribution.run(chief_values))[0]
        for group, group_values in zip(groups.values(), values):
            for variable, value in zip(group, group_values):
                variable.assign(value)

    broadcast()


# TF's errors when a peer of a collective op stopped: its connection closed, or the
# coordination service missed its heartbeats.
_PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.CancelledError,
                tf.errors.DeadlineExceededError)
_PEER_REASONS = (("stopped sending heartbeats", "its heartbeats stopped"),
                 ("Connection reset by peer", "its connection was reset"),
                 ("Connection refused", "it refused the connection"),
                 ("Socket closed", "its connection closed"))


@contextlib.contextmanager
def peers_checked(cluster, resume_from):
    """Runs a block of collective ops: when another worker stopped, its error becomes one
    TrainingError line that says to rerun and that the run resumes from `resume_from()`."""
    try:
        yield
    except _PEER_ERRORS as error:
        if cluster.workers == 1:
            raise
        raise _lost_worker(error, cluster.task, resume_from()) from None


def _lost_worker(error, own_task, resume_from):
    """The one line for a collective op that failed because another worker stopped."""
    text = str(error)
    tasks = [f"{kind} {index}" for kind, index in
             re.findall(r"/job:(\w+)/(?:replica:\d+/)?task:(\d+)", text)]
    who = next((task for task in tasks if task != own_task), "another worker")
    reason = next((words for key, words in _PEER_REASONS if key in text),
                  errors.first_line(error).removeprefix("Collective ops is aborted by: "))
    return TrainingError(f"{who} of the cluster stopped or cannot be reached ({reason}); "
                         f"{own_task} stops too: start the same command on every worker "
                         f"again to resume from {resume_from}")
