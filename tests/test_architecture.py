"""docs/architecture.md's rules, checked on the source: which way each
import may point, that no module reaches for another module's `_private`
names, that no engine module grows past 400 lines, and that the local and
the Ray pool both keep the runner's Pool contract.

Imports are read with `ast` (every import statement, also those inside
functions), never by importing the modules: ray, matplotlib and the
plugins' dependencies need not be present."""
import ast
import inspect
import os

import pytest

from conftest import ROOT

PACKAGES = ("engine", "plugins", "analysis", "scripts")
MAX_ENGINE_LINES = 400

# Leaves: anyone may import them; they import nothing of ours but other leaves.
LEAVES = {"engine", "engine.arguments", "engine.errors", "engine.records", "engine.stamps", "engine.usage",
          "engine.pool_api", "engine.timing"}
# The worker side: it moves bytes and reads clocks, in worker processes and Ray actors.
WORKER_SIDE = {"engine.worker", "engine.transport", "engine.connection", "engine.ray_actor"}
# The engine modules that may import analysis: the command line (reports, --slo) and nothing below it.
ENGINE_INTO_ANALYSIS = {"engine.cli", "engine.options"}
# What analysis may import of the engine: the leaves, and the database's schema.
ANALYSIS_FROM_ENGINE = LEAVES | {"engine.store"}
# What a plugin may import of the engine: the leaves (the plugin SDK's Arguments and errors).
PLUGIN_FROM_ENGINE = LEAVES
# The plugin SDK a plugin may import: the base classes and their helpers, never the registry
# (which finds plugins through entry points) or another plugin's private parts.
PLUGIN_SDK = {"plugins", "plugins.base", "plugins.payload", "plugins.tokenizer", "plugins.bodies", "plugins.files",
              "plugins.jsoncache", "plugins.openai_shapes", "plugins.replay"}

# Private cross-imports that the analysis part of issue 15 removes (it reshapes
# analysis/, which this part leaves alone).  Each entry must still exist, so the
# list shrinks as they go: when this test says one is gone, delete it here.
KNOWN_PRIVATE: set[tuple[str, str, str]] = set()  # none left: keep it so


def _module_name(path: str) -> str:
    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
    return rel[:-len(".__init__")] if rel.endswith(".__init__") else rel


def _sources() -> dict[str, str]:
    found = {}
    for package in PACKAGES:
        for folder, dirs, files in os.walk(os.path.join(ROOT, package)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__" and d != "example_plugin")
            for name in sorted(files):
                if name.endswith(".py"):
                    found[_module_name(os.path.join(folder, name))] = os.path.join(folder, name)
    return found


SOURCES = _sources()
OURS = set(SOURCES)


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".")
    is_package = SOURCES[module].endswith("__init__.py")
    base = package if is_package else package[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str):
    """(imported module, names taken from it, line) for every import of ours
    in `module`; a name that is itself a module counts as that module."""
    tree = ast.parse(open(SOURCES[module], encoding="utf-8").read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PACKAGES:
                    yield alias.name, (), node.lineno
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            if target.split(".")[0] not in PACKAGES:
                continue
            names = []
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in OURS:
                    yield sub, (), node.lineno
                else:
                    names.append(alias.name)
            if names:
                yield target, tuple(names), node.lineno


def _private_uses(module: str):
    """(module, private name) for `from x import _y` and for `x._y` where x
    is one of our modules bound by an import."""
    for target, names, _ in _imports(module):
        for name in names:
            if name.startswith("_") and not name.startswith("__") and target != module:
                yield target, name
    tree = ast.parse(open(SOURCES[module], encoding="utf-8").read())
    bound = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in OURS:
                    bound[alias.asname or alias.name.split(".")[0]] = alias.asname and alias.name
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            for alias in node.names:
                if f"{target}.{alias.name}" in OURS:
                    bound[alias.asname or alias.name] = f"{target}.{alias.name}"
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound
                and bound[node.value.id] and node.attr.startswith("_") and not node.attr.startswith("__")
                and bound[node.value.id] != module):
            yield bound[node.value.id], node.attr


def _within(module: str, *roots: str) -> bool:
    return any(module == r or module.startswith(r + ".") for r in roots)


def _violations(module: str) -> list[str]:
    out = []
    for target, _, line in _imports(module):
        if target == module or target not in OURS:
            continue
        why = None
        if module in LEAVES:
            if target not in LEAVES:
                why = "a leaf imports only other leaves"
        elif _within(module, "engine.mock"):
            if not (_within(target, "engine.mock") or target in ("engine", "engine.stamps")):
                why = "the mock imports nothing of the client but the engine.stamps leaf"
        elif module in WORKER_SIDE:
            if not (target in WORKER_SIDE or target in LEAVES):
                why = "the worker side imports only itself and the leaves (no plugin, store or coordinator)"
        elif _within(module, "plugins"):
            if _within(target, "engine") and target not in PLUGIN_FROM_ENGINE:
                why = "a plugin imports only the engine's leaves"
            elif _within(target, "analysis"):
                why = "plugins do not import analysis"
            elif _within(module, "plugins.api", "plugins.datasets") and _within(target, "plugins") \
                    and target not in PLUGIN_SDK and not _within(target, module.rsplit(".", 1)[0]):
                why = "a built-in plugin imports the SDK (plugins.base and its helpers), like any other plugin"
        elif _within(module, "analysis"):
            if _within(target, "engine") and target not in ANALYSIS_FROM_ENGINE:
                why = "analysis reads only the database (engine.store's schema, and the leaves)"
            elif _within(target, "plugins"):
                why = "analysis reads only the database, never plugins"
        elif _within(module, "engine"):
            if _within(target, "analysis") and module not in ENGINE_INTO_ANALYSIS:
                why = "only the command line (engine.cli, engine.options) calls analysis"
            elif _within(target, "plugins.api", "plugins.datasets"):
                why = "the engine loads plugins through plugins.registry, never by importing one"
            elif target in ("engine.cli", "engine.__main__") and module != "engine.__main__":
                why = "nothing imports the command line (but `python -m engine`)"
            elif target == "engine.runner" and module != "engine.cli":
                why = "only the command line starts runs"
        if why:
            out.append(f"{SOURCES[module]}:{line}: {module} imports {target}: {why}")
    return out


