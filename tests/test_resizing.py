"""resizing: the keras.ops MATLAB bicubic, checked against the MATLAB test vectors under the
TensorFlow backend (this process) and the JAX backend (a child process)."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from keras import ops

from asdn_tf.data import resizing

from conftest import IMRESIZE_CASES as CASES

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def vectors(testvectors_dir):
    return dict(np.load(testvectors_dir / "imresize_matlab_bicubic.npz"))


@pytest.mark.parametrize("key,source,scale", CASES)
def test_matches_matlab(vectors, key, source, scale):
    out = ops.convert_to_numpy(resizing.imresize(vectors[source], scale=scale))
    assert out.shape == vectors[key].shape
    assert np.abs(out - vectors[key]).max() <= 1e-5


@pytest.mark.slow
def test_matches_matlab_under_jax(testvectors_dir):
    script = f"""
import json, sys
import numpy as np
import jax, keras
from asdn_tf.data import resizing
vectors = dict(np.load({str(testvectors_dir / "imresize_matlab_bicubic.npz")!r}))
errors = {{}}
for key, source, scale in {CASES!r}:
    resize = jax.jit(lambda image: resizing.imresize(image, scale=scale))
    out = np.asarray(resize(vectors[source]))
    same_shape = out.shape == vectors[key].shape
    errors[key] = float(np.abs(out - vectors[key]).max()) if same_shape else 1.0
print(keras.backend.backend(), json.dumps(errors))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=ROOT, env={**os.environ, "KERAS_BACKEND": "jax",
                                           "PYTHONPATH": str(ROOT)}, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    backend, errors = result.stdout.strip().splitlines()[-1].split(" ", 1)
    assert backend == "jax"
    errors = json.loads(errors)
    assert set(errors) == {key for key, _, _ in CASES}
    assert max(errors.values()) <= 1e-5, errors


def test_batched_explicit_size_and_identity(vectors):
    image = vectors["input_crop64"]
    out = ops.convert_to_numpy(resizing.imresize(np.stack([image] * 2), scale=2))
    assert out.shape == (2, 128, 128, 3)
    assert np.abs(out[1] - vectors["up_2"]).max() <= 1e-5
    assert tuple(resizing.imresize(image, size=(70, 90)).shape) == (70, 90, 3)
    np.testing.assert_allclose(ops.convert_to_numpy(resizing.imresize(image, scale=1)), image,
                               atol=1e-6)


def test_refuses_what_imresize_refuses():
    with pytest.raises(ValueError, match="scale or a size"):
        resizing.imresize(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="float"):
        resizing.imresize(np.zeros((4, 4, 3), np.uint8), scale=2)
