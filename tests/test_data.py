import logging
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from asdn_tf.data import pipeline as data
from asdn_tf.nn import lfr
from asdn_tf.data.config import DataConfig
from asdn_tf.data.imresize import imresize


def _batches(config, count=4, **kwargs):
    iterator = iter(data.training_dataset(config, **kwargs))
    return [next(iterator) for _ in range(count)]


@pytest.mark.slow
def test_t91_batches_match_their_level(datasets_dir):
    config = DataConfig(sources=(str(datasets_dir / "T91"),), patch_size=12, batch_size=3)
    for batch in _batches(config, 8):
        level = int(batch["level"][0])
        assert np.all(batch["level"].numpy() == level)
        side = data.hr_patch_size(12, level)
        assert batch["x_up"].shape == (3, side, side, 3) == batch["hr"].shape
        assert batch["hr"].dtype == tf.float32
        assert 0.0 <= float(tf.reduce_min(batch["hr"])) and float(tf.reduce_max(batch["hr"])) <= 1


def test_input_is_the_degraded_target(t91_subset):
    config = DataConfig(sources=(str(t91_subset),), patch_size=10, batch_size=2)
    for batch in _batches(config, 4):
        level = int(batch["level"][0])
        scale = lfr.level_scales()[level]
        side = data.hr_patch_size(10, level)
        lr = imresize(batch["hr"], scale=1 / scale, size=(10, 10))
        expected = imresize(lr, scale=scale, size=(side, side))
        np.testing.assert_allclose(batch["x_up"], expected, atol=1e-5)


def test_every_level_is_drawn(t91_subset):
    config = DataConfig(sources=(str(t91_subset),), patch_size=8, batch_size=1)
    levels = {int(b["level"][0]) for b in _batches(config, 120)}
    assert levels == set(range(11))


def test_level_weights_set_how_often_each_level_is_drawn(t91_subset):
    def shares(weights, count=4000):
        # The draws in one batch: the same values as iterating them one at a time, at once.
        levels = next(iter(data.level_sampler(11, weights, seed=1).batch(count))).numpy()
        return np.bincount(levels, minlength=11) / count

    uniform = shares(())
    assert np.all(np.abs(uniform - 1 / 11) < 0.02)
    favoured = shares((1,) * 10 + (10,))
    assert abs(favoured[10] - 0.5) < 0.03 and np.all(np.abs(favoured[:10] - 0.05) < 0.015)
    assert np.flatnonzero(shares((0, 1) + (0,) * 8 + (3,), 2000)).tolist() == [1, 10]
    config = DataConfig(sources=(str(t91_subset),), patch_size=8, batch_size=1,
                        level_weights=(0,) * 10 + (1,))
    assert {int(b["level"][0]) for b in _batches(config, 20)} == {10}
    with pytest.raises(ValueError, match="level_weights has 3 values; the model has 11 levels"):
        data.training_dataset(DataConfig(sources=(str(t91_subset),), level_weights=(1, 1, 1)))


def test_degradation_in_the_step_matches_the_pipeline(t91_subset):
    config = DataConfig(sources=(str(t91_subset),), patch_size=8, batch_size=2,
                        degrade_in_step=True)
    batch = _batches(config, 1)[0]
    assert set(batch) == {"hr", "level"} and batch["hr"].dtype == tf.uint8
    level = int(batch["level"][0])
    step = tf.function(lambda hr: data.training_pair(hr, level, 8), jit_compile=True)
    x_up, hr, _ = step(batch["hr"])
    eager_x_up, eager_hr, _ = data.training_pair(batch["hr"], tf.constant(level), 8)
    np.testing.assert_allclose(x_up, eager_x_up, atol=1e-5)
    np.testing.assert_allclose(hr, eager_hr)


def test_fixed_scale_batches_for_fsdn(t91_subset):
    config = DataConfig(sources=(str(t91_subset),), patch_size=8, batch_size=2)
    batch = _batches(config, 1, fixed_scale=3)[0]
    assert batch["lr"].shape == (2, 8, 8, 3) and batch["hr"].shape == (2, 24, 24, 3)
    np.testing.assert_allclose(batch["lr"], imresize(batch["hr"], scale=1 / 3), atol=1e-5)


