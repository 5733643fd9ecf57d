"""Finds API and dataset plugins: entry points (through stevedore) and
classes registered with the decorators in modules given by --plugin-module.

The consumer owns the namespaces `servebench.api` and `servebench.datasets`;
built-ins are registered there by our own setup.cfg, exactly as third-party
packages register theirs, so nothing depends on some `__init__` importing a
module.  A failure names the plugin, its package and the cause, and lists the
names that did load.
"""
from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import os
import sys
from dataclasses import dataclass

from stevedore import ExtensionManager

from engine.arguments import Arguments
from engine.errors import PluginError
from plugins.base import API_REGISTRY, DATASET_REGISTRY, ApiPluginBase, DatasetPluginBase

NAMESPACES = {"api": "servebench.api", "dataset": "servebench.datasets"}
_BASES = {"api": ApiPluginBase, "dataset": DatasetPluginBase}
_DECORATED = {"api": API_REGISTRY, "dataset": DATASET_REGISTRY}
OWN_PACKAGE = "servebench"


@dataclass(frozen=True)
class PluginInfo:
    kind: str  # "api" or "dataset"
    name: str
    package: str  # distribution, or "module X" for --plugin-module classes
    version: str
    description: str
    cls: type | None = None
    error: str | None = None  # why it cannot be used


def _dist_of(entry_point) -> tuple[str, str]:
    """(distribution, version) that declares an entry point.  stevedore's
    cached entry points do not carry their distribution, so ask
    importlib.metadata which installed distribution declares it."""
    dist = getattr(entry_point, "dist", None)
    if dist is not None:
        return dist.metadata["Name"], dist.version
    return _declared_by(entry_point.group).get((entry_point.name, entry_point.value), ("?", "?"))


@functools.lru_cache(maxsize=None)
def _declared_by(group: str) -> dict[tuple[str, str], tuple[str, str]]:
    index = {}
    for dist in importlib.metadata.distributions():
        for ep in dist.entry_points:
            if ep.group == group:
                index[(ep.name, ep.value)] = (dist.metadata["Name"], dist.version)
    return index


def discover(kind: str) -> dict[str, PluginInfo]:
    """Every plugin of a kind, usable or not, by name."""
    found: dict[str, PluginInfo] = {}
    failures: list[PluginInfo] = []
    conflicts: dict[str, str] = {}

    def on_failure(_manager, entry_point, err):
        package, version = _dist_of(entry_point)
        cause = f"{type(err).__name__}: {err}".splitlines()[0]
        failures.append(PluginInfo(kind, entry_point.name, package, version, "", None,
                                   f"failed to load ({cause})"))

    def on_conflict(_namespace, name, extensions):
        packages = sorted({"%s %s" % _dist_of(ext.entry_point) for ext in extensions})
        conflicts[name] = " and ".join(packages)
        return extensions[0]

    manager = ExtensionManager(NAMESPACES[kind], on_load_failure_callback=on_failure,
                               conflict_resolver=on_conflict)
    for ext in manager.extensions:
        package, version = _dist_of(ext.entry_point)
        info = PluginInfo(kind, ext.name, package, version, _description(ext.plugin), ext.plugin)
        if not (isinstance(ext.plugin, type) and issubclass(ext.plugin, _BASES[kind])):
            info = _broken(info, f"{ext.entry_point.value} is not a {_BASES[kind].__name__} subclass")
        if ext.name in conflicts:
            info = _broken(info, f"the name '{ext.name}' is claimed by two packages: {conflicts[ext.name]};"
                                 " uninstall one of them")
        found[ext.name] = info
    for info in failures:
        found.setdefault(info.name, info)
    for name, cls in _DECORATED[kind].items():
        module = getattr(cls, "__module__", "?")
        if name in found and found[name].cls is not cls:
            # The user named this module on the command line: it wins, loudly.
            print(f"servebench: {kind} '{name}' from --plugin-module {module} overrides "
                  f"the one from {found[name].package}", file=sys.stderr)
        found[name] = PluginInfo(kind, name, f"module {module}", "-", _description(cls), cls)
    return found


def _broken(info: PluginInfo, error: str) -> PluginInfo:
    return PluginInfo(info.kind, info.name, info.package, info.version, info.description, None, error)


def _description(cls) -> str:
    text = getattr(cls, "description", "") or (cls.__doc__ or "")
    lines = [line.strip() for line in text.strip().splitlines()]
    return lines[0] if lines else ""


def get_class(kind: str, name: str) -> type:
    plugins = discover(kind)
    usable = sorted(n for n, p in plugins.items() if p.cls is not None)
    flag = "--api" if kind == "api" else "--dataset"
    info = plugins.get(name)
    if info is None:
        raise PluginError(f"unknown {flag} '{name}'; available: {', '.join(usable) or 'none'}")
    if info.cls is None:
        raise PluginError(f"{flag} '{name}' from {info.package} {info.version} {info.error}; "
                          f"available: {', '.join(usable) or 'none'}")
    return info.cls


def create(kind: str, name: str, param: Arguments):
    """An instance of the named plugin, constructed with the run's Arguments."""
    cls = get_class(kind, name)
    try:
        return cls(param)
    except PluginError:
        raise
    except Exception as err:  # a plugin's own bug: say whose, in one line
        cause = f"{type(err).__name__}: {err}".splitlines()[0]
        raise PluginError(f"{kind} plugin '{name}' ({cls.__module__}.{cls.__qualname__}) "
                          f"failed to start: {cause}") from err


def import_plugin_module(spec: str) -> None:
    """--plugin-module: an importable module name or a path to a .py file,
    whose decorated classes then join the registry."""
    try:
        if spec.endswith(".py") or os.sep in spec:
            if not os.path.isfile(spec):
                raise PluginError(f"--plugin-module '{spec}' not found: give a .py file or a module name")
            name = "servebench_user_" + os.path.splitext(os.path.basename(spec))[0]
            module_spec = importlib.util.spec_from_file_location(name, spec)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            module_spec.loader.exec_module(module)
        else:
            importlib.import_module(spec)
    except PluginError:
        raise
    except Exception as err:
        cause = f"{type(err).__name__}: {err}".splitlines()[0]
        raise PluginError(f"--plugin-module '{spec}' failed to import: {cause}") from err
