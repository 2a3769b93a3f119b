"""Training under Keras's JAX backend, without TensorFlow:

    KERAS_BACKEND=jax python -m asdn_tf.train --flagfile=configs/cpu.txt

The recipe of `asdn_tf.train`: every update draws one LFR level and trains the trunk and that
level's branch only (L1 loss, Adam with the same learning-rate schedule and gradient clipping);
the other branches' weights and Adam moments stay as they are (the optimizer's update is
masked). Each level's update is one `jax.jit` program: its input size round(p · r_l) differs
from level to level, so one program for all levels would need padded inputs.

The loop itself is `asdn_tf.training.loop`'s, as under TensorFlow; this module is its JAX step
adapter. Batches come from image folders through `asdn_tf.data.folder_data` (numpy and PIL),
decided by the seed and the step, so a resumed run reads the batches it would have read.
Checkpoints are `checkpoints/ckpt-<step>.npz` in the run folder
(`asdn_tf.training.jax_checkpoints`); the same command resumes from the newest one that loads.
Validation follows the evaluation protocol (bicubic LR quantised to 8 bits, the ×2 recursion
above 2, Y-PSNR with the border shaved: `asdn_tf.evaluation.protocol`). Everything else in the
run folder (--restart, state.json, validation.csv, `best`/`final.weights.h5` and their
sidecars) is written by `asdn_tf.training.loop` and `run_folder`, as under TensorFlow; the
weights load in TensorFlow (`asdn_tf.inference.weights_io`).

`--strategy=mirrored` trains data-parallel over all local devices
(`keras.distribution.DataParallel`): the global batch is split over them and each update is
the one a single device makes from the same batch.

FSDN (`--model=fsdn --scale=S`) trains as under TensorFlow: every weight in every update, on
batches of p×p LR and (p·S)×(p·S) HR patches (`folder_data.fixed_scale_batch`), from an ASDN's
trunk with `--init_from`, validated at S alone.
"""

import pathlib

import jax
import keras
import numpy as np
from keras import ops

from asdn_tf.data import data_folders, folder_data, resizing
from asdn_tf.evaluation import protocol
from asdn_tf.io import image_io, pixels
from asdn_tf.nn import lfr
from asdn_tf.training import run_folder
from asdn_tf.nn.model import FSDN, build_fsdn, build_model
from asdn_tf.inference import recursion
from asdn_tf.inference.precision import dtype_policy
from asdn_tf.training.errors import TrainingError
from asdn_tf.training.config import learning_rate_schedule
from asdn_tf.training import jax_checkpoints, loop
from asdn_tf.training.common import check_arguments, resolve_init_from, warm_start


def _slot_mask(optimizer, trainable, keep):
    """Which of `optimizer.variables` an update may change: a weight's Adam moments where
    `keep` keeps the weight, and the optimizer's own variables (its step counter). Keras names
    a weight's slot `{weight.path with "/" as "_"}_{slot}` (`add_variable_from_reference`)."""
    owner = {f"{v.path.replace('/', '_')}_{slot}": k
             for v, k in zip(trainable, keep) for slot in ("momentum", "velocity")}
    mask = [owner.get(v.name, True) for v in optimizer.variables]
    found = sum(v.name in owner for v in optimizer.variables)
    if found != len(owner):
        raise RuntimeError(f"found {found} of the optimizer's {len(owner)} Adam moments by "
                           "name: this Keras names them another way")
    return mask


