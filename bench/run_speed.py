"""bench/run.py's sections that time the network, training and resizing: matmul, inference,
profile, saved_model, training, imresize, tiled and jit."""

import math
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from asdn_tf.data import pipeline as data_lib
from asdn_tf.data.config import DataConfig
from asdn_tf.data.imresize import imresize
from asdn_tf.evaluation import benchmark
from asdn_tf.inference.engine import upscale_tensor
from asdn_tf.inference.precision import dtype_policy
from asdn_tf.io import errors
from asdn_tf.nn.model import build_model, flops_per_pixel
from asdn_tf.training.config import TrainConfig
from asdn_tf.training.train_step import compile_trainer, per_level_steps, pop_update
from bench import export_latency, imresize_speed, op_profile, upscale_tiled
from bench.run_setup import POLICIES, SCALES, TRAINING_SOURCES, build, network_pixels, timed

def measure_matmul(settings):
    """GFLOP/s of square matrix products; "gflops" holds the best side's rate per dtype.

    The best of several sides is the reference, so utilisation is not flattered by a size
    oneDNN handles badly (bfloat16 at 4096² runs at half its 3072² rate here).
    """
    product = tf.function(tf.matmul)
    by_side = {}
    for side in settings.matmul_sides:
        for dtype in (tf.float32, tf.bfloat16):
            a = tf.cast(tf.random.stateless_normal([side, side], [0, 1]), dtype)
            b = tf.cast(tf.random.stateless_normal([side, side], [0, 2]), dtype)
            seconds, _ = timed(lambda: product(a, b).numpy(), 5, warmups=2)
            by_side.setdefault(dtype.name, {})[side] = round(2 * side**3 / seconds / 1e9, 1)
    return {"by_side": by_side, "gflops": {name: max(rates.values())
                                           for name, rates in by_side.items()}}


def measure_inference(settings, matmul):
    """A row per preset, policy, output size and scale."""
    rows = []
    for preset in ("tiny", "default", "paper"):
        for policy in POLICIES:
            model, _ = build(preset, policy)
            fpp = flops_per_pixel(model.model_config)
            paper = preset == "paper"
            warm_up, _ = op_profile.upscale_call(model, 16, 2.0)
            warm_up()  # one trace serves every size and scale
            for size in settings.paper_sizes[policy] if paper else settings.sizes:
                for scale in SCALES:
                    call, side = op_profile.upscale_call(model, size, scale)
                    # A paper call is seconds long: the trace is warm, its first call is timed.
                    seconds, _ = timed(call, settings.paper_runs if paper else settings.runs,
                                       warmups=0 if paper else 1)
                    pixels = network_pixels(side, scale, size)
                    gflops = fpp * pixels / seconds / 1e9
                    rows.append({
                        "preset": preset, "policy": policy, "scale": scale,
                        "input": side, "output": size,
                        "runs": settings.paper_runs if paper else settings.runs,
                        "median_ms": round(seconds * 1e3, 1),
                        "output_megapixels_per_s": round(size * size / seconds / 1e6, 3),
                        "network_gflop": round(fpp * pixels / 1e9, 2),
                        "gflops": round(gflops, 1),
                        "utilisation": round(gflops / matmul["float32"], 3),
                        "utilisation_of_bf16_matmul": round(gflops / matmul["bfloat16"], 3)})
            del model
    return rows


def where_time_goes(settings, weights):
    """For the default preset at profile_size² ×2: parts timed apart and ops by kind."""
    size = settings.profile_size
    result = {"size": size, "scale": 2.0, "policies": {}}
    for policy in POLICIES:
        model, _ = build("default", policy, weights)
        full, side = op_profile.upscale_call(model, size, 2.0)
        images = tf.constant(np.random.default_rng(0).random((1, side, side, 3), np.float32))
        x_up = imresize(images, scale=2.0, size=(size, size))
        scale = tf.constant(2.0)
        network = tf.function(lambda x: model(x, scale=scale))
        trunk = tf.function(model.trunk)
        pre_upsample = tf.function(lambda x: imresize(x, scale=2.0, size=(size, size)))
        parts = {"full upscale": full,
                 "network (x_up given)": lambda: network(x_up).numpy(),
                 "trunk alone": lambda: trunk(x_up).numpy(),
                 "pre-upsampling alone": lambda: pre_upsample(images).numpy()}
        times = {name: round(timed(call, settings.runs)[0] * 1e3, 1)
                 for name, call in parts.items()}
        result["policies"][policy] = {
            "ms": times, "ops": [{"category": name, "ms": ms, "share": share}
                                 for name, ms, share in op_profile.op_breakdown(full)]}
    result["bf16_accuracy"] = bf16_accuracy(weights)
    return result


def bf16_accuracy(weights, scales=SCALES):
    """Set5 PSNR of the default model in float32 and in mixed_bfloat16 (same weights)."""
    images = benchmark.load_set(export_latency.DATASETS / "Set5")
    model32, description = build("default", "float32", weights)
    model16, _ = build("default", "mixed_bfloat16")
    model16.set_weights(model32.get_weights())
    rows = []
    for scale in scales:
        scores = {"float32": [], "mixed_bfloat16": []}
        difference = 0
        for _, hr in images:
            outputs = {}
            for policy, model in (("float32", model32), ("mixed_bfloat16", model16)):
                psnr, _, outputs[policy] = benchmark.measure(hr, scale, "asdn", model)
                scores[policy].append(psnr)
            difference = max(difference, int(np.abs(outputs["float32"].astype(int)
                                                    - outputs["mixed_bfloat16"]).max()))
        psnr32, psnr16 = (float(np.mean(values)) for values in scores.values())
        rows.append({"scale": scale, "psnr_float32": round(psnr32, 3),
                     "psnr_bfloat16": round(psnr16, 3), "delta_db": round(psnr16 - psnr32, 3),
                     "max_grey_level_difference": difference})
    return {"model": description, "set": "Set5", "rows": rows}


