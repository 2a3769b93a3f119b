import dataclasses
import glob
import json
import pathlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

import asdn_tf
from asdn_tf.cli import config_flags, train
from asdn_tf.training import common, train_tf
from asdn_tf.training import run_folder, train_step
from asdn_tf.data.config import DataConfig
from asdn_tf.nn.config import ModelConfig, preset
from asdn_tf.training.config import TrainConfig, learning_rate_schedule
from asdn_tf.inference.weights_io import PACKAGE_WEIGHTS
from conftest import leftovers, train_in_process

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(args, timeout=240):
    return subprocess.run([sys.executable, "-m", "asdn_tf.train", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def _tiny_flags(sources, output_dir, steps):
    return ["--preset=tiny", f"--sources={sources}", "--patch_size=8", "--batch_size=2",
            f"--steps={steps}", "--checkpoint_every=1", "--log_every=1", "--validate_every=0",
            f"--output_dir={output_dir}"]


def _run(sources, output_dir, steps, **train_kwargs):
    return train_tf.train(preset("tiny"), DataConfig(sources=(str(sources),), patch_size=8,
                                                  batch_size=2),
                       TrainConfig(steps=steps,
                                   checkpoint_every=train_kwargs.pop("checkpoint_every", 1),
                                   log_every=1,
                                   validate_every=train_kwargs.pop("validate_every", 0),
                                   validation_dir=train_kwargs.pop("validation_dir", "")),
                       output_dir, **train_kwargs)


def _checkpoint_steps(output_dir):
    state = tf.train.get_checkpoint_state(str(output_dir / "checkpoints"))
    return [int(path.rsplit("-", 1)[1]) for path in state.all_model_checkpoint_paths]


@pytest.mark.slow
def test_three_steps_then_the_same_command_resumes(tmp_path, t91_subset, capsys):
    out = tmp_path / "run"
    # The first run in this process (the command's flags and run_from_flags, as its main runs
    # them); the rerun is a process of its own, as a user's is.
    assert train_in_process(_tiny_flags(t91_subset, out, 3)) is None
    assert "3/3" in capsys.readouterr().err
    sidecar = json.loads((out / "final.json").read_text())
    assert sidecar["steps"] == 3 and sidecar["model_config"] == preset("tiny").to_dict()
    second = _cli(_tiny_flags(t91_subset, out, 5))
    assert second.returncode == 0, second.stderr[-2000:]
    assert "resumed from" in second.stderr and "at step 3" in second.stderr
    assert "4/5" in second.stderr and "1/5" not in second.stderr
    assert max(_checkpoint_steps(out)) == 5
    model = asdn_tf.load_model(out / "final.weights.h5")
    assert model.model_config == preset("tiny")


@pytest.mark.slow
def test_sigkill_during_training_resumes_cleanly(tmp_path, t91_subset, caplog):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "asdn_tf.train", *_tiny_flags(t91_subset, out, 100000)]
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    checkpoints = out / "checkpoints"
    deadline = time.time() + 180
    while time.time() < deadline and not (checkpoints.exists()
                                          and len(list(checkpoints.glob("*.index"))) >= 2):
        time.sleep(0.2)
    time.sleep(0.37)  # land somewhere inside a step or a save
    process.send_signal(signal.SIGKILL)
    process.wait()
    steps = _checkpoint_steps(out)
    assert steps
    # What kills inside writes leave, whether or not this kill landed in one; the resumed run
    # writes none of these files again, so only its sweep at the start can remove them.
    (out / ".tmp-0123abcd-validation.csv").touch()
    (out / ".tmp-4567cdef-best.weights.h5").write_bytes(b"\x89HDF")
    (out / "checkpoints" / f"checkpoint.tmp{'0' * 32}").write_text('model_checkpoint_path: "')
    (out / "checkpoints" / f"ckpt-{max(steps) + 50}_temp").mkdir()
    (out / "checkpoints" / f"ckpt-{max(steps) + 50}_temp" / "part-00000-of-00001.index").touch()
    assert len(leftovers(out)) >= 4
    # The killed process is the point; the rerun runs in this process (the command's code).
    caplog.set_level("INFO", logger="absl")
    assert train_in_process(_tiny_flags(t91_subset, out, max(steps) + 2)) is None
    assert f"at step {max(steps)}" in caplog.text
    assert not leftovers(out)


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, t91_subset, monkeypatch):
    real_step = train_step.Trainer.train_step

    def poisoned(self, batch, level=None, passes=1):
        loss = real_step(self, batch, level, passes)
        return tf.where(self.optimizer.iterations >= 3, tf.constant(np.nan), loss)

    monkeypatch.setattr(train_step.Trainer, "train_step", poisoned)
    with pytest.raises(train.TrainingError,
                       match="loss became nan at step 3; .*newest checkpoint.*ckpt-2, is intact"):
        _run(t91_subset, tmp_path, 10)
    assert _checkpoint_steps(tmp_path) == [1, 2]
    assert not (tmp_path / "final.weights.h5").exists()
    # Before any checkpoint: it says so, and the folders the run made go with it.
    with pytest.raises(train.TrainingError,
                       match="loss became nan at step 3; .*no checkpoint had been written yet"):
        _run(t91_subset, tmp_path / "new" / "run", 10, checkpoint_every=5)
    assert not (tmp_path / "new").exists()