def make_update(network, optimizer, level, clip_norm=0.0, passes=1):
    """The jitted update of one level: (state, inputs, hr) → (loss, state).

    `state` is (trainable, non_trainable, optimizer) value lists (`initial_state`); only the
    trunk's and branch `level`'s weights and Adam moments change (and Adam's step counter).
    An FSDN (`level` None) trains every weight, its inputs the LR patches, not x_up.
    The loss is the mean L1 over the whole batch; with `clip_norm` the gradient is clipped by
    its global norm first. With `passes=2` the inputs are the ×2 first step's of a recursion:
    the level is trained on the network's own output of that step, as
    `train_step.Trainer.own_first_step` does.
    """
    trainable = network.trainable_variables
    if level is None:
        selected, level_argument = {id(v) for v in trainable}, {}
    else:
        selected = {id(v) for v in (network.trunk.trainable_variables
                                    + network.branches[level].trainable_variables)}
        level_argument = {"level": level}
    keep = [id(v) in selected for v in trainable]
    optimizer_keep = _slot_mask(optimizer, trainable, keep)

    def own_first_step(trainable_values, non_trainable_values, inputs, size):
        first, _ = network.stateless_call(trainable_values, non_trainable_values, inputs,
                                          level=network.num_levels - 1)
        first = jax.lax.stop_gradient(ops.clip(ops.cast(first, "float32"), 0.0, 1.0))
        return resizing.imresize(first, scale=lfr.level_scales(network.num_levels)[level],
                                   size=size)

    def loss_function(trainable_values, non_trainable_values, inputs, hr):
        if passes == 2:
            inputs = own_first_step(trainable_values, non_trainable_values, inputs,
                                    hr.shape[1:3])
        prediction, non_trainable_values = network.stateless_call(
            trainable_values, non_trainable_values, inputs, **level_argument)
        loss = ops.mean(ops.abs(hr - ops.cast(prediction, "float32")))
        return loss, non_trainable_values

    def update(state, inputs, hr):
        trainable_values, non_trainable_values, optimizer_values = state
        (loss, non_trainable_values), gradients = jax.value_and_grad(
            loss_function, has_aux=True)(trainable_values, non_trainable_values, inputs, hr)
        if clip_norm:
            norm = ops.sqrt(sum(ops.sum(ops.square(g)) for g, k in zip(gradients, keep) if k))
            factor = clip_norm / ops.maximum(norm, clip_norm)
            gradients = [g * factor for g in gradients]
        new_trainable, new_optimizer = optimizer.stateless_apply(optimizer_values, gradients,
                                                                 trainable_values)
        new_trainable = [new if k else old
                         for new, old, k in zip(new_trainable, trainable_values, keep)]
        new_optimizer = [new if k else old
                         for new, old, k in zip(new_optimizer, optimizer_values, optimizer_keep)]
        return loss, (new_trainable, non_trainable_values, new_optimizer)

    return jax.jit(update, donate_argnums=0)


def build(model_config, train_config, mixed_precision="none", fixed_scale=None):
    """(network, optimizer), both built; under the current Keras distribution, if any. The
    network is an ASDN, or an FSDN for the integer `fixed_scale`."""
    if mixed_precision not in ("none", "bfloat16"):
        raise TrainingError(f"--mixed_precision={mixed_precision} is not supported under JAX "
                            "(float16 needs loss scaling): use none or bfloat16")
    policy = "float32" if mixed_precision == "none" else "mixed_bfloat16"
    with dtype_policy(policy):
        network = (build_model(model_config) if fixed_scale is None
                   else build_fsdn(model_config, fixed_scale))
    optimizer = keras.optimizers.Adam(learning_rate_schedule(train_config))
    optimizer.build(network.trainable_variables)
    return network, optimizer


def initial_state(network, optimizer):
    """The (trainable, non_trainable, optimizer) values `make_update` takes."""
    return ([v.value for v in network.trainable_variables],
            [v.value for v in network.non_trainable_variables],
            [v.value for v in optimizer.variables])


def assign_state(network, optimizer, state):
    """Writes `state` back into the Keras variables (before saving or validating)."""
    trainable, non_trainable, optimizer_values = state
    for variables, values in ((network.trainable_variables, trainable),
                              (network.non_trainable_variables, non_trainable),
                              (optimizer.variables, optimizer_values)):
        for variable, value in zip(variables, values):
            variable.assign(value)


def set_distribution(strategy):
    """Sets the Keras distribution for --strategy: "default" (one device) or "mirrored"
    (`DataParallel` over every local device); returns how many devices share a batch."""
    if strategy == "default":
        keras.distribution.set_distribution(None)
        return 1
    if strategy == "mirrored":
        devices = keras.distribution.list_devices()
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        return len(devices)
    raise TrainingError(f"--strategy={strategy} is not supported under JAX: use default or "
                        "mirrored (data-parallel over all local devices)")