def test_random_patch_flips_and_turns_by_its_seed_alone():
    image = tf.reshape(tf.range(3 * 3 * 3, dtype=tf.float32), (3, 3, 3))
    seen = {tuple(data.random_patch(image, 3, [seed, 7]).numpy().ravel()) for seed in range(80)}
    assert len(seen) == 8  # 4 rotations × 2 flips
    again = data.random_patch(image, 3, [5, 7]).numpy()
    np.testing.assert_array_equal(again, data.random_patch(image, 3, [5, 7]).numpy())


@pytest.mark.slow
def test_a_seed_gives_the_same_batches_in_another_process(t91_subset):
    code = ("import sys, numpy as np; from asdn_tf.data.config import DataConfig; "
            "from asdn_tf.data import pipeline as data; "
            f"c = DataConfig(sources=({str(t91_subset)!r},), patch_size=8, batch_size=2, "
            "degradation='photo'); it = iter(data.training_dataset(c, seed=3)); "
            "b = [next(it) for _ in range(3)]; "
            "print(float(sum(np.abs(x['x_up'].numpy()).sum() for x in b)))")
    # The two processes run at once: each waits on its own TensorFlow start-up.
    processes = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
    runs = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-3000:]
        runs.append(out.split()[-1])
    assert runs[0] == runs[1]


def test_small_images_are_counted_in_one_warning(tmp_path, caplog):
    for index, size in enumerate([(40, 40), (10, 12), (8, 50)]):
        Image.new("RGB", size, (index * 40, 90, 10)).save(tmp_path / f"{index}.png")
    with caplog.at_level(logging.WARNING):
        images = data.load_folder_images([tmp_path], min_size=20)
    assert len(images) == 1
    assert [r.getMessage() for r in caplog.records if "smaller" in r.getMessage()] == [
        "skipped 2 of 3 images smaller than the 20-pixel HR patch"]


def test_grayscale_and_rgba_become_rgb(tmp_path):
    Image.new("L", (30, 30), 77).save(tmp_path / "gray.png")
    Image.new("RGBA", (30, 30), (1, 2, 3, 4)).save(tmp_path / "rgba.png")
    images = data.load_folder_images([tmp_path], min_size=20)
    assert all(image.shape == (30, 30, 3) and image.dtype == np.uint8 for image in images)


def test_corrupt_files_are_named_or_fatal_when_strict(tmp_path, caplog):
    Image.new("RGB", (30, 30)).save(tmp_path / "good.png")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    with caplog.at_level(logging.WARNING):
        assert len(data.load_folder_images([tmp_path], min_size=20)) == 1
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "empty.png" in messages and "text.png" in messages
    with pytest.raises(ValueError, match="empty.png"):
        data.load_folder_images([tmp_path], min_size=20, strict=True)


def test_empty_and_missing_sources_name_the_path(tmp_path):
    with pytest.raises(ValueError, match=f"no images found in {tmp_path}"):
        data.load_folder_images([tmp_path], min_size=8)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        data.load_folder_images([tmp_path / "nowhere"], min_size=8)
    with pytest.raises(ValueError, match="no training data"):
        data.image_dataset(DataConfig(sources=()), 8)


def test_several_folders_are_mixed(tmp_path, t91_subset):
    Image.new("RGB", (40, 40), (255, 0, 0)).save(tmp_path / "red.png")
    images = data.load_folder_images([t91_subset, tmp_path], min_size=16)
    assert len(images) == 7


def test_div2k_through_tfds_mock_data():
    import tensorflow_datasets as tfds
    config = DataConfig(sources=("tfds:div2k",), patch_size=8, batch_size=2)
    with tfds.testing.mock_data(num_examples=3):
        batch = _batches(config, 1)[0]
    level = int(batch["level"][0])
    assert batch["hr"].shape == (2, data.hr_patch_size(8, level), data.hr_patch_size(8, level), 3)


@pytest.mark.parametrize("kwargs,words", [({"patch_size": 0}, "patch_size"),
                                          ({"batch_size": 0}, "batch_size"),
                                          ({"level_weights": (1, -1)}, "level_weights"),
                                          ({"level_weights": (0, 0)}, "not all 0"),
                                          ({"level_weights": (1, float("nan"))}, "finite")])
def test_data_config_validation(kwargs, words):
    with pytest.raises(ValueError, match=words):
        DataConfig(**kwargs)
