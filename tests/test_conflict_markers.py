"""No tracked text file holds a merge-conflict marker: a merge left half-resolved passes every
other check (README.md once held a `<<<<<<< HEAD` block while test_readme.py and test_docs.py
passed)."""

import pathlib
import re
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# The markers git writes (conflict-marker-size 7): built here from their characters so that this
# file holds none of them at the start of a line.
MARKER = re.compile("^(?:{0} .*|{1}\r?|{2} .*)$".format("<" * 7, "=" * 7, ">" * 7), re.M)


def conflict_markers(text):
    """[line number] of each merge-conflict marker line in `text`."""
    return [text.count("\n", 0, match.start()) + 1 for match in MARKER.finditer(text)]


def _tracked_texts():
    """{path: text} of every tracked file that decodes as UTF-8 text (binary files skipped)."""
    result = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True)
    if result.returncode != 0:
        pytest.skip("needs the git repository (the tracked files)")
    texts = {}
    for name in result.stdout.decode().split("\0"):
        path = ROOT / name
        if not name or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data:
            continue
        try:
            texts[name] = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
    return texts


def test_no_tracked_text_file_holds_a_conflict_marker():
    texts = _tracked_texts()
    assert "README.md" in texts and "pyproject.toml" in texts
    problems = [f"{name}: line {number}" for name, text in sorted(texts.items())
                for number in conflict_markers(text)]
    assert not problems, "merge-conflict markers:\n" + "\n".join(problems)


@pytest.mark.parametrize("text,expected", [
    ("a\n{0} HEAD\nours\n{1}\ntheirs\n{2} main\nb\n", [2, 4, 6]),
    ("{0} HEAD\r\nours\r\n{1}\r\n", [1, 3]),   # Windows line ends
    ("Title\n{1}\n", [2]),                    # a lone ======= is a marker, whatever it follows
    ("Title\n========\n", []),                # a longer setext underline is not
    ("x = '{0} HEAD'\n", []),                 # not at the start of a line
    ("{0}HEAD\n", []),                        # git writes a space after the marker
    ("| a |\n|===|\n", []),
])
def test_conflict_markers_are_found(text, expected):
    text = text.format("<" * 7, "=" * 7, ">" * 7)
    assert conflict_markers(text) == expected