def distribute_batch(arrays):
    """Arrays placed as the current Keras distribution lays out a batch (unchanged without)."""
    distribution = keras.distribution.distribution()
    if distribution is None:
        return arrays
    return [jax.device_put(array, distribution.get_data_layout(array.shape).backend_layout)
            for array in arrays]


# ---- validation -------------------------------------------------------------------------

def load_validation_set(folder):
    """[(name, uint8 H×W or H×W×3)] of the images in `folder` (8-bit, as the protocol needs)."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise TrainingError(f"--validation_dir {data_folders.missing_message(folder)}, or "
                            "pass --validate_every=0")
    images = []
    for path in image_io.list_images(folder):
        image = image_io.read_image(path)
        if image.dtype != np.uint8:
            raise TrainingError(f"{path} is not 8-bit; the benchmark protocol measures 8-bit "
                                "images")
        images.append((path.name, image[..., :3] if image.ndim == 3 else image))
    if not images:
        raise TrainingError(f"no images in --validation_dir {folder}")
    return images


def upscale_with_keras_ops(network, image, scale, size):
    """float32 N×H×W×3 → N×size×3 through the upscale recursion (`inference.recursion`), each
    step on the whole images with `keras.ops`.
    An FSDN takes the LR image itself, at its own scale (`benchmark.super_resolve`)."""
    if isinstance(network, FSDN):
        return ops.convert_to_numpy(ops.clip(ops.cast(network(image), "float32"), 0.0, 1.0))

    def step(image, step_scale, target, last):
        x_up = resizing.imresize(image, scale=step_scale, size=target)
        return ops.clip(ops.cast(network(x_up, scale=step_scale), "float32"), 0.0, 1.0)

    return ops.convert_to_numpy(recursion.run(image, scale, size, step))


def measure_psnr(network, hr, scale):
    """Y-PSNR of one uint8 HR image at `scale` under the evaluation protocol
    (`asdn_tf.evaluation.protocol`), the LR the exact bicubic by `resizing.imresize` and gray
    images through the network as R = G = B."""

    def make_lr(image, size):
        image = pixels.to_float(image.reshape(*image.shape[:2], -1))[None]
        return pixels.to_uint8(resizing.imresize(image, scale=1.0 / scale, size=size))[0]

    def super_resolve(lr, size):
        rgb = np.repeat(lr, 3, axis=2) if lr.shape[2] == 1 else lr
        sr = upscale_with_keras_ops(network, pixels.to_float(rgb)[None], scale, size)[0]
        return sr.mean(axis=2, keepdims=True) if lr.shape[2] == 1 else sr

    hr, sr = protocol.sr_image(hr, scale, make_lr, super_resolve)
    return protocol.y_psnr(sr, hr, scale)


def validate(network, images, scales):
    """Mean Y-PSNR per scale over `images` ([(name, uint8 image)])."""
    return {float(scale): float(np.mean([measure_psnr(network, hr, float(scale))
                                         for _, hr in images])) for scale in scales}


# ---- training -------------------------------------------------------------------------

def train(model_config, data_config, train_config, output_dir, model="asdn", scale=None,
          init_from=None, strategy="default", jit_compile="auto", mixed_precision="none",
          preset_name=None, restart=False):
    """`train_tf.train` under the JAX backend; returns the path of the final weights.

    `jit_compile` is accepted for the same call and ignored: every update is compiled.

    Raises:
        TrainingError: a setting this trainer cannot run, or checkpoints that cannot be
            restored, in one line. ValueError, FileNotFoundError: bad data.
    """
    fixed_scale = _check_settings(data_config, model, scale, mixed_precision)
    devices = set_distribution(strategy)
    if data_config.batch_size % devices:
        raise TrainingError(f"--batch_size={data_config.batch_size} is the global batch: it "
                            f"must split evenly over the {devices} devices")
    output_dir = pathlib.Path(output_dir)
    validation_images = []
    if train_config.validate_every and train_config.validation_dir:
        validation_images = load_validation_set(train_config.validation_dir)
    init_from = resolve_init_from(init_from) if init_from else None
    crop = (folder_data.hr_patch_size(data_config.patch_size, model_config.num_levels - 1,
                                      model_config.num_levels) if fixed_scale is None
            else data_config.patch_size * fixed_scale)
    images = folder_data.load_folder_images(data_config.sources, crop, data_config.strict)
    keras.utils.set_random_seed(train_config.seed)
    network, optimizer = build(model_config, train_config, mixed_precision, fixed_scale)
    with run_folder.output_folder(output_dir):
        steps = _Steps(network, optimizer, validation_images, fixed_scale,
                       train_config.clip_norm)
        checkpoints = jax_checkpoints.Checkpoints(output_dir, train_config.keep_checkpoints,
                                                  steps.step, steps.values, steps.restored)
        state = loop.resume(output_dir, restart, checkpoints,
                            lambda: steps.warm_start(init_from, model_config, model))
        steps.state = initial_state(network, optimizer)
        steps.batches = folder_data.training_batches(images, data_config, steps.step(),
                                                     model_config.num_levels, train_config.seed,
                                                     fixed_scale=fixed_scale)
        run = loop.Loop(steps, checkpoints, network, output_dir, run_folder.WeightsSidecar(
            model=model, scale=scale, preset=preset_name, model_config=model_config,
            data_config=data_config, train_config=train_config, steps=0, training_seconds=0.0,
            validation_psnr={}, backend=f"jax {jax.__version__} ({jax.devices()[0].platform}, "
                                        f"{devices} device{'s' * (devices > 1)})"),
            validation_images, state=state)
        run.run()
        return run.finish()


def _check_settings(data_config, model, scale, mixed_precision):
    """Refuses what this trainer cannot run, in one line; returns FSDN's scale (None: ASDN)."""
    if keras.backend.backend() != "jax":
        raise TrainingError(f"asdn_tf.training.train_jax needs KERAS_BACKEND=jax, not "
                            f"{keras.backend.backend()}")
    check_arguments(model, scale, mixed_precision)
    fixed_scale = scale if model == "fsdn" else None
    if isinstance(fixed_scale, tuple):
        raise TrainingError("an FSDN with several scales trains under TensorFlow only; under "
                            "JAX, train one scale (--scale=S)")
    if fixed_scale and data_config.degradation != "bicubic":
        raise TrainingError(f"--model=fsdn with --degradation={data_config.degradation} trains "
                            "under TensorFlow only; under JAX, FSDN trains on bicubic pairs")
    if data_config.degrade_in_step:
        raise TrainingError("--degrade_in_step is the tf.data pipeline's: under JAX the folder "
                            "loader makes LR and x_up; drop it")
    folder_data.check_sources(data_config.sources)
    return fixed_scale


