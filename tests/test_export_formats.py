"""Each export format is defined once, as a row of asdn_tf/export/formats.py: the command's
choices, the flags each takes and the output each may replace come from it; and the
verification every format runs against Keras is one module (asdn_tf/export/verification.py)."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from asdn_tf.export import output_files, verification
from asdn_tf.export.formats import FORMATS

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Defines the command's flags (`run`, with absl's app.run held back), then, for every format
# and every export flag, gives that flag alone and calls `main` with each row's check passing
# and its command replaced by a recorder: prints what the command accepted and refused.
_PROBE = """
import contextlib, dataclasses, io, json, sys
from unittest import mock
from absl import flags
from asdn_tf.cli import export
from asdn_tf.export.formats import FORMATS

before = set(flags.FLAGS)
with mock.patch("absl.app.run"):
    export.run()
defined = sorted(set(flags.FLAGS) - before)
flags.FLAGS.mark_as_parsed()
called = []
for name, row in list(FORMATS.items()):
    FORMATS[name] = dataclasses.replace(row, check=lambda options: None,
                                        command=lambda *args, name=name: called.append(name))
usage = io.StringIO()
with contextlib.redirect_stderr(usage):
    export.main(["export", "pdf"])
results = {}
for name in FORMATS:
    for flag in defined:
        flags.FLAGS[flag].present = 1
        said = io.StringIO()
        with contextlib.redirect_stderr(said):
            code = export.main(["export", name])
        flags.FLAGS[flag].present = 0
        results.setdefault(name, {})[flag] = [code, called[-1:] == [name], said.getvalue()]
        called.clear()
print(json.dumps({"usage": usage.getvalue(), "defined": defined, "results": results}))
"""


@pytest.fixture(scope="module")
def probe():
    done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_the_command_offers_the_rows_of_the_table(probe):
    assert probe["usage"] == (f"export: usage: python -m asdn_tf.export {'|'.join(FORMATS)} "
                              "[--flags]\n")
    assert list(FORMATS) == ["saved_model", "tflite", "onnx", "ncnn"]
    assert all(row.name == name for name, row in FORMATS.items())


def test_each_format_takes_exactly_the_flags_of_its_row(probe):
    assert set().union(*(row.flags for row in FORMATS.values())) == set(probe["defined"])
    for name, row in FORMATS.items():
        for flag, (code, dispatched, said) in probe["results"][name].items():
            if flag in row.flags:
                assert (code, dispatched, said) == (0, True, ""), (name, flag)
            else:
                assert (code, dispatched) == (2, False), (name, flag)
                assert said == f"export: --{flag} does not apply to {name}\n"


def test_each_row_says_what_its_output_may_replace(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not an export")
    for row in FORMATS.values():
        with pytest.raises(FileExistsError, match="overwrite replaces only an earlier export"):
            output_files.check_output(notes, row.output, overwrite=True)
    earlier = tmp_path / "m.tflite"
    earlier.write_bytes(bytes(4) + b"TFL3" + bytes(8))
    output_files.check_output(earlier, FORMATS["tflite"].output, overwrite=True)
    with pytest.raises(FileExistsError):
        output_files.check_output(earlier, FORMATS["onnx"].output, overwrite=True)


def test_agreement_measures_every_format_alike():
    expected = np.full((1, 4, 5, 3), 0.4, np.float32)
    output = expected.copy()
    output[0, 1, 2, 0] += 2 / 255
    result = verification.agreement([(output, expected), (expected[0], expected[0])], "X")
    assert result["images"] == 2 and result["grey_levels"] == 2
    assert result["max_abs"] == pytest.approx(2 / 255, rel=1e-6)
    assert result["psnr"] == pytest.approx(10 * np.log10(60 / (2 / 255) ** 2), abs=1e-3)
    assert verification.within_bound(result)["ok"] is False
    with pytest.raises(ValueError, match=r"^X returned \(1, 4, 5, 3\), Keras \(4, 5, 3\)$"):
        verification.agreement([(output, expected[0])], "X")


def test_a_file_that_disagrees_is_refused_in_one_line():
    result = verification.within_bound({"max_abs": 1.0, "grey_levels": 255, "psnr": 0.0,
                                        "images": 2})
    line = verification.agreement_line("ncnn", result, "photos")
    assert line == ("ncnn vs Keras on 2 crops of photos: max abs 1 (255 grey level(s) in 8 bits), "
                    "PSNR 0.00 dB; requirement max abs <= 0.000784: NOT met")
    with pytest.raises(ValueError, match=r"^ncnn and Keras disagree; nothing written$"):
        verification.require(result, "ncnn and Keras disagree")
    verification.require({**result, "ok": True}, "unused")


def test_crops_are_centred_and_sized_for_the_scale():
    image = np.arange(300 * 200 * 3, dtype=np.float32).reshape(300, 200, 3)
    cases = verification.verification_cases([image], 8.0)
    assert [(crop.shape, scale) for crop, scale in cases] == [((96, 96, 3), 8.0),
                                                              ((65, 93, 3), 8.0)]
    np.testing.assert_array_equal(cases[0][0], image[102:198, 52:148])
    assert verification.verification_cases([image], 32.0)[0][0].shape == (32, 32, 3)
    assert {scale for _, scale in verification.verification_cases([image], None)} == set(
        verification.ANY_SCALE_CHECKS)
    with pytest.raises(ValueError, match="needs verification images at least that large"):
        verification.verification_cases([image], 2.0, (400, 100))