@pytest.mark.slow
def test_checkpoint_write_failure_is_clear_and_keeps_previous(tmp_path, t91_subset, monkeypatch):
    real_save = tf.train.CheckpointManager.save

    def failing_save(self, checkpoint_number=None, **kwargs):
        if checkpoint_number >= 2:
            raise OSError(28, "No space left on device")
        return real_save(self, checkpoint_number=checkpoint_number, **kwargs)

    monkeypatch.setattr(tf.train.CheckpointManager, "save", failing_save)
    with pytest.raises(train.TrainingError,
                       match="cannot write a checkpoint.*No space.*ckpt-1, is intact"):
        _run(t91_subset, tmp_path, 5)
    assert _checkpoint_steps(tmp_path) == [1]
    model = asdn_tf.build_model("tiny")
    tf.train.Checkpoint(network=model).restore(
        str(tmp_path / "checkpoints" / "ckpt-1")).expect_partial()
    existing = tmp_path / "existing"
    existing.mkdir()
    with pytest.raises(train.TrainingError, match="no checkpoint had been written yet"):
        _run(t91_subset, existing, 5, checkpoint_every=2)
    assert existing.is_dir()  # it was there before the run: kept


def test_unwritable_output_dir(tmp_path, t91_subset):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(train.TrainingError, match="not writable"):
        _run(t91_subset, blocker / "run", 1)


@pytest.mark.slow
def test_validation_keeps_the_best_weights(tmp_path, t91_subset, datasets_dir):
    _run(t91_subset, tmp_path, 2, validate_every=1, validation_dir=str(datasets_dir / "Set5"))
    best = json.loads((tmp_path / "best.json").read_text())
    assert set(best["validation_psnr"]) == {"2", "3", "4", "1.5"}
    assert all(10 < value < 60 for value in best["validation_psnr"].values())
    assert (tmp_path / "logs").is_dir()
    curve = (tmp_path / "validation.csv").read_text().splitlines()
    assert curve[0] == "step,x2,x3,x4,x1.5" and [line.split(",")[0] for line in curve] == [
        "step", "1", "2"]
    x2_curve = [float(line.split(",")[1]) for line in curve[1:]]
    assert round(best["validation_psnr"]["2"], 4) in x2_curve


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_mixed_precision_trains_and_leaves_the_global_policy(tmp_path, t91_subset, precision):
    final = _run(t91_subset, tmp_path, 2, mixed_precision=precision)
    assert keras.mixed_precision.global_policy().name == "float32"
    model = asdn_tf.load_model(final)
    assert model.dtype_policy.name == "float32"
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert json.loads((tmp_path / "final.json").read_text())["steps"] == 2


