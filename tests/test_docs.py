"""A clone stands alone: what a user reads or runs names no path outside the repository, and
the README keeps to its line budget. (tests/test_readme.py checks that the paths, commands and
names the docs give exist and parse.)"""

import ast
import os
import pathlib
import re
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README_LINES = 250
# What a user reads or runs: the README and docs, flagfiles, notebooks, the package, serving/
# and the benchmarks. Markdown and notebooks name paths relative to their own folder (a link, a
# notebook's working folder); code and flagfiles relative to the repository's root.
CHECKED = ("README.md", "docs", "data/README.md", "configs", "notebooks", "asdn_tf", "serving",
           "bench")
RELATIVE_TO_FILE = (".md", ".ipynb")
# Folders of a particular machine: a user's clone has none of them.
FOREIGN_ROOTS = ("work", "home", "root", "Users", "mnt", "media", "tmp", "scratch", "shared",
                 "data", "srv", "opt", "var")
FOREIGN = re.compile(rf"(?<![\w.~$/-])/(?:{'|'.join(FOREIGN_ROOTS)})(?=/|\b)")
UPWARD = re.compile(r"(?<![\w.-])(?:\.\./)*\.\.(?:/[\w.*-]+)*(?![\w.])")


def _tracked(*paths):
    result = subprocess.run(["git", "ls-files", "--", *paths], cwd=ROOT, capture_output=True,
                            text=True)
    if result.returncode != 0:
        pytest.skip("needs the git repository (the tracked files)")
    return [path for path in result.stdout.splitlines() if (ROOT / path).is_file()
            and not path.endswith((".h5", ".png", ".npz", ".csv", ".index"))]


def outside_paths(path, text):
    """['line N: token'] for each path in `text` (the file `path`, relative to the root) that
    leaves the repository: an absolute path of a machine's own folders, or `..` steps that
    climb above the root."""
    base = (ROOT / path).parent if path.endswith(RELATIVE_TO_FILE) else ROOT
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        found += [f"line {number}: {match.group()}..." for match in FOREIGN.finditer(line)
                  if "://" not in line[max(0, match.start() - 40):match.start()]]
        for match in UPWARD.finditer(line):
            target = pathlib.Path(os.path.normpath(base / match.group()))
            if not target.is_relative_to(ROOT):
                found.append(f"line {number}: {match.group()}")
    return found


def test_no_path_leaves_the_repository():
    problems = [f"{path}: {place}" for path in _tracked(*CHECKED)
                for place in outside_paths(path, (ROOT / path).read_text())]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path,text,expected", [
    ("README.md", "python -m asdn_tf.evaluate --data_dir=../beside/datasets", 1),
    ("configs/cpu.txt", "--sources=../beside/datasets/T91", 1),
    ("asdn_tf/config.py", '"""Hyper-parameters (../beside/docs/ASDN.md §2)."""', 1),
    ("asdn_tf/check_data.py", '>>> inspect_folder("/scratch/datasets/Set14")', 1),
    ("docs/method.md", "see ~/data or /home/me/Set5", 1),
    ("data/README.md", "[the protocol](../docs/protocol.md), `data/Set5`", 0),
    ("notebooks/quickstart.ipynb", '"pip install ..", "../data/Set5"', 0),
    ("README.md", "https://example.org/home/x, /proc/cpuinfo, `--output_dir`/logs", 0),
])
def test_outside_paths_are_found(path, text, expected):
    assert len(outside_paths(path, text)) == expected


def test_only_ci_and_test_configuration_know_the_shared_datasets():
    # The patterns are bracketed so that this file does not match them itself.
    result = subprocess.run(["git", "grep", "-l", "-e", "[.][.]/shared", "-e", "shared/data[s]ets"],
                            cwd=ROOT, capture_output=True, text=True)
    if result.returncode not in (0, 1):
        pytest.skip("needs the git repository")
    assert set(result.stdout.split()) <= {".ci/run", "tests/conftest.py"}


def test_readme_keeps_to_its_line_budget():
    lines = len((ROOT / "README.md").read_text().splitlines())
    assert lines <= README_LINES, f"README.md has {lines} lines; the budget is {README_LINES}"


def joined_lines(source):
    """[line number] of each line of a module docstring (what a command's --help prints) that
    ends in a lone backslash: in a string that is not raw, it joins the next line to it."""
    tree = ast.parse(source)
    if not (tree.body and isinstance(tree.body[0], ast.Expr)
            and isinstance(tree.body[0].value, ast.Constant)
            and isinstance(tree.body[0].value.value, str)):
        return []
    node = tree.body[0].value
    if ast.get_source_segment(source, node).lstrip("bBuU")[:1] in "rR":
        return []
    lines = source.splitlines()[node.lineno - 1:node.end_lineno - 1]
    return [node.lineno + offset for offset, line in enumerate(lines)
            if re.search(r"(?<!\\)(?:\\\\)*\\$", line)]


def test_no_docstring_joins_its_lines():
    problems = [f"{path}: line {number}" for path in _tracked("asdn_tf", "bench", "serving")
                if path.endswith(".py")
                for number in joined_lines((ROOT / path).read_text())]
    assert not problems, "a lone backslash ends a docstring line:\n" + "\n".join(problems)


@pytest.mark.parametrize("source,expected", [
    ('"""Run:\n\n    cmd --a \\\n        --b\n"""\n', [3]),
    ('"""Run:\n\n    cmd --a \\\\\n        --b\n"""\n', []),
    ('r"""Run:\n\n    cmd --a \\\n        --b\n"""\n', []),
    ('import os\n', []),
])
def test_joined_docstring_lines_are_found(source, expected):
    assert joined_lines(source) == expected
