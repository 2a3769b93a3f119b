"""Training: python -m asdn_tf.train --flagfile=configs/cpu.txt

Every update draws one LFR level, trains the trunk and that level's branch only (L1 loss,
Adam, the learning rate halved on a schedule), and the loss is divided by the number of
replicas. Restarting the same command resumes from the latest checkpoint in --output_dir.
FSDN (`--model=fsdn --scale=S`) fine-tunes a fixed-scale network, usually from ASDN weights
(`--init_from`).

The flags mirror `ModelConfig`, `DataConfig` and `TrainConfig` (asdn_tf/config.py); `--preset`
picks the base model config and any model flag given explicitly overrides it.
"""

import csv
import dataclasses
import io
import json
import math
import pathlib
import re
import sys
import time

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags, logging

from asdn_tf import config as config_lib
from asdn_tf import data as data_lib
from asdn_tf import cli, evaluate, fileio
from asdn_tf.model import build_fsdn, build_model, init_from_asdn
from asdn_tf.pretrained import dtype_policy, load_model, read_sidecar, sidecar_path


class _ExpectedRetracing(logging.logging.Filter):
    """The step is traced once per LFR level by design; TF's retracing warning says otherwise."""

    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


class TrainingError(Exception):
    """A failure a user can act on; main prints it as one line."""


class Trainer(keras.Model):
    """Wraps ASDN or FSDN with the paper's train step.

    `train_step(batch, level)` takes the level as a Python int: the step is traced once per level
    and only the trunk and that branch are handed to the optimizer, so the other branches get
    neither gradient nor Adam's momentum.

    Args:
        network: the `ASDN` or `FSDN` being trained.
        patch_size: int, LR patch side (used when degradation runs in the step).
    """

    def __init__(self, network, patch_size=48, **kwargs):
        super().__init__(**kwargs)
        self.network = network
        self.patch_size = patch_size
        self.is_fsdn = not hasattr(network, "branches")

    def call(self, inputs, level=None):
        return self.network(inputs) if self.is_fsdn else self.network(inputs, level=level)

    def step_variables(self, level):
        if self.is_fsdn:
            return self.network.trainable_variables
        return (self.network.trunk.trainable_variables
                + self.network.branches[level].trainable_variables)

    def train_step(self, batch, level=None):
        if self.is_fsdn:
            inputs, target = batch["lr"], batch["hr"]
        elif "x_up" in batch:
            inputs, target = batch["x_up"], batch["hr"]
        else:
            inputs, target = data_lib.degrade(batch["hr"], level, self.patch_size,
                                              self.network.num_levels)
        variables = self.step_variables(level)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            prediction = tf.cast(self(inputs, level=level, training=True), tf.float32)
            loss = tf.reduce_mean(tf.abs(target - prediction))
            scaled = self.optimizer.scale_loss(loss / replicas)
        gradients = tape.gradient(scaled, variables)
        self.optimizer.apply(gradients, variables)
        return loss