def test_validation_curve_survives_resumes_and_new_scales(tmp_path):
    path = tmp_path / "validation.csv"
    run_folder.record_validation(path, 500, {2.0: 30.0, 3.0: 28.0})
    run_folder.record_validation(path, 1000, {2.0: 31.0, 3.0: 29.0})
    run_folder.record_validation(path, 1500, {2.0: 32.0, 3.0: 30.0})
    # Killed after step 1500's validation, resumed from the step-1000 checkpoint: 1500 is redone.
    run_folder.record_validation(path, 1500, {2.0: 32.5, 3.0: 30.5})
    run_folder.record_validation(path, 2000, {2.0: 33.0, 1.5: 36.0})
    assert path.read_text().splitlines() == [
        "step,x2,x3,x1.5", "500,30.0000,28.0000,", "1000,31.0000,29.0000,",
        "1500,32.5000,30.5000,", "2000,33.0000,,36.0000"]
    assert [p.name for p in tmp_path.iterdir()] == ["validation.csv"]


@pytest.mark.parametrize("text", ["garbage\n", "step,x2\n500,30.0,31.0\n", "step,x2\nfive,30\n",
                                  "x2,step\n30,500\n", "step,x2\n500,high\n", "\xff\xfe"])
def test_a_bad_validation_curve_is_set_aside_not_fatal(tmp_path, text, caplog):
    path = tmp_path / "validation.csv"
    path.write_bytes(text.encode("latin-1"))
    run_folder.record_validation(path, 1000, {2.0: 31.0})
    assert path.read_text().splitlines() == ["step,x2", "1000,31.0000"]
    [aside] = tmp_path.glob("validation.csv.bad-*")
    assert aside.read_bytes() == text.encode("latin-1")
    assert "not a validation curve" in caplog.text


def test_init_from_names_the_bundled_weights_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert common.resolve_init_from("default") == PACKAGE_WEIGHTS
    # The FSDN flagfiles' path, written from the repository root, works from elsewhere too.
    assert common.resolve_init_from("asdn_tf/weights/default.weights.h5") == PACKAGE_WEIGHTS
    (tmp_path / "mine.weights.h5").touch()
    assert common.resolve_init_from("mine.weights.h5") == pathlib.Path("mine.weights.h5")
    with pytest.raises(train.TrainingError, match="not found: asdn_tf/weights/nope.h5"):
        common.resolve_init_from("asdn_tf/weights/nope.h5")


@pytest.mark.slow
def test_fsdn_trains_from_asdn_weights(tmp_path, t91_subset, tiny_model, caplog):
    # ASDN weights as a run leaves them: final.weights.h5 and its sidecar, written by the
    # function the run's end calls (no run of its own: this test is about the FSDN run).
    asdn_weights = tmp_path / "asdn" / "final.weights.h5"
    asdn_weights.parent.mkdir()
    run_folder.save_weights(tiny_model, asdn_weights, run_folder.WeightsSidecar(
        model="asdn", scale=None, preset="tiny", model_config=preset("tiny"),
        data_config=DataConfig(sources=(str(t91_subset),), patch_size=8, batch_size=2),
        train_config=TrainConfig(steps=1), steps=1, training_seconds=0.0, validation_psnr={}))
    caplog.set_level("INFO", logger="absl")
    final = _run(t91_subset, tmp_path / "fsdn", 1, model="fsdn", scale=2,
                 init_from=str(asdn_weights))
    assert f"initialised from {asdn_weights}" in caplog.text
    sidecar = json.loads((tmp_path / "fsdn" / "final.json").read_text())
    assert sidecar["model"] == "fsdn" and sidecar["scale"] == 2 and final.exists()


def _parsed(args):
    values = flags.FlagValues()
    train.define_flags(values)
    values(["train", *args])
    return values


