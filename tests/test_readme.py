"""The README and the docs (docs/*.md, data/README.md, serving/README.md) are true to the
repository.

- Every repository path they name exists, or git ignores it (an output); an ignored path that a
  command reads (`--weights=...`, `load_model("...")`) lies under the `--output_dir` of a
  flagfile or of a command shown, so a documented step writes it first. Markdown links are
  read relative to their document, other paths relative to the repository's root.
- Every `python -m asdn_tf.*`, `python -m bench.*` and `asdn-upscale` command in them, in code
  blocks or inline, parses its flags with the program's own flag definitions and parser (absl
  stops on an unknown flag or a bad value, reading flagfiles too).
- Every `asdn_tf.name` they mention resolves.

The flags and names are checked in one child process (one TensorFlow start), which runs each
program's `__main__` up to absl's `app.run`, then parses each command's arguments.
"""

import json
import os
import pathlib
import re
import shlex
import subprocess
import sys
import tomllib
import warnings

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCUMENTS = sorted(["README.md", "data/README.md", "serving/README.md"]
                   + [f"docs/{path.name}" for path in (ROOT / "docs").glob("*.md")])
MODULE = r"(?:asdn_tf|bench)(?:\.\w+)+"
PROGRAM = re.compile(rf"python -m {MODULE}\b|asdn-upscale\b")
HELP_FLAGS = {"--help", "--helpshort", "--helpfull", "-h", "-?"}
INPUT_FLAGS = {"weights", "init_from", "flagfile", "input", "images", "data_dir",
               "validation_dir", "sources", "saved_model_dir"}
PATH = re.compile(r"(?<![\w./-])(?:[\w.-]+/)+[\w.*-]*")
NAME = re.compile(r"\basdn_tf(?:\.(?!zip\b)[A-Za-z_]\w*)+")  # not the file asdn_tf.zip


