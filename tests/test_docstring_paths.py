"""Every module path (`asdn_tf.x.y`, with a name in it) and file path (`asdn_tf/x/y.py`,
`docs/x.md`, `configs/x.txt`, ...) that a docstring or a comment under asdn_tf/ names exists:
a file moved or a module renamed fails here, not in a reader's search."""

import ast
import io
import pathlib
import re
import tokenize

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "asdn_tf"
DOTTED = re.compile(r"\basdn_tf(?:\.[A-Za-z_]\w*)+")
FILE = re.compile(r"(?<![\w/.])(?:asdn_tf|docs|configs|tests|bench|serving|notebooks)/"
                  r"[\w./-]*\w\.(?:py|md|txt|json|ipynb|html|sh|cfg)\b")


def _texts(path):
    """The docstrings and comments of a module, each with its line."""
    source = path.read_text()
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            docstring = ast.get_docstring(node, clean=False)
            if docstring:
                yield (node.body[0].lineno, docstring)
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            yield token.start[0], token.string


def _top_level_names(path):
    """The names a module defines or imports at its top level (and, for asdn_tf/__init__.py,
    the public names it loads on first use)."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
            if isinstance(node.value, ast.Dict):
                names.update(key.value for key in node.value.keys
                             if isinstance(key, ast.Constant) and isinstance(key.value, str))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _module_file(parts):
    """The file of the module `parts` names, or None."""
    base = ROOT.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _resolves(dotted):
    """Whether `asdn_tf.a.b.name...` is a module, or a module and a name defined in it."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        module = _module_file(parts[:end])
        if module is not None:
            return end == len(parts) or parts[end] in _top_level_names(module)
    return False


def _named_paths():
    for path in sorted(PACKAGE.rglob("*.py")):
        for line, text in _texts(path):
            for match in DOTTED.finditer(text):
                yield path, line, match.group(0), _resolves(match.group(0))
            for match in FILE.finditer(text):
                yield path, line, match.group(0), (ROOT / match.group(0)).exists()


def test_every_path_in_a_docstring_or_comment_exists():
    missing = [f"{path.relative_to(ROOT)}:{line} {named}"
               for path, line, named, exists in _named_paths() if not exists]
    assert not missing, "\n".join(missing)


def test_the_check_finds_paths():
    named = {named for _, _, named, _ in _named_paths()}
    assert {"asdn_tf/training/loop.py", "asdn_tf.data.imresize", "docs/limits.md"} <= named
    assert not _resolves("asdn_tf.tiling") and not (ROOT / "asdn_tf/degradation.py").exists()