@pytest.mark.parametrize("args,words", [
    (["--learning_rate=0"], "learning_rate must be a finite number > 0"),
    (["--learning_rate=inf"], "learning_rate must be a finite number > 0"),
    (["--learning_rate=nan"], "learning_rate must be a finite number > 0"),
    (["--clip_norm=-1"], "clip_norm must be a finite number >= 0"),
    (["--clip_norm=inf"], "clip_norm must be a finite number >= 0"),
    (["--decay_factor=nan"], "decay_factor must be in"),
    (["--init_from=no/such.weights.h5"], "--init_from weights not found: no/such.weights.h5"),
    (["--validate_every=5", "--validation_dir=data/benchmark/Set5"],
     r"--validation_dir data/benchmark/Set5 is missing: put the Set5 images there \(data/README"),
    (["--patch_size=0"], "patch_size must be"),
    (["--batch_size=0"], "batch_size must be"),
    (["--num_levels=1"], "num_levels must be"),
    (["--validation_scales=2,x"], "--validation_scales takes numbers"),
    (["--lr_milestones=100,x"], "--lr_milestones takes integers, got 'x'"),
    (["--lr_milestones=200,100"], "lr_milestones must be increasing positive integers"),
    (["--lr_milestones=0"], "lr_milestones must be increasing positive integers"),
    (["--level_weights=1,x"], "--level_weights takes numbers, got 'x'"),
    (["--level_weights=1,1"], "level_weights has 2 values; the model has 11 levels"),
    (["--sources="], "--sources is empty"),
    (["--sources=/nonexistent/T91"], "/nonexistent/T91 is missing: put the T91 images there"),
    (["--model=fsdn"], "--model=fsdn needs --scale"),
])
def test_bad_values_are_refused_before_any_work(tmp_path, t91_subset, args, words):
    values = _parsed(_tiny_flags(t91_subset, tmp_path / "run", 1) + args)
    with pytest.raises((train.TrainingError, ValueError, FileNotFoundError), match=words):
        train.run_from_flags(values)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args,words", [
    (["--bogus=1"], "Unknown command line flag 'bogus'"),
    (["--learning_rate=inf"], "learning_rate must be a finite number > 0"),
])
def test_cli_errors_are_one_line(tmp_path, t91_subset, args, words):
    result = _cli(_tiny_flags(t91_subset, tmp_path / "run", 1) + args, timeout=120)
    assert result.returncode != 0
    assert words in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_folder_without_images_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images found in"):
        _run(tmp_path / "empty", tmp_path / "run", 1)