def test_every_import_points_the_way_docs_architecture_says():
    problems = [p for module in sorted(SOURCES) for p in _violations(module)]
    assert not problems, "\n".join(problems)


def test_no_module_imports_another_modules_private_names():
    found = {(module, target, name) for module in SOURCES for target, name in _private_uses(module)}
    new = sorted(found - KNOWN_PRIVATE)
    assert not new, "\n".join(f"{m} uses {t}.{n}: make it public or move it" for m, t, n in new)
    gone = sorted(KNOWN_PRIVATE - found)
    assert not gone, "no longer there, delete from KNOWN_PRIVATE: " + ", ".join(map(str, gone))


def test_no_module_is_over_400_lines():
    long = {m: n for m, path in SOURCES.items() if _within(m, "engine", "plugins", "analysis")
            for n in [sum(1 for _ in open(path, encoding="utf-8"))] if n > MAX_ENGINE_LINES}
    assert not long, f"split by the job a newcomer would name: {long}"


def test_docs_architecture_names_every_engine_and_plugins_module():
    text = open(os.path.join(ROOT, "docs", "architecture.md"), encoding="utf-8").read()
    missing = [m for m in sorted(SOURCES)
               if _within(m, "engine", "plugins") and m not in ("engine", "plugins")
               and not _within(m, "plugins.api", "plugins.datasets", "engine.mock")
               and f"`{m.replace('.', '/')}.py`" not in text and f"`{m}`" not in text]
    assert not missing, f"docs/architecture.md says nothing of: {missing}"


@pytest.mark.parametrize("module, text, found", [
    ("engine.worker", "def f():\n    from plugins import registry\n", "engine.worker imports plugins.registry"),
    ("engine.mock.cli", "from ..records import Job\n", "engine.mock.cli imports engine.records"),
    ("analysis.loader", "from engine import runner\n", "analysis.loader imports engine.runner"),
    ("plugins.api.openai", "import plugins.registry\n", "plugins.api.openai imports plugins.registry"),
    ("engine.records", "from engine.store import DB_NAME\n", "engine.records imports engine.store"),
])
def test_the_checker_finds_an_import_against_the_direction(tmp_path, monkeypatch, module, text, found):
    """The rules are only as good as the reading of the imports (relative
    ones, those inside functions, `from package import module`)."""
    (tmp_path / "m.py").write_text(text)
    monkeypatch.setitem(SOURCES, module, str(tmp_path / "m.py"))
    assert any(found in p for p in _violations(module)), _violations(module)


def test_the_checker_finds_private_names(tmp_path, monkeypatch):
    (tmp_path / "m.py").write_text("from engine.worker import _thread_loop\nimport engine.transport as t\n"
                                   "from engine import derive\nt._causes\nderive._one_line\n"
                                   "from .mock import config\nfrom .mock.config import MockConfig\n")
    monkeypatch.setitem(SOURCES, "engine.pool", str(tmp_path / "m.py"))
    assert set(_private_uses("engine.pool")) == {("engine.worker", "_thread_loop"),
                                                ("engine.transport", "_causes"), ("engine.derive", "_one_line")}
    # and our own modules' innocent lines are not taken for one
    (tmp_path / "m.py").write_text("from .mock import config\nconfig.MockConfig\nself._x\n")
    assert list(_private_uses("engine.pool")) == []


@pytest.mark.parametrize("pool_path", ["engine.pool.WorkerPool", "engine.ray_pool.RayPool"])
def test_both_pools_keep_the_pool_contract(pool_path):
    """Every member of engine.pool_api.Pool exists on both pools, methods
    with the same parameters (ray_pool imports ray only inside functions)."""
    import importlib

    from engine.pool_api import Pool

    module, name = pool_path.rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    for member, declared in vars(Pool).items():
        if member.startswith("_"):
            continue
        assert hasattr(cls, member) or member in inspect.get_annotations(Pool) and member in _assigned(cls), \
            f"{pool_path} has no {member}"
        if inspect.isfunction(declared):
            want = list(inspect.signature(declared).parameters)
            have = list(inspect.signature(getattr(cls, member)).parameters)
            assert have == want, f"{pool_path}.{member}{have} is not Pool.{member}{want}"
        elif isinstance(declared, property):
            assert isinstance(getattr(cls, member), property), f"{pool_path}.{member} is not a property"
    for attribute in inspect.get_annotations(Pool):
        assert attribute in _assigned(cls), f"{pool_path} never sets self.{attribute}"


def _assigned(cls) -> set[str]:
    """The attributes its __init__ sets on self."""
    tree = ast.parse(inspect.getsource(cls))
    return {t.attr for node in ast.walk(tree) if isinstance(node, (ast.Assign, ast.AnnAssign))
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"}
