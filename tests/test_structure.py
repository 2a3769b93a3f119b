"""The package's shape: every module short, every function short, no import cycle, and no
private name used outside its module (read from the source, nothing is imported)."""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "asdn_tf"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _modules():
    """{dotted name: parsed module} of every module in the package."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = (path, ast.parse(path.read_text(), str(path)))
    return modules


def _imported(name, node, modules):
    """The package's modules an import statement in module `name` loads, with the names it
    takes from each: [(module, [names])]."""
    if isinstance(node, ast.Import):
        return [(alias.name, []) for alias in node.names if alias.name in modules]
    base = node.module or ""
    if node.level:
        package = name.split(".")[:len(name.split(".")) - node.level + 1]
        base = ".".join(package[:-1] + ([base] if base else []))
    found = []
    for alias in node.names:
        if f"{base}.{alias.name}" in modules:
            found.append((f"{base}.{alias.name}", []))
        elif base in modules:
            found.append((base, [alias.name]))
    return found


def _imports(modules):
    """{module: {imported module: [names taken from it]}}, imports inside functions included."""
    graph = {}
    for name, (_, tree) in modules.items():
        edges = graph.setdefault(name, {})
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target, names in _imported(name, node, modules):
                    if target != name:
                        edges.setdefault(target, []).extend(names)
    return graph


def _cycles(graph):
    """The import cycles, each as a list of modules, found by depth-first search."""
    cycles, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for target in sorted(graph.get(node, {})):
            if state.get(target) == "open":
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def test_no_import_cycle():
    assert not _cycles(_imports(_modules()))


def test_no_module_over_the_line_limit():
    long = {name: len(path.read_text().splitlines()) for name, (path, _) in _modules().items()}
    assert not {name: lines for name, lines in long.items() if lines > MAX_MODULE_LINES}


def test_no_function_over_the_line_limit():
    long = [f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines"
            for name, (_, tree) in _modules().items() for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, "\n".join(long)


def test_no_private_name_used_across_modules():
    modules = _modules()
    found = []
    for name, (_, tree) in modules.items():
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target, names in _imported(name, node, modules):
                    found += [f"{name} imports {target}.{taken}" for taken in names
                              if taken.startswith("_") and target != name]
                    for alias in node.names:
                        if not names and target.endswith(alias.name):
                            aliases[alias.asname or alias.name] = target
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                found.append(f"{name} uses {aliases[node.value.id]}.{node.attr}")
    assert not found, "\n".join(sorted(set(found)))


def test_no_module_imported_under_another_modules_name():
    """`from asdn_tf.io import errors as cli` reads as the cli/ folder: a package module is
    imported under its own name or a name no other package module has."""
    modules = _modules()
    short = {module.rsplit(".", 1)[-1] for module in modules}
    found = []
    for name, (_, tree) in modules.items():
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            base = getattr(node, "module", None)
            for alias in node.names:
                target = f"{base}.{alias.name}" if base else alias.name
                if (target in modules and alias.asname in short
                        and alias.asname != alias.name.rsplit(".", 1)[-1]):
                    found.append(f"{name} imports {target} as {alias.asname}")
    assert not found, found


def test_no_private_attribute_of_another_object():
    """`optimizer._momentums` is another library's private state: a module reads `_names` of
    `self` and `cls` only."""
    found = [f"{name}:{node.lineno} {ast.unparse(node)}"
             for name, (_, tree) in _modules().items() for node in ast.walk(tree)
             if isinstance(node, ast.Attribute) and node.attr.startswith("_")
             and not node.attr.startswith("__")
             and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))]
    assert not found, "\n".join(found)


def test_no_global_statement():
    """State lives in objects or caches, not in module globals a function rebinds."""
    found = [f"{name}:{node.lineno} global {', '.join(node.names)}"
             for name, (_, tree) in _modules().items() for node in ast.walk(tree)
             if isinstance(node, ast.Global)]
    assert not found, "\n".join(found)


def _public_names():
    """{name: module} of the package's public API (`asdn_tf._EXPORTS`, read from the source)."""
    tree = _modules()["asdn_tf"][1]
    exports = next(node.value for node in tree.body if isinstance(node, ast.Assign)
                   and any(getattr(target, "id", "") == "_EXPORTS" for target in node.targets))
    return dict(zip((key.value for key in exports.keys), (value.value for value in exports.values)))


def test_no_function_shadows_a_public_name():
    """`asdn_tf.load_model` means one thing: no other module defines a function or class of a
    public name (the command's own loader is `load_upscale_model`)."""
    public = _public_names()
    found = [f"{name}:{node.lineno} {node.name} (public: {public[node.name]})"
             for name, (_, tree) in _modules().items() for node in tree.body
             if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in public
             and public[node.name] != name]
    assert not found, "\n".join(found)


# docs/layout.md's order, bottom first: a module imports its own folder or a lower row only.
LAYERS = (("io", "nn"), ("data",), ("inference",), ("evaluation",), ("training", "export"),
          ("cli", "demo"))


def _layer(module):
    """The row of LAYERS a package module's folder sits in; the command aliases beside
    __init__.py (asdn_tf/evaluate.py, ...) sit above every row, the package itself nowhere."""
    parts = module.split(".")
    if len(parts) == 1:
        return None
    for row, folders in enumerate(LAYERS):
        if parts[1] in folders:
            return row
    return len(LAYERS)


def test_imports_point_down_the_layers():
    found = [f"{name} (row {_layer(name)}) imports {target} (row {_layer(target)})"
             for name, targets in _imports(_modules()).items() for target in targets
             if _layer(target) is not None and name.split(".")[:2] != target.split(".")[:2]
             and _layer(target) >= _layer(name)]
    assert not found, "\n".join(sorted(found))


def test_nn_imports_no_flag_library():
    """The network's code (nn/) is a library: absl's flags and logging belong to the commands."""
    found = [f"{name}:{node.lineno}" for name, (_, tree) in _modules().items()
             if name.startswith("asdn_tf.nn") for node in ast.walk(tree)
             if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "absl"
                                                     for a in node.names)
             or isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "absl"]
    assert not found, found


def _package_aliases(tree):
    """{name: module} of the package modules a test file imports as names."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases.update({alias.asname or alias.name.split(".")[0]: alias.name
                            for alias in node.names if alias.name.startswith("asdn_tf")})
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("asdn_tf"):
            aliases.update({alias.asname or alias.name: f"{node.module}.{alias.name}"
                            for alias in node.names})
    return aliases


def test_tests_use_public_names():
    """A test reads, and monkeypatches, the package's public names only: a private one is
    tested through its module's public functions."""
    found = []
    for path in sorted(PACKAGE.parent.joinpath("tests").glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        aliases = _package_aliases(tree)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                found.append(f"{path.name}:{node.lineno} {ast.unparse(node)}")
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("setattr", "delattr") and len(node.args) > 1
                    and isinstance(node.args[0], ast.Name) and node.args[0].id in aliases
                    and isinstance(node.args[1], ast.Constant)
                    and str(node.args[1].value).startswith("_")):
                found.append(f"{path.name}:{node.lineno} {ast.unparse(node)[:60]}")
            if (isinstance(node, ast.ImportFrom) and (node.module or "").startswith("asdn_tf")
                    and any(alias.name.startswith("_") for alias in node.names)):
                found.append(f"{path.name}:{node.lineno} from {node.module} import _")
    assert not found, "\n".join(found)