@pytest.mark.slow
def test_mirrored_strategy_matches_one_device(tmp_path):
    script = textwrap.dedent("""
        import numpy as np, tensorflow as tf, keras
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import asdn_tf
        from asdn_tf.training.train_step import Trainer
        rng = np.random.default_rng(0)
        batch = {"x_up": rng.random((4, 10, 10, 3), dtype=np.float32),
                 "hr": rng.random((4, 10, 10, 3), dtype=np.float32)}
        def one_update(strategy):
            with strategy.scope():
                keras.utils.set_random_seed(1)
                net = asdn_tf.build_model("tiny")
                trainer = Trainer(net)
                trainer.compile(optimizer=keras.optimizers.SGD(0.5))
                trainer.optimizer.build(net.trainable_variables)
            dataset = tf.data.Dataset.from_tensors(batch)
            dist = next(iter(strategy.experimental_distribute_dataset(dataset)))
            @tf.function
            def step(b):
                return strategy.reduce("MEAN", strategy.run(lambda x: trainer.train_step(x, 4), args=(b,)), axis=None)
            loss = step(dist)
            return float(loss), [v.numpy() for v in net.trainable_variables]
        single = one_update(tf.distribute.get_strategy())
        mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        assert mirrored.num_replicas_in_sync == 2
        double = one_update(mirrored)
        assert abs(single[0] - double[0]) < 1e-6, (single[0], double[0])
        diff = max(float(np.abs(a - b).max()) for a, b in zip(single[1], double[1]))
        assert diff < 1e-5, diff
        print("SAME", diff)
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                            text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "SAME" in result.stdout


def test_learning_rate_schedules():
    every = learning_rate_schedule(TrainConfig(learning_rate=4e-4, decay_every=100))
    assert [float(every(step)) for step in (0, 99, 100, 199, 200)] == pytest.approx(
        [4e-4, 4e-4, 2e-4, 2e-4, 1e-4])
    milestones = learning_rate_schedule(
        TrainConfig(learning_rate=4e-4, decay_every=100, lr_milestones=(10, 15), decay_factor=0.25))
    assert [float(milestones(step)) for step in (0, 9, 10, 14, 15, 1000)] == pytest.approx(
        [4e-4, 4e-4, 1e-4, 1e-4, 2.5e-5, 2.5e-5])


def test_flags_mirror_the_configs():
    values = _parsed(["--preset=tiny", "--num_blocks=3", "--steps=7",
                      "--validation_scales=2,1.5", "--sources=a,b", "--lr_milestones=5,9"])
    configs = train.configs_from_flags(values)
    model_config, data_config, train_config = configs.model, configs.data, configs.train
    assert model_config == ModelConfig(**{**preset("tiny").to_dict(), "num_blocks": 3})
    assert data_config.sources == ("a", "b") and train_config.steps == 7
    assert train_config.validation_scales == (2.0, 1.5)
    assert train_config.lr_milestones == (5, 9)


def test_flags_are_typed_by_the_annotations_and_helped_by_the_docstring_at_any_indent():
    @dataclasses.dataclass(frozen=True)
    class Example:
        """An example.

          Args:
            count: int, how many
                of them.
            ratios: tuple of float,
              the ratios.
            names: tuple of str, names.
            on: bool, whether.
          Not an argument: the section ended above.
        """

        count: int = 2
        ratios: tuple[float, ...] = (1.5,)
        names: tuple[str, ...] = ()
        on: bool = True

    values = flags.FlagValues()
    config_flags.define_config_flags(Example, values)
    assert values["count"].help == "int, how many of them."
    assert values["ratios"].help == "tuple of float, the ratios."
    assert values["on"].help == "bool, whether."
    values(["train", "--count=3", "--ratios=2,2.5", "--names=a,b", "--noon"])
    assert config_flags.config_from_flags(Example, values) == Example(3, (2.0, 2.5), ("a", "b"), False)
    values.unparse_flags()
    values(["train", "--names=c"])  # with a base, only the flags given replace its fields
    assert config_flags.config_from_flags(Example, values, base=Example(count=7, ratios=(4.0,))) \
        == Example(7, (4.0,), ("c",), True)
    values.unparse_flags()
    values(["train", "--ratios=2,x"])
    with pytest.raises(ValueError, match="--ratios takes numbers, got 'x'"):
        config_flags.config_from_flags(Example, values)


def test_a_field_without_help_is_refused():
    @dataclasses.dataclass(frozen=True)
    class Undocumented:
        """A forgotten field.

        Args:
            documented: int, here.
        """

        documented: int = 1
        forgotten: int = 2

    with pytest.raises(TypeError, match="Undocumented.forgotten has no entry"):
        config_flags.define_config_flags(Undocumented, flags.FlagValues())


def test_the_flags_and_a_flagfile_need_no_tensorflow():
    """The command parses its flags, and a notebook reads the configs, before TensorFlow loads
    (a JAX trainer must not start it)."""
    script = textwrap.dedent(f"""
        import sys
        from absl import flags
        from asdn_tf.cli import train
        train.define_flags()
        flags.FLAGS(["train", "--flagfile={os.path.join(ROOT, 'configs', 'cpu.txt')}"])
        print(train.configs_from_flags(flags.FLAGS).train.validation_scales)
        print(sorted(name for name in ("tensorflow", "keras") if name in sys.modules))
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("\n")[:2] == ["(2.0, 3.0, 4.0)", "[]"]


def test_the_weights_sidecar_is_what_loading_reads(tmp_path):
    sidecar = run_folder.WeightsSidecar(
        model="fsdn", scale=2, preset="tiny", model_config=preset("tiny"),
        data_config=DataConfig(sources=("a",)), train_config=TrainConfig(steps=3), steps=3,
        training_seconds=1.5, validation_psnr={"2": 30.0})
    run_folder.save_weights(asdn_tf.build_fsdn("tiny", 2), tmp_path / "w.weights.h5", sidecar)
    written = json.loads((tmp_path / "w.json").read_text())
    assert list(written) == ["model", "scale", "preset", "model_config", "data_config",
                             "train_config", "steps", "training_seconds", "validation_psnr"]
    assert written["data_config"]["sources"] == ["a"] and written["train_config"]["steps"] == 3
    model = asdn_tf.load_model(tmp_path / "w.weights.h5", precision="float32")
    assert isinstance(model, asdn_tf.FSDN) and model.model_config == preset("tiny")


FLAGFILES = sorted(glob.glob(os.path.join(ROOT, "configs", "*.txt")))


def test_the_flagfiles_are_found():
    assert {"cpu.txt", "paper.txt", "tiny.txt", "fsdn_x2.txt"} <= set(map(os.path.basename,
                                                                          FLAGFILES))


@pytest.mark.parametrize("path", FLAGFILES, ids=os.path.basename)
def test_shipped_flagfiles_parse_and_say_what_they_are(path):
    with open(path) as file:
        assert file.readline().startswith("# ")
    values = _parsed([f"--flagfile={path}"])
    configs = train.configs_from_flags(values)
    assert configs.data.sources and configs.train.steps > 0
    name = os.path.basename(path)
    if name.startswith("fsdn_x"):
        assert values.model == "fsdn" and (train.fsdn_scale(values.scale)
                                           == int(name[len("fsdn_x"):-len(".txt")]))
    elif name == "fsdn.txt":
        assert values.model == "fsdn" and train.fsdn_scale(values.scale) == (2, 3, 4)


@pytest.fixture(scope="module")
def one_step_data(tmp_path_factory, datasets_dir):
    """A training folder of one image big enough for every flagfile's patches (x8 FSDN with
    24 px LR patches needs 192 px) and a validation set of one small crop."""
    from PIL import Image
    root = tmp_path_factory.mktemp("one_step")
    (root / "train").mkdir()
    (root / "val").mkdir()
    shutil.copy(datasets_dir / "Set14" / "face.png", root / "train" / "face.png")
    with Image.open(datasets_dir / "Set5" / "baby.png") as image:
        image.crop((200, 200, 248, 248)).save(root / "val" / "crop.png")
    return root


# Per flagfile, only its data and output flags are overridden (and --steps=1), and it runs from a
# folder outside the repository, as from a fresh clone. paper.txt also gets --preset=tiny: with
# the paper preset one update of its 16 patches of 48 px needs over 21 GB (the OOM killer stopped
# it after 207 s on the 23 GB test machine), and even 1 patch of 8 px takes 47 s on 2 CPU cores
# (93 s on busy ones), ~33 s of it tracing the 16-block train step.
_FITS_THE_TEST_MACHINE = {"paper.txt": ["--preset=tiny"]}
# fsdn_photo_x2.txt starts from the weights the finished fsdn_photo.txt run writes when its
# command runs again (git ignores run folders' weights); here the bundled FSDN of the same shape.
_WRITTEN_BY_AN_EARLIER_COMMAND = {
    "fsdn_photo_x2.txt": ["--init_from=asdn_tf/weights/fsdn_default.weights.h5"]}


@pytest.mark.slow
@pytest.mark.parametrize("path", FLAGFILES, ids=os.path.basename)
def test_shipped_flagfiles_run_one_step(path, one_step_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    values = _parsed([f"--flagfile={path}", f"--sources={one_step_data / 'train'}",
                      f"--validation_dir={one_step_data / 'val'}",
                      f"--output_dir={tmp_path / 'run'}", "--steps=1",
                      *_FITS_THE_TEST_MACHINE.get(os.path.basename(path), []),
                      *_WRITTEN_BY_AN_EARLIER_COMMAND.get(os.path.basename(path), [])])
    final = train.run_from_flags(values)
    sidecar = json.loads((tmp_path / "run" / "final.json").read_text())
    assert final.exists() and sidecar["steps"] == 1 and sidecar["validation_psnr"]