def _fenced(text):
    """(language, body) of each fenced code block."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)


def _prose(text):
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def _shell_lines(text):
    """Logical lines of the bash blocks (continuations joined) and the inline commands."""
    lines = []
    for language, body in _fenced(text):
        if language in ("bash", "sh", "shell"):
            lines += body.replace("\\\n", " ").splitlines()
    for span in re.findall(r"`([^`]+)`", _prose(text)):
        span = " ".join(span.split())
        if PROGRAM.match(span):
            lines.append(span)
    return lines


def _scripts():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    return {name: target.replace(" ", "") for name, target in scripts.items()}


def _commands(text):
    """(line, target, args): target is a module name or an entry point "module:function".
    `$(...)` becomes a placeholder, `[optional]` brackets go, `a|b` values give one command
    per alternative, help flags are dropped (they would stop the parse)."""
    scripts = _scripts()
    commands = []
    for line in _shell_lines(text):
        tokens = shlex.split(line, comments=True)
        while tokens:
            segment = tokens[:tokens.index("&&")] if "&&" in tokens else tokens
            tokens = tokens[len(segment) + 1:]
            if segment[:2] == ["python", "-m"] and re.fullmatch(MODULE, segment[2]):
                target, args = segment[2], segment[3:]
            elif segment and segment[0] in scripts:
                target, args = scripts[segment[0]], segment[1:]
            else:
                continue
            args = [re.sub(r"=\$\(.*", "=PLACEHOLDER", arg).strip("[]") for arg in args]
            args = [arg for arg in args if arg and arg not in HELP_FLAGS]
            variants = [[]]
            for arg in args:
                name, equals, value = arg.partition("=")
                choices = value.split("|") if arg.startswith("--") and "|" in value else [value]
                variants = [variant + [f"{name}{equals}{choice}"] for variant in variants
                            for choice in choices]
            commands += [(line.strip(), target, variant) for variant in variants]
    return commands


def _git(*args, stdin=None):
    return subprocess.run(["git", *args], cwd=ROOT, input=stdin, capture_output=True,
                          text=True)


def _ignored(path):
    """Whether git ignores `path`, as a file or (for patterns such as `logs/`) a folder."""
    return any(_git("check-ignore", "-q", "--no-index", name).returncode == 0
               for name in (path, path.rstrip("/") + "/"))


def _output_dirs(text):
    """Folders that documented steps write to: each flagfile's and each command's
    --output_dir."""
    sources = [text] + [path.read_text() for path in (ROOT / "configs").glob("*.txt")]
    return {pathlib.PurePosixPath(folder) for source in sources
            for folder in re.findall(r"--output_dir=(\S+)", source)}


def _data_folders():
    """The image folders data/README.md lays out (`data/<name>/`): a user fills them, so
    commands may read them though git ignores them."""
    text = (ROOT / "data" / "README.md").read_text()
    layout = text[text.index("## Layout"):].split("```")[1]
    return set(re.findall(r"^  ([\w.-]+)/", layout, re.M))


def _named_paths(text, folder="."):
    """{path: read}: repository-relative paths a document in `folder` (relative to the root)
    names, and whether a command or Python call reads it."""
    named = {}
    for line, _, args in _commands(text):
        for arg in args:
            name, _, value = arg.partition("=")
            for part in value.split(","):
                if PATH.fullmatch(part):
                    named[part] = named.get(part, False) or name.lstrip("-") in INPUT_FLAGS
    for path in re.findall(r"load_model\(\s*\"([^\"]+)\"", text):
        named[path] = True
    for path in re.findall(r"\]\(([^)#\s]+)\)", text):  # Markdown links
        if "://" not in path:
            named.setdefault(os.path.normpath(os.path.join(folder, path)), False)
    for span in re.findall(r"`([^`]+)`", _prose(text)) + [b for _, b in _fenced(text)]:
        for path in PATH.findall(span):
            named.setdefault(path, False)
    return named


def test_every_repository_path_in_the_docs_exists_or_is_written_first():
    if _git("rev-parse", "--git-dir").returncode != 0:
        import pytest
        pytest.skip("needs the git repository (which paths git ignores)")
    texts = {document: (ROOT / document).read_text() for document in DOCUMENTS}
    tracked_tops = {line.split("/")[0] for line in _git("ls-files").stdout.splitlines()}
    outputs = _output_dirs("\n".join(texts.values()))
    data_folders = _data_folders()
    named = {}
    for document, text in texts.items():
        for path, read in _named_paths(text, os.path.dirname(document) or ".").items():
            named.setdefault(path, (document, False))
            named[path] = (named[path][0], named[path][1] or read)
    problems = []
    for path, (document, read) in sorted(named.items()):
        path = path.rstrip("/.,")
        if path.startswith(("../", "/", "~")) or not path:
            continue
        in_repository = path.split("/")[0] in tracked_tops or _ignored(path)
        if not in_repository or (ROOT / path).exists() or any(ROOT.glob(path)):
            continue
        if not _ignored(path):
            problems.append(f"{document}: {path}: not in the repository")
        elif path.startswith("data/"):
            if path.split("/")[1] not in data_folders:
                problems.append(f"{document}: {path}: not a folder data/README.md lays out")
        elif read and not any(folder in pathlib.PurePosixPath(path).parents
                              for folder in outputs):
            problems.append(f"{document}: {path}: read by a command, but no documented step "
                            f"writes it (output folders: {sorted(map(str, outputs))})")
    assert not problems, "\n".join(problems)


def test_every_documented_command_parses_its_flags():
    jobs = {}
    for document in DOCUMENTS:
        for line, target, args in _commands((ROOT / document).read_text()):
            jobs.setdefault(target, []).append((f"{document}: {line}", args))
    assert {"asdn_tf.train", "asdn_tf.evaluate", "asdn_tf.export", "asdn_tf.cli.upscale:run",
            "bench.run"} <= set(jobs)
    names = sorted({name for document in DOCUMENTS
                    for name in NAME.findall((ROOT / document).read_text())})
    result = subprocess.run([sys.executable, __file__],
                            input=json.dumps({"jobs": jobs, "names": names}), cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-5000:]
    report = json.loads(result.stdout.splitlines()[-1])
    assert not report["problems"], "\n\n".join(report["problems"])
    assert report["checked"] == sum(map(len, jobs.values()))


def test_the_preset_table_lists_every_preset():
    from asdn_tf.nn.config import PRESETS

    text = (ROOT / "docs" / "upscaling.md").read_text()
    table = text[text.index("| preset | parameters |"):].split("\n\n")[0]
    assert sorted(re.findall(r"^\| (\w+) \| [\d,]+ \|", table, re.M)) == sorted(PRESETS)


def _section(text, title):
    """The body of the README section `## title`, up to the next `## ` heading."""
    body = text[text.index(f"\n## {title}\n") + len(title) + 5:]
    return body.split("\n## ")[0]


# A time or memory figure: "4.1 s", "1.33 GB", "1 min 22 s".
FIGURE = re.compile(r"(?<![\w.])(?:\d+ min \d+ s|\d+(?:\.\d+)? (?:s|GB|MB|MiB))\b")


def test_the_readme_figures_are_dated_in_performance_md():
    """Every time and memory figure of the README is one of docs/performance.md, where its date,
    load, CPU features and commit are given (the README once quoted figures found nowhere)."""
    readme = _prose((ROOT / "README.md").read_text())
    performance = (ROOT / "docs" / "performance.md").read_text()
    figures = set(FIGURE.findall(readme))
    missing = sorted(figure for figure in figures if figure not in performance)
    assert not missing, f"README figures that docs/performance.md does not give: {missing}"
    assert {"2 min 10 s", "14 min 12 s", "4.1 s"} <= figures  # the pattern finds them


def test_ci_runs_the_readmes_install_and_test_commands():
    """.ci/run installs and tests as the README tells a user to (the guide's promise), so the
    README's suite command, two processes included, is the one CI times."""
    readme = [line.split("#")[0].strip() for _, body in _fenced((ROOT / "README.md").read_text())
              for line in body.splitlines()]
    install = next(line for line in readme if line.startswith('pip install -e ".[test]"'))
    suite = next(line for line in readme
                 if line.startswith("python -m pytest") and "not slow" not in line)
    ci = (ROOT / ".ci" / "run").read_text().splitlines()[-1]
    assert ci == f"{install} && {suite}"
    assert "-n 2" in suite


def test_the_readme_says_which_model_an_export_holds():
    """The export command loads the bundled default model, not the photo model the upscale
    command uses: the Serving and ONNX sections say so."""
    import numpy as np

    from asdn_tf.cli.model_flags import load_chosen_model
    from asdn_tf.inference import weights_io

    exported = load_chosen_model(precision="float32").get_weights()
    holds = [name for name in ("default", "photo") if all(
        np.array_equal(a, b) for a, b in zip(
            exported, weights_io.load_pretrained(name, "float32").get_weights()))]
    assert holds == ["default"] and weights_io.UPSCALE_MODEL == "photo"
    text = (ROOT / "README.md").read_text()
    for title in ("Serving", "ONNX"):
        section = " ".join(_section(text, title).split())
        assert "holds the bundled default model" in section and "photo model" in section, title


def test_the_readme_says_how_folder_runs_fail():
    """A folder run goes on past a bad file (docs/upscaling.md); the README said every bad input
    stops the command, writing nothing."""
    section = " ".join(_section((ROOT / "README.md").read_text(), "Command line").split())
    assert "a folder run names each bad file, upscales the others and exits 1" in section
    assert "`--fail_fast`" in section


def _check_in_this_process(jobs, names):
    """Runs each target's main up to app.run, then parses each command's arguments with the
    flags it defined and the parser it passes to app.run; resolves each dotted name."""
    import contextlib
    import importlib
    import io
    import runpy

    from absl import app, flags

    class Reached(Exception):
        pass

    parsers = {}

    def stop_at_run(main, argv=None, flags_parser=app.parse_flags_with_usage):
        parsers["parser"] = flags_parser
        raise Reached

    app.run = stop_at_run
    values = flags.FLAGS
    problems, checked = [], 0
    for target, commands in jobs.items():
        before, argv = set(values), sys.argv
        parsers.clear()
        sys.argv = [target]
        try:
            if ":" in target:
                module, function = target.split(":")
                getattr(importlib.import_module(module), function)()
            else:
                runpy.run_module(target, run_name="__main__", alter_sys=False)
        except Reached:
            pass
        except Exception as error:  # noqa: BLE001 - reported as the command's problem
            problems.append(f"{target}: {type(error).__name__}: {error}")
            continue
        finally:
            sys.argv = argv
        if "parser" not in parsers:
            problems.append(f"{target}: its main does not call absl's app.run")
            continue
        for line, args in commands:
            values.unparse_flags()
            stderr = io.StringIO()
            try:
                with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
                    parsers["parser"]([target, *args])
                checked += 1
            except (SystemExit, flags.Error) as error:
                message = error.code if isinstance(error, SystemExit) else error
                problems.append(f"{line}\n  {message or ''} {stderr.getvalue().strip()[-800:]}")
        for name in set(values) - before:
            delattr(values, name)
    for name in names:
        parts = name.split(".")
        for end in range(len(parts), 0, -1):
            try:
                value = importlib.import_module(".".join(parts[:end]))
                break
            except ImportError:
                continue
        try:
            for part in parts[end:]:
                value = getattr(value, part)
        except AttributeError:
            problems.append(f"{name}: the docs name it, but it does not resolve")
    return {"problems": problems, "checked": checked}


if __name__ == "__main__":
    # As `python -m` from the repository root: the root is first on the path.
    sys.path.insert(0, str(ROOT))
    warnings.filterwarnings("ignore", "'.*' found in sys.modules", RuntimeWarning)
    request = json.load(sys.stdin)
    report = _check_in_this_process(request["jobs"], request["names"])
    print(json.dumps(report))