def make_strategy(name):
    """tf.distribute strategy by name: default, mirrored, multiworker or tpu."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise TrainingError(f"--strategy must be default, mirrored, multiworker or tpu, got {name!r}")


def resolve_jit(value):
    """--jit_compile=auto|true|false; auto turns XLA on only with a GPU (it is slower on CPU)."""
    if value == "auto":
        return bool(tf.config.list_physical_devices("GPU"))
    if value in ("true", "false"):
        return value == "true"
    raise TrainingError(f"--jit_compile must be auto, true or false, got {value!r}")


def _check_writable(folder):
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fileio.check_writable(folder)
    except OSError as error:
        raise TrainingError(f"output dir {folder} is not writable: {error.strerror or error}") \
            from None


def _atomic_write_text(path, text):
    with fileio.atomic_path(path) as temporary:
        temporary.write_text(text)


def save_weights(network, path, sidecar):
    """Writes `path` (.weights.h5) and its JSON sidecar through temporary files and renames."""
    with fileio.atomic_path(path) as temporary:
        network.save_weights(temporary)
    _atomic_write_text(sidecar_path(path), json.dumps(sidecar, indent=2, default=str) + "\n")


def learning_rate_schedule(train_config):
    """The learning rate per update: multiplied by decay_factor from each of lr_milestones on,
    or every decay_every updates when there are none."""
    rate, factor = train_config.learning_rate, train_config.decay_factor
    milestones = train_config.lr_milestones
    if not milestones:
        return keras.optimizers.schedules.ExponentialDecay(rate, train_config.decay_every, factor,
                                                           staircase=True)
    # PiecewiseConstantDecay keeps values[k] while step <= boundaries[k]: m - 1 makes the new
    # rate start at update m, as the staircase above does.
    return keras.optimizers.schedules.PiecewiseConstantDecay(
        [m - 1 for m in milestones], [rate * factor ** k for k in range(len(milestones) + 1)])


def record_validation(path, step, psnr_by_scale):
    """Adds `step`'s validation PSNR to the curve in the CSV at `path` (rewritten atomically).

    Rows from `step` on are dropped first (a resumed run repeats them), and the columns are the
    union of the scales seen, so the curve survives resumes and changed validation scales.
    """
    rows, columns = [], []
    if path.exists():
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            columns = [name for name in reader.fieldnames or () if name != "step"]
            rows = [row for row in reader if int(row["step"]) < step]
    row = {"step": step}
    for scale, value in psnr_by_scale.items():
        name = f"x{scale:g}"
        row[name] = f"{value:.4f}"
        if name not in columns:
            columns.append(name)
    out = io.StringIO()
    writer = csv.DictWriter(out, ["step", *columns], restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows([*rows, row])
    _atomic_write_text(path, out.getvalue())


def validate(network, images, scales):
    """Mean Y-PSNR per scale under the evaluation protocol (../shared/docs/ASDN.md §7)."""
    rows = evaluate.evaluate({"validation": images}, scales, "asdn", network)
    return {float(row["scale"]): row["psnr"] for row in rows}


def _sample_images(network, images, scale, count=3, crop=96):
    """Bicubic | SR | HR strips of a few validation crops, for TensorBoard."""
    samples = []
    for _, hr in images[:count]:
        hr = hr[:crop, :crop]
        hr, lr = evaluate.degrade(hr, scale)
        strip = [evaluate.super_resolve(lr.reshape(*lr.shape[:2], -1), scale, hr.shape[:2],
                                        method, network) for method in ("bicubic", "asdn")]
        strip.append(hr.reshape(*hr.shape[:2], -1).astype(np.float32) / 255.0)
        strip = [np.repeat(part, 3, axis=2) if part.shape[2] == 1 else part for part in strip]
        samples.append(np.concatenate(strip, axis=1))
    return np.clip(np.stack(samples), 0.0, 1.0)


def _format_eta(seconds):
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def train(model_config, data_config, train_config, output_dir, model="asdn", scale=None,
          init_from=None, strategy="default", jit_compile="auto", mixed_precision="none",
          preset_name=None):
    """Trains (or resumes) and returns the path of the final weights.

    Raises:
        TrainingError, ValueError, FileNotFoundError: bad settings or data, stated in one line.
    """
    output_dir = pathlib.Path(output_dir)
    _check_writable(output_dir)
    if not any(isinstance(f, _ExpectedRetracing) for f in tf.get_logger().filters):
        tf.get_logger().addFilter(_ExpectedRetracing())
    if model == "fsdn" and (scale is None or scale < 2):
        raise TrainingError("--model=fsdn needs --scale, an integer >= 2")
    if model not in ("asdn", "fsdn"):
        raise TrainingError(f"--model must be asdn or fsdn, got {model!r}")
    if init_from and not pathlib.Path(init_from).is_file():
        raise TrainingError(f"--init_from weights not found: {init_from}")
    use_jit = resolve_jit(jit_compile)
    if mixed_precision not in ("none", "float16", "bfloat16"):
        raise TrainingError(f"--mixed_precision must be none, float16 or bfloat16, "
                            f"got {mixed_precision!r}")
    validation_images = (evaluate.load_set(train_config.validation_dir)
                         if train_config.validate_every and train_config.validation_dir else [])
    keras.utils.set_random_seed(train_config.seed)
    dataset = data_lib.training_dataset(data_config, model_config.num_levels,
                                        seed=train_config.seed,
                                        fixed_scale=scale if model == "fsdn" else None)
    distribution = make_strategy(strategy)
    policy = "float32" if mixed_precision == "none" else f"mixed_{mixed_precision}"
    with distribution.scope():
        with dtype_policy(policy):  # the network keeps it; later builds in the process do not
            network = (build_fsdn(model_config, scale) if model == "fsdn"
                       else build_model(model_config))
        schedule = learning_rate_schedule(train_config)
        optimizer = keras.optimizers.Adam(schedule,
                                          global_clipnorm=train_config.clip_norm or None)
        if mixed_precision == "float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        trainer = Trainer(network, data_config.patch_size)
        trainer.compile(optimizer=optimizer)
        optimizer.build(network.trainable_variables)
    checkpoint = tf.train.Checkpoint(network=network, optimizer=optimizer)
    manager = tf.train.CheckpointManager(checkpoint, str(output_dir / "checkpoints"),
                                         max_to_keep=train_config.keep_checkpoints)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        logging.info("resumed from %s at step %d", manager.latest_checkpoint,
                     int(optimizer.iterations))
    elif init_from:
        _warm_start(network, init_from, model_config, model)
    best_path = output_dir / "best.weights.h5"
    state_path = output_dir / "state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    best_psnr = state.get("best_psnr", -math.inf)
    writer = tf.summary.create_file_writer(str(output_dir / "logs"))
    step_functions = {}

    def step_function(level):
        if level not in step_functions:
            def replica_step(batch):
                return trainer.train_step(batch, level)

            def distributed_step(batch):
                losses = distribution.run(replica_step, args=(batch,))
                return distribution.reduce(tf.distribute.ReduceOp.MEAN, losses, axis=None)

            step_functions[level] = tf.function(distributed_step, jit_compile=use_jit)
        return step_functions[level]

    def sidecar(extra):
        return {"model": model, "scale": scale, "preset": preset_name,
                "model_config": model_config.to_dict(),
                "data_config": dataclasses.asdict(data_config),
                "train_config": dataclasses.asdict(train_config),
                "steps": int(optimizer.iterations),
                "training_seconds": round(state.get("seconds", 0.0), 1), **extra}

    def save_checkpoint():
        try:
            manager.save(checkpoint_number=int(optimizer.iterations))
            state["seconds"] = state.get("seconds", 0.0) + (time.time() - session_start[0])
            session_start[0] = time.time()
            state["best_psnr"] = best_psnr
            _atomic_write_text(state_path, json.dumps(state, indent=2) + "\n")
        except (OSError, tf.errors.OpError) as error:
            raise TrainingError(f"cannot write a checkpoint in {output_dir}: "
                                f"{getattr(error, 'message', error)}; the previous checkpoints "
                                "are intact") from None

    # FSDN is measured at its own scale only.
    validation_scales = train_config.validation_scales if model == "asdn" else (float(scale),)
    session_start = [time.time()]
    first_step = int(optimizer.iterations)
    total = train_config.steps
    iterator = iter(distribution.experimental_distribute_dataset(dataset))
    started = time.time()
    while int(optimizer.iterations) < total:
        batch = next(iterator)
        level = None
        if model == "asdn":
            level = int(distribution.experimental_local_results(batch.pop("level"))[0][0])
        loss = step_function(level)(batch)
        step = int(optimizer.iterations)
        loss_value = float(loss)
        if not math.isfinite(loss_value):
            raise TrainingError(f"loss became {loss_value} at step {step}; stopped without "
                                f"saving, the last good checkpoint is in {output_dir}/checkpoints")
        if step % train_config.log_every == 0 or step == total:
            with writer.as_default(step=step):
                tf.summary.scalar("loss", loss_value)
                tf.summary.scalar("learning_rate", float(schedule(step)))
            rate = (step - first_step) / max(time.time() - started, 1e-9)
            _progress(step, total, loss_value, float(schedule(step)), rate)
        if validation_images and (step % train_config.validate_every == 0 or step == total):
            latest_validation = validate(network, validation_images, validation_scales)
            mean_psnr = float(np.mean(list(latest_validation.values())))
            with writer.as_default(step=step):
                for s, value in latest_validation.items():
                    tf.summary.scalar(f"validation/psnr_x{s:g}", value)
                tf.summary.image("samples", _sample_images(network, validation_images,
                                                           validation_scales[0]), max_outputs=3)
            logging.info("step %d validation PSNR %s", step,
                         ", ".join(f"x{s:g} {v:.2f}" for s, v in latest_validation.items()))
            state["latest_validation"] = {f"{s:g}": v for s, v in latest_validation.items()}
            record_validation(output_dir / "validation.csv", step, latest_validation)
            if mean_psnr > best_psnr:
                best_psnr = mean_psnr
                save_weights(network, best_path,
                             sidecar({"validation_psnr": state["latest_validation"]}))
        if step % train_config.checkpoint_every == 0 or step == total:
            save_checkpoint()
    writer.flush()
    final_path = output_dir / "final.weights.h5"
    save_weights(network, final_path, sidecar({"validation_psnr": state.get("latest_validation",
                                                                             {})}))
    sys.stderr.write("\n")
    logging.info("done: %s (%d steps)", final_path, int(optimizer.iterations))
    return final_path


def _warm_start(network, init_from, model_config, model):
    source = load_model(init_from, preset=None if read_sidecar(init_from) else model_config)
    if model == "fsdn" and hasattr(source, "branches"):
        init_from_asdn(network, source)
    else:
        network.set_weights(source.get_weights())
    logging.info("initialised from %s", init_from)


def _progress(step, total, loss, learning_rate, rate):
    eta = _format_eta((total - step) / rate) if rate > 0 else "?"
    width = 30
    filled = int(width * step / total)
    line = (f"[{'=' * filled}{'.' * (width - filled)}] {step}/{total} loss {loss:.4f} "
            f"lr {learning_rate:.2e} {rate:.2f} steps/s ETA {eta}")
    end = "\r" if sys.stderr.isatty() else "\n"
    sys.stderr.write(line + end)
    sys.stderr.flush()


# ---- command line -------------------------------------------------------------------------

_CONFIG_CLASSES = (config_lib.ModelConfig, config_lib.DataConfig, config_lib.TrainConfig)


def _field_help(cls):
    """Maps each field to its description in the class docstring's Args section."""
    helps = {}
    for match in re.finditer(r"^\s{8}(\w+): ([^\n]*(?:\n\s{12}[^\n]*)*)", cls.__doc__ or "", re.M):
        helps[match.group(1)] = " ".join(match.group(2).split())
    return helps


