"""precision="auto", the default of every loader: bfloat16 where the hardware computes it, float32
elsewhere; one function decides, and the reports say what it chose."""

import numpy as np
import pytest

import asdn_tf
from asdn_tf.cli import evaluate
from asdn_tf.evaluation import benchmark
from asdn_tf.evaluation import notebook
from asdn_tf.inference import precision as precision_lib


@pytest.fixture
def hardware(monkeypatch):
    """Sets what the machine reports: hardware(cpu_flags, gpu=None or (name, capability))."""
    monkeypatch.delenv(precision_lib.AUTO_PRECISION_ENV, raising=False)

    def pretend(flags, gpu=None):
        monkeypatch.setattr(precision_lib, "hardware_precision",
                            lambda: precision_lib.precision_for(lambda: set(flags), gpu))

    return pretend


@pytest.mark.parametrize("flags,gpu,expected", [
    ({"avx2", "amx_bf16", "avx512_bf16"}, None, ("bfloat16", "AMX")),
    ({"avx2", "avx512f", "avx512_bf16"}, None, ("bfloat16", "AVX512_BF16")),
    ({"avx2", "avx512f"}, None, ("float32", "no bfloat16 instructions on this CPU")),
    (set(), None, ("float32", "no bfloat16 instructions on this CPU")),
    # The network runs on the GPU: its capability decides, whatever the CPU has.
    (set(), ("NVIDIA A100", (8, 0)), ("bfloat16", "GPU NVIDIA A100, compute capability 8.0")),
    ({"amx_bf16"}, ("Tesla T4", (7, 5)), ("float32", "GPU Tesla T4, compute capability 7.5")),
    ({"amx_bf16"}, ("GPU:0", None), ("float32", "GPU GPU:0, compute capability unknown")),
])
def test_auto_follows_the_hardware(hardware, flags, gpu, expected):
    hardware(flags, gpu)
    assert precision_lib.auto_precision() == expected
    assert precision_lib.resolve_precision("auto") == expected[0]
    assert precision_lib.resolve_precision() == expected[0]


def test_named_precisions_are_kept_and_others_refused(hardware):
    hardware({"amx_bf16"})
    assert precision_lib.resolve_precision("float32") == "float32"
    assert precision_lib.resolve_precision("bfloat16") == "bfloat16"
    with pytest.raises(ValueError, match="^precision must be one of auto, float32, bfloat16, "
                                         "got 'fp16'$"):
        precision_lib.resolve_precision("fp16")


def test_the_environment_overrides_the_hardware(hardware, monkeypatch):
    hardware({"amx_bf16"})
    monkeypatch.setenv(precision_lib.AUTO_PRECISION_ENV, "float32")
    assert precision_lib.auto_precision() == ("float32", "ASDN_AUTO_PRECISION")
    monkeypatch.setenv(precision_lib.AUTO_PRECISION_ENV, "bf16")
    with pytest.raises(ValueError, match="^ASDN_AUTO_PRECISION must be one of float32, "
                                         "bfloat16, got 'bf16'$"):
        precision_lib.resolve_precision("auto")


@pytest.mark.slow
def test_loaders_default_to_auto(hardware, tmp_path, tiny_model):
    weights = tmp_path / "tiny.weights.h5"
    tiny_model.save_weights(weights)
    for flags, precision in (({"amx_bf16"}, "bfloat16"), (set(), "float32")):
        hardware(flags)
        for model in (asdn_tf.load_model(weights, "tiny"), asdn_tf.load_pretrained(),
                      notebook.demo_model(weights, "tiny")[0]):
            assert precision_lib.precision_of(model) == precision
            assert model.dtype_policy.name == precision_lib.PRECISIONS[precision]
    x = np.random.default_rng(0).random((1, 9, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(asdn_tf.load_model(weights, "tiny", precision="float32")(
        x, scale=1.5), tiny_model(x, scale=1.5))


def test_a_model_built_in_bfloat16_has_the_float32_weights(tmp_path, tiny_model):
    weights = tmp_path / "tiny.weights.h5"
    tiny_model.save_weights(weights)
    model = asdn_tf.load_model(weights, "tiny", precision="bfloat16")
    assert model.dtype_policy.name == "mixed_bfloat16"
    for ours, theirs in zip(model.get_weights(), tiny_model.get_weights(), strict=True):
        assert ours.dtype == np.float32
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.slow
def test_evaluate_states_the_precision(hardware, datasets_dir, tmp_path, tiny_model):
    weights = tmp_path / "tiny.weights.h5"
    tiny_model.save_weights(weights)
    hardware({"avx512_bf16"})
    said = []
    report = evaluate.run(datasets_dir, ["Set5"], ["2"], "asdn", weights=weights, preset="tiny",
                          announce=said.append)
    assert report.splitlines()[-2] == "precision: bfloat16 (auto: AVX512_BF16)"
    assert said[0] == "precision auto -> bfloat16 (AVX512_BF16)"
    report = evaluate.run(datasets_dir, ["Set5"], ["2"], ["bicubic", "asdn"],
                          weights=weights, preset="tiny", precision="float32")
    assert report.splitlines()[-2] == "precision: float32"
    assert "precision" not in evaluate.run(datasets_dir, ["Set5"], ["2"], "bicubic")
    rows = benchmark.evaluate({"Set5": benchmark.load_set(datasets_dir / "Set5")[:1]}, [2], "asdn",
                             precision_lib.with_precision(tiny_model, "bfloat16"))
    assert rows[0]["precision"] == "bfloat16"


def test_bfloat16_adds_the_skip_and_blends_in_float32(tiny_model):
    # With every branch's residual zeroed the output is x_up itself: bit for bit only if the
    # skip and the blend stay float32 (bfloat16 would round x_up to 8 bits).
    model = precision_lib.with_precision(tiny_model, "bfloat16")
    for branch in model.branches:
        branch.to_rgb.set_weights([np.zeros_like(value) for value in branch.to_rgb.get_weights()])
    x = np.random.default_rng(0).random((1, 9, 8, 3)).astype(np.float32)
    for call in ({"scale": 1.5}, {"scale": 2.0}, {"level": 3}):
        output = model(x, **call)
        assert output.dtype == "float32"
        np.testing.assert_array_equal(output, x)
