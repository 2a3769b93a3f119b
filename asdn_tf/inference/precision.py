"""The precision a network computes in: float32, or bfloat16 where the hardware runs it fast.

Every loader takes `precision`: "float32", "bfloat16", or "auto" (the default), which
`auto_precision` resolves for this machine. Keras is imported when a network is built, not with
this module: the upscale command reads PRECISION_CHOICES before it needs TensorFlow.

Example:
    >>> resolve_precision("auto")   # "bfloat16" on a CPU with AMX or AVX512_BF16, else "float32"
    >>> model = with_precision(model, "float32")   # the benchmark tables' precision
"""

import contextlib
import functools
import os

# Inference precisions: the Keras dtype policy each builds the network under. bfloat16 keeps
# the weights in float32 and computes in bfloat16 (the global skip and blend in float32), for
# under 0.01 dB on Set5 at x1.1 and x2:
# on CPUs with AMX (Intel Sapphire Rapids and later) it runs ~2.4x faster than float32, with
# AVX512_BF16 alone (AMD Zen 4 and later, Intel Cooper Lake) ~1.5x in CPU time (measured on an
# AMD EPYC); on CPUs with neither it is slower.
PRECISIONS = {"float32": "float32", "bfloat16": "mixed_bfloat16"}
# What a loader accepts: "auto" is one of PRECISIONS, chosen for this machine.
PRECISION_CHOICES = ("auto", *PRECISIONS)
# Sets what "auto" resolves to (float32 or bfloat16), over the hardware's answer.
AUTO_PRECISION_ENV = "ASDN_AUTO_PRECISION"
# bfloat16 units on NVIDIA GPUs: Ampere (compute capability 8.0) and later.
GPU_BFLOAT16_CAPABILITY = (8, 0)
# /proc/cpuinfo flags of CPU instructions that compute bfloat16 products, and how to say them.
CPU_BFLOAT16_FLAGS = {"amx_bf16": "AMX", "avx512_bf16": "AVX512_BF16"}


@contextlib.contextmanager
def dtype_policy(name):
    """Models built inside use the Keras dtype policy `name` (e.g. "mixed_bfloat16")."""
    import keras
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def check_precision(precision):
    """Returns `precision` if it is one of PRECISION_CHOICES; raises ValueError otherwise."""
    if precision not in PRECISION_CHOICES:
        raise ValueError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, "
                         f"got {precision!r}")
    return precision


def resolve_precision(precision="auto"):
    """The precision a model is built in: `precision` itself, or for "auto" the one
    `auto_precision` picks for this machine. Raises ValueError for an unknown name."""
    if check_precision(precision) == "auto":
        return auto_precision()[0]
    return precision


def auto_precision():
    """(precision, reason): "bfloat16" where the hardware runs it fast, else "float32".

    The network runs on the first GPU when TensorFlow sees one: bfloat16 if its compute
    capability is at least 8.0. Without a GPU, bfloat16 on CPUs with bfloat16 instructions
    (/proc/cpuinfo flags amx_bf16 or avx512_bf16); elsewhere (older x86, ARM, macOS) bfloat16 is
    emulated and slower than float32. The environment variable ASDN_AUTO_PRECISION (float32 or
    bfloat16) overrides both.

    Raises:
        ValueError: ASDN_AUTO_PRECISION holds another value.
    """
    override = os.environ.get(AUTO_PRECISION_ENV)
    if override:
        if override not in PRECISIONS:
            raise ValueError(f"{AUTO_PRECISION_ENV} must be one of {', '.join(PRECISIONS)}, "
                             f"got {override!r}")
        return override, AUTO_PRECISION_ENV
    return hardware_precision()


@functools.cache
def hardware_precision():
    """`auto_precision` from this machine's hardware alone (it does not change while the process
    runs)."""
    return precision_for(_cpu_flags, _gpu_capability())


def precision_for(cpu_flags, gpu):
    """(precision, reason) for a machine whose network runs on `gpu`: None, or (name, compute
    capability or None); without one, on a CPU whose feature flags `cpu_flags()` returns (a
    set, read only when there is no GPU)."""
    if gpu is not None:
        name, capability = gpu
        fast = capability is not None and capability >= GPU_BFLOAT16_CAPABILITY
        described = "unknown" if capability is None else ".".join(map(str, capability))
        return ("bfloat16" if fast else "float32"), f"GPU {name}, compute capability {described}"
    flags = cpu_flags()
    for flag, name in CPU_BFLOAT16_FLAGS.items():
        if flag in flags:
            return "bfloat16", name
    return "float32", "no bfloat16 instructions on this CPU"


def describe_precision(model, requested="auto"):
    """How `model` computes, for a report: "float32", or "bfloat16 (auto: AMX)" when the
    precision was `requested` as "auto"."""
    used = precision_of(model)
    return f"{used} (auto: {auto_precision()[1]})" if requested == "auto" else used


def precision_of(model):
    """The name in PRECISIONS of the policy `model` computes under ("float32", "bfloat16")."""
    policy = model.dtype_policy.name
    return next((name for name, value in PRECISIONS.items() if value == policy), policy)


def with_precision(model, precision):
    """`model` itself if it computes in `precision` already; else the same network and weights
    computing in `precision` ("auto" as `resolve_precision`)."""
    from asdn_tf.nn.model import FSDN, build_fsdn, build_model
    policy = PRECISIONS[resolve_precision(precision)]
    if model.dtype_policy.name == policy:
        return model
    with dtype_policy(policy):
        copy = (build_fsdn(model.model_config, model.scale) if isinstance(model, FSDN)
                else build_model(model.model_config))
    copy.set_weights(model.get_weights())
    return copy


def _gpu_capability():
    """(name, compute capability or None) of the first GPU TensorFlow sees, or None."""
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    details = tf.config.experimental.get_device_details(gpus[0])
    capability = details.get("compute_capability")
    return details.get("device_name", gpus[0].name), (tuple(capability) if capability else None)


def _cpu_flags():
    """The CPU feature flags of /proc/cpuinfo (empty where there is none: macOS, Windows)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()