class _Steps:
    """The JAX step adapter `loop.Loop` drives (see there): one jitted update per level (and
    number of passes), on the update state that `sync` writes back into the Keras variables."""

    def __init__(self, network, optimizer, validation_images, fixed_scale, clip_norm):
        self.network, self.optimizer = network, optimizer
        self.images, self.fixed_scale, self.clip_norm = validation_images, fixed_scale, clip_norm
        self.updates, self.updates_made, self.batches = {}, 0, None
        self.state = initial_state(network, optimizer)

    def step(self):
        return self.updates_made

    def values(self):
        return self.state

    def restored(self, step, state):
        self.updates_made = step
        assign_state(self.network, self.optimizer, state)

    def warm_start(self, init_from, model_config, model):
        if init_from:
            warm_start(self.network, init_from, model_config, model)

    def update(self):
        batch = next(self.batches)
        level = None if self.fixed_scale is not None else int(batch["level"][0])
        passes = int(batch["passes"][0]) if "passes" in batch else 1
        if (level, passes) not in self.updates:
            self.updates[level, passes] = make_update(self.network, self.optimizer, level,
                                                      self.clip_norm, passes)
        inputs = batch["x_up"] if self.fixed_scale is None else batch["lr"]
        loss, self.state = self.updates[level, passes](
            self.state, *distribute_batch([inputs, batch["hr"]]))
        self.updates_made += 1
        return float(loss)

    def sync(self):
        assign_state(self.network, self.optimizer, self.state)

    def validate(self, scales):
        return validate(self.network, self.images, scales)

    def summarize(self, step, values, samples=False):
        """No TensorBoard log under JAX."""