def define_flags(flag_values=flags.FLAGS):
    """Defines one flag per config field (the dataclass default and docstring) plus run flags."""
    fv = {"flag_values": flag_values}
    for cls in _CONFIG_CLASSES:
        helps = _field_help(cls)
        for field in dataclasses.fields(cls):
            default, text = field.default, helps.get(field.name, field.name)
            if isinstance(default, bool):
                flags.DEFINE_bool(field.name, default, text, **fv)
            elif isinstance(default, int):
                flags.DEFINE_integer(field.name, default, text, **fv)
            elif isinstance(default, float):
                flags.DEFINE_float(field.name, default, text, **fv)
            elif isinstance(default, tuple):
                flags.DEFINE_list(field.name, [str(v) for v in default], text, **fv)
            else:
                flags.DEFINE_string(field.name, default, text, **fv)
    flags.DEFINE_string("preset", "default",
                        f"Base model config: {sorted(config_lib.PRESETS)}.", **fv)
    flags.DEFINE_string("output_dir", "runs/default",
                        "Checkpoints, logs and weights go here.", **fv)
    flags.DEFINE_enum("model", "asdn", ["asdn", "fsdn"],
                      "Any-scale ASDN or fixed-scale FSDN.", **fv)
    flags.DEFINE_integer("scale", None, "FSDN's fixed integer scale.", **fv)
    flags.DEFINE_string("init_from", None, "Warm-start weights (FSDN from ASDN).", **fv)
    flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multiworker", "tpu"],
                      "tf.distribute strategy.", **fv)
    flags.DEFINE_enum("mixed_precision", "none", ["none", "float16", "bfloat16"],
                      "Mixed-precision compute dtype.", **fv)
    flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"],
                      "XLA for the train step; auto: on only with a GPU.", **fv)