def measure_saved_model(settings, weights):
    model, description = build("default", "float32", weights)
    rows = export_latency.measure_saved_model(model, settings.saved_model_input,
                                              settings.saved_model_runs)
    return {"model": description, "input": settings.saved_model_input, "rows": rows}


def _trainer(preset, policy, patch_size, jit=False):
    """(network, step function per level) set up as `asdn_tf.training.train_tf.train` does."""
    with dtype_policy(policy):
        keras.utils.set_random_seed(0)
        network = build_model(preset)
        trainer = compile_trainer(network, TrainConfig(), patch_size)
    return network, per_level_steps(trainer, jit_compile=jit)


def _train_steps(step_function, batches):
    """Runs one update per batch as `train`'s loop does: level from the batch, loss to host."""
    for batch in batches:
        batch = dict(batch)
        loss = float(step_function(*pop_update(batch))(batch))
        if not math.isfinite(loss):
            raise RuntimeError(f"training loss became {loss}")


def measure_training(settings):
    """Steps/s on in-memory batches and through the pipeline, for each preset and policy.

    The in-memory batches are the pipeline's own (same levels, same shapes): a fresh iterator
    of the same dataset yields the same level sequence, so both loops do the same work and
    differ only in where the batches come from. The first `skip` batches of every iterator are
    not timed (the shuffle buffer fills then), and every level in the sequence is traced first.
    """
    skip = 2
    rows = []
    for preset, steps in settings.train_steps.items():
        batch_size = settings.train_batch[preset]
        dataset = data_lib.training_dataset(DataConfig(
            sources=TRAINING_SOURCES, patch_size=settings.patch_size, batch_size=batch_size))
        held = list(dataset.take(skip + steps))[skip:]
        levels = [int(batch["level"][0]) for batch in held]
        for policy in settings.train_policies[preset]:
            _, step_function = _trainer(preset, policy, settings.patch_size)
            warmed = set()
            for batch, level in zip(held, levels):  # traces (and runs) each level once
                if level not in warmed:
                    _train_steps(step_function, [batch])
                    warmed.add(level)

            def from_memory():
                _train_steps(step_function, held)

            def from_pipeline():
                iterator = iter(dataset)
                for _ in range(skip):
                    next(iterator)
                start = time.perf_counter()
                _train_steps(step_function, (next(iterator) for _ in range(steps)))
                return time.perf_counter() - start

            memory, pipeline = [], []
            for _ in range(settings.train_rounds):
                memory.append(timed(from_memory, 1, warmups=0)[0])
                pipeline.append(from_pipeline())
            memory_s, pipeline_s = statistics.median(memory), statistics.median(pipeline)
            sides = [data_lib.hr_patch_size(settings.patch_size, level) for level in levels]
            rows.append({
                "preset": preset, "policy": policy, "batch": batch_size,
                "steps": steps, "rounds": settings.train_rounds, "levels": levels,
                "mean_x_up_side": round(float(np.mean(sides)), 1),
                "memory_steps_per_s": round(steps / memory_s, 3),
                "pipeline_steps_per_s": round(steps / pipeline_s, 3),
                "input_overhead_percent": round((pipeline_s / memory_s - 1) * 100, 1)})
    return rows


def measure_imresize(settings):
    height, width = settings.imresize_shape
    return imresize_speed.measure(height, width, settings.imresize_runs)


def measure_tiled(cases):
    return [upscale_tiled.run_case_in_child(case) for case in cases]


def measure_jit(settings):
    """Median ms with jit_compile off and on: the network pass, and a training step."""
    rows = []
    size = settings.jit_size
    x_up = tf.constant(np.random.default_rng(0).random((1, size, size, 3), np.float32))
    scale = tf.constant(2.0)
    for policy in POLICIES:
        model, _ = build("default", policy)
        for jit in (False, True):
            network = tf.function(lambda x: model(x, scale=scale), jit_compile=jit)
            seconds, _ = timed(lambda: network(x_up).numpy(), settings.runs, warmups=2)
            rows.append({"what": f"network pass ×2, {size}² (default)", "policy": policy,
                         "jit_compile": jit, "median_ms": round(seconds * 1e3, 1)})
    level, batch_size = 5, settings.train_batch["default"]
    side = data_lib.hr_patch_size(settings.patch_size, level)
    hr = tf.constant(np.random.default_rng(0).integers(0, 256, (batch_size, side, side, 3),
                                                       np.uint8))
    x_up, target, _ = data_lib.training_pair(hr, level, settings.patch_size)
    batch = {"x_up": x_up, "hr": target, "level": tf.fill([batch_size], level)}
    for policy in POLICIES:
        for jit in (False, True):
            _, step_function = _trainer("default", policy, settings.patch_size, jit=jit)
            seconds, _ = timed(lambda: _train_steps(step_function, [batch]), settings.jit_steps,
                               warmups=2)
            rows.append({"what": f"training step, batch {batch_size}, level {level} "
                                 "(default)", "policy": policy, "jit_compile": jit,
                         "median_ms": round(seconds * 1e3, 1)})
    model, _ = build("default", "float32")
    try:
        tf.function(lambda x: upscale_tensor(model, x, 2.0, size=(size, size)),
                    jit_compile=True, autograph=False)(x_up[:, ::2, ::2])
        full_upscale = "compiles"
    except tf.errors.InvalidArgumentError as error:
        full_upscale = f"does not compile: {errors.first_line(error)}"
    return {"rows": rows, "upscale_tensor_under_jit": full_upscale}