def configs_from_flags(values):
    """(ModelConfig, DataConfig, TrainConfig) from parsed flags; raises ValueError if invalid."""
    base = config_lib.preset(values.preset).to_dict()
    overrides = {f.name: values[f.name].value for f in dataclasses.fields(config_lib.ModelConfig)
                 if values[f.name].present}
    model_config = config_lib.ModelConfig(**{**base, **overrides})
    built = [model_config]
    for cls in _CONFIG_CLASSES[1:]:
        kwargs = {}
        for field in dataclasses.fields(cls):
            value = values[field.name].value
            if isinstance(field.default, tuple):
                value = tuple(_parse_list_item(field, item) for item in value)
            kwargs[field.name] = value
        built.append(cls(**kwargs))
    return tuple(built)


def _parse_list_item(field, item):
    kinds = {"validation_scales": (float, "numbers"), "lr_milestones": (int, "integers"),
             "level_weights": (float, "numbers")}
    if field.name in kinds:
        kind, words = kinds[field.name]
        try:
            return kind(item)
        except ValueError:
            raise ValueError(f"--{field.name} takes {words}, got {item!r}") from None
    return item


def run_from_flags(values):
    """Validates the parsed flags and trains; raises TrainingError, ValueError or OSError
    (a missing file, a full disk) with a one-line message for anything a user got wrong."""
    model_config, data_config, train_config = configs_from_flags(values)
    if not data_config.sources:
        raise TrainingError("--sources is empty: give image folders, globs or tfds:div2k")
    return train(model_config, data_config, train_config, values.output_dir, values.model,
                 values.scale, values.init_from, values.strategy, values.jit_compile,
                 values.mixed_precision, values.preset)


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
