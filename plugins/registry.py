"""The plugin registry, the one place that knows where plugins come from:
entry points (through stevedore) and classes registered with the decorators
(`register_api` / `register_dataset`), in modules given by --plugin-module.

A run loads the one plugin it names with stevedore's DriverManager, which
imports that plugin's module only; `servegauge plugins` (and an error, which
lists the plugins that do load) lists them all with an ExtensionManager.

The consumer owns the namespaces `servegauge.api` and `servegauge.datasets`;
built-ins are registered there by our own setup.cfg, exactly as third-party
packages register theirs, so nothing depends on some `__init__` importing a
module.  The groups of the project's former name, `servebench.api` and
`servebench.datasets`, are read too, so plugin packages installed before the
rename keep loading; entries there declared by a distribution named
`servebench` (this project's stale metadata, or the unrelated PyPI tool of
that name) are not plugins of ours and are passed over.  A failure names
the plugin, its package and the cause, and lists the names that did load.
"""
from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import re
import sys
from dataclasses import dataclass

from stevedore import DriverManager, ExtensionManager
from stevedore.exception import MultipleMatches, NoMatches

from engine.arguments import Arguments
from engine.errors import PluginError, UsageError
# register_api / register_dataset: evalscope's import location (plugins.registry) works too
from plugins.base import CONSTRUCTING, ApiPluginBase, DatasetPluginBase, register_api, register_dataset  # noqa: F401

NAMESPACES = {"api": "servegauge.api", "dataset": "servegauge.datasets"}
LEGACY_NAMESPACES = {"api": "servebench.api", "dataset": "servebench.datasets"}
LEGACY_PACKAGE = "servebench"
_BASES = {"api": ApiPluginBase, "dataset": DatasetPluginBase}
OWN_PACKAGE = "servegauge"

# Classes registered with the decorators, by kind and name.  Filled when the
# module defining them is imported (a --plugin-module, or a plugin package's
# own module that stevedore loads).
API_REGISTRY: dict[str, type] = {}
DATASET_REGISTRY: dict[str, type] = {}
_DECORATED = {"api": API_REGISTRY, "dataset": DATASET_REGISTRY}


def register(kind: str, name: str | list[str]):
    """The class decorator behind register_api / register_dataset."""
    names = [name] if isinstance(name, str) else list(name)
    registry = _DECORATED[kind]

    def decorator(cls: type) -> type:
        for n in names:
            registry[n] = cls
        return cls

    return decorator


@dataclass(frozen=True)
class PluginInfo:
    kind: str  # "api" or "dataset"
    name: str
    package: str  # distribution, or "module X" for --plugin-module classes
    version: str
    description: str
    cls: type | None = None
    error: str | None = None  # why it cannot be used


def _dists_of(entry_point) -> list[tuple[str, str]]:
    """[(distribution, version)] that declare an entry point: stevedore's
    cached entry points do not carry their distribution, so ask
    importlib.metadata which installed distributions declare it."""
    dist = getattr(entry_point, "dist", None)
    if dist is not None:
        return [(dist.metadata["Name"], dist.version)]
    return _declared_by(entry_point.group).get((entry_point.name, entry_point.value), [("?", "?")])


def _dist_of(entry_point) -> tuple[str, str]:
    return _dists_of(entry_point)[0]


@functools.lru_cache(maxsize=None)
def _declared_by(group: str) -> dict[tuple[str, str], list[tuple[str, str]]]:
    # entry_points() reads only the entry-point files and keeps the first of
    # a distribution found twice on sys.path (as imports do); the metadata of
    # the few distributions that declare one of ours is read after.  Reading
    # every installed distribution's metadata cost 0.3 s of each run's start.
    index: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for ep in importlib.metadata.entry_points(group=group):
        dist = ep.dist
        metadata = dist.metadata if dist is not None else None
        name_version = (metadata["Name"] or "?", metadata["Version"] or "?") if metadata is not None else ("?", "?")
        index.setdefault((ep.name, ep.value), []).append(name_version)
    return index


def _legacy_declared(kind: str) -> bool:
    """True when a distribution other than one named `servebench` declares
    an entry point in the former group: then that group is loaded too."""
    return any(_normal(dist) != LEGACY_PACKAGE
               for dists in _declared_by(LEGACY_NAMESPACES[kind]).values() for dist, _ in dists)


def _stale(entry_point, package: str) -> bool:
    """An entry in a former group declared by a distribution named `servebench`."""
    return _stale_in(getattr(entry_point, "group", None), package)


def _stale_in(group: str | None, package: str) -> bool:
    return group in LEGACY_NAMESPACES.values() and _normal(package) == LEGACY_PACKAGE


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# (kind, name) -> (class, --plugin-module spec): classes that a module named
# on the command line registered with the decorators.  Those win over an
# entry point of the same name (loudly); classes that the decorators register
# while stevedore imports a package's module never do.
_FROM_PLUGIN_MODULES: dict[tuple[str, str], tuple[type, str]] = {}
_WARNED: set[tuple[str, str]] = set()


def discover(kind: str) -> dict[str, PluginInfo]:
    """Every plugin of a kind, usable or not, by name."""
    # name -> [(distribution key, entry point value, PluginInfo)], in the order found
    claims: dict[str, list[tuple[str, str, PluginInfo]]] = {}

    def claim(entry_point, info: PluginInfo) -> None:
        claims.setdefault(entry_point.name, []).append((_normal(info.package), entry_point.value, info))

    def on_failure(_manager, entry_point, err):
        package, version = _dist_of(entry_point)
        if _stale(entry_point, package):
            return
        cause = " ".join(f"{type(err).__name__}: {err}".split())[:300]
        claim(entry_point, PluginInfo(kind, entry_point.name, package, version, "", None,
                                      f"failed to load ({cause})"))

    extensions = ExtensionManager(NAMESPACES[kind], on_load_failure_callback=on_failure).extensions
    if _legacy_declared(kind):
        extensions = extensions + ExtensionManager(LEGACY_NAMESPACES[kind],
                                                   on_load_failure_callback=on_failure).extensions
    for ext in extensions:
        package, version = _dist_of(ext.entry_point)
        if _stale(ext.entry_point, package):
            continue
        info = PluginInfo(kind, ext.name, package, version, _description(ext.plugin), ext.plugin)
        if not (isinstance(ext.plugin, type) and issubclass(ext.plugin, _BASES[kind])):
            info = _broken(info, f"is not usable: {ext.entry_point.value} is not a {_BASES[kind].__name__} subclass")
        claim(ext.entry_point, info)

    found = {name: resolve(entries) for name, entries in claims.items()}
    for (k, name), (cls, spec) in _FROM_PLUGIN_MODULES.items():
        if k != kind:
            continue
        if name in found and found[name].cls is not cls and (kind, name) not in _WARNED:
            # The user named this module on the command line: it wins, loudly.
            _WARNED.add((kind, name))
            print(f"servegauge: {kind} '{name}' from --plugin-module {spec} overrides "
                  f"the one from {found[name].package}", file=sys.stderr)
        found[name] = PluginInfo(kind, name, f"--plugin-module {spec}", "-", _description(cls), cls)
    for name, cls in _DECORATED[kind].items():
        # Registered by a decorator in a module a package's entry point
        # imported (e.g. a ported evalscope plugin that also uses
        # @register_api): usable under that name unless the name is taken.
        if name not in found:
            found[name] = PluginInfo(kind, name, f"module {getattr(cls, '__module__', '?')}", "-",
                                     _description(cls), cls)
    return found


def resolve(entries: list[tuple[str, str, PluginInfo]]) -> PluginInfo:
    """The plugin for one name from its claims [(distribution key, entry
    point value, info)].  The same distribution and value seen twice (an
    editable install visible from a venv made with --system-site-packages,
    a stale egg-info beside the source) is one plugin; two packages claiming
    the name is an error that names both: never a silent override."""
    unique: dict[tuple[str, str], PluginInfo] = {}
    for dist_key, value, info in entries:
        unique.setdefault((dist_key, value), info)
    infos = list(unique.values())
    if len(infos) == 1:
        return infos[0]
    packages = " and ".join(sorted({f"{i.package} {i.version}" for i in infos}))
    first = next((i for i in infos if _normal(i.package) == OWN_PACKAGE), infos[0])
    return _broken(first, f"is claimed by more than one package: {packages}; uninstall one of them "
                          "or rename its entry point")


def _broken(info: PluginInfo, error: str) -> PluginInfo:
    return PluginInfo(info.kind, info.name, info.package, info.version, info.description, None, error)


def _description(cls) -> str:
    text = getattr(cls, "description", "") or (cls.__doc__ or "")
    lines = [line.strip() for line in text.strip().splitlines()]
    return lines[0] if lines else ""


def get_class(kind: str, name: str) -> type:
    return _get_info(kind, name).cls


def _get_info(kind: str, name: str) -> PluginInfo:
    """The named plugin, usable, or a PluginError naming it, its package, the
    cause and the plugins that do load."""
    info = _named(kind, name)
    if info is not None and info.cls is not None:
        return info
    plugins = discover(kind)  # only to say what is there instead
    usable = _usable(plugins)
    flag = "--api" if kind == "api" else "--dataset"
    if info is None:
        info = plugins.get(name)  # a name registered by a decorator in a package's module
        if info is not None and info.cls is not None:
            return info
    if info is None:
        raise PluginError(f"unknown {flag} '{name}'; available: {', '.join(usable) or 'none'}"
                          " (see `servegauge plugins`)")
    raise PluginError(f"{flag} '{name}' from {_origin(info)} {info.error}; "
                      f"available: {', '.join(usable) or 'none'}")


def _usable(plugins: dict[str, PluginInfo]) -> list[str]:
    return sorted(n for n, p in plugins.items() if p.cls is not None)


def _named(kind: str, name: str) -> PluginInfo | None:
    """One plugin by name, importing no other plugin's module; None if no
    entry point, --plugin-module or decorator registered by now claims it."""
    if (kind, name) in _FROM_PLUGIN_MODULES:
        cls, spec = _FROM_PLUGIN_MODULES[(kind, name)]
        if (kind, name) not in _WARNED and _claims(kind, name):
            installed = _from_entry_point(kind, name)
            if installed.cls is not cls:
                # The user named this module on the command line: it wins, loudly.
                _WARNED.add((kind, name))
                print(f"servegauge: {kind} '{name}' from --plugin-module {spec} overrides "
                      f"the one from {installed.package}", file=sys.stderr)
        return PluginInfo(kind, name, f"--plugin-module {spec}", "-", _description(cls), cls)
    if _claims(kind, name):
        return _from_entry_point(kind, name)
    cls = _DECORATED[kind].get(name)
    if cls is not None:
        return PluginInfo(kind, name, f"module {getattr(cls, '__module__', '?')}", "-", _description(cls), cls)
    return None


def _groups(kind: str) -> list[str]:
    return [NAMESPACES[kind]] + ([LEGACY_NAMESPACES[kind]] if _legacy_declared(kind) else [])


def _claims(kind: str, name: str) -> list[tuple[str, str, str, str]]:
    """[(group, entry point value, distribution, version)] of the entry points
    named `name`, from the installed metadata alone (nothing is imported)."""
    found = []
    for group in _groups(kind):
        for (ep_name, value), dists in _declared_by(group).items():
            if ep_name == name:
                found += [(group, value, dist, version) for dist, version in dists if not _stale_in(group, dist)]
    return found


def _from_entry_point(kind: str, name: str) -> PluginInfo:
    """The plugin of the entry point named `name`, loaded with stevedore's
    DriverManager (which imports that one module); unusable, with the
    reason, if two packages claim the name or its module fails to load."""
    claims = _claims(kind, name)
    info = resolve([(_normal(dist), value, PluginInfo(kind, name, dist, version, "", None))
                    for _, value, dist, version in claims])
    if info.error is not None:  # claimed by two packages: load neither
        return info
    group = next(g for g, _, dist, _ in claims if dist == info.package)
    failures: list[BaseException] = []
    try:
        manager = DriverManager(group, name, on_load_failure_callback=lambda _m, _ep, err: failures.append(err),
                                on_missing_entrypoints_callback=None)
    except NoMatches:
        if not failures:
            return _broken(info, "was not found by stevedore")
        cause = " ".join(f"{type(failures[0]).__name__}: {failures[0]}".split())[:300]
        return _broken(info, f"failed to load ({cause})")
    except MultipleMatches as err:  # stevedore saw more than the metadata said
        return _broken(info, f"is claimed by more than one entry point: {err}")
    cls = manager.driver
    info = PluginInfo(kind, name, info.package, info.version, _description(cls), cls)
    if not (isinstance(cls, type) and issubclass(cls, _BASES[kind])):
        info = _broken(info, f"is not usable: {manager.extensions[0].entry_point.value} is not a "
                             f"{_BASES[kind].__name__} subclass")
    return info


def _origin(info: PluginInfo) -> str:
    return info.package if info.version in ("", "-") else f"{info.package} {info.version}"


def create(kind: str, name: str, param: Arguments):
    """An instance of the named plugin, constructed with the run's Arguments."""
    info = _get_info(kind, name)
    cls = info.cls
    try:
        return construct(kind, cls, param)
    except UsageError:  # the plugin's own message for the user (a missing flag, a bad file)
        raise
    except Exception as err:  # a plugin's own bug or a missing requirement: say whose, in one line
        cause = " ".join(f"{type(err).__name__}: {err}".split())[:300]
        raise PluginError(f"{kind} plugin '{name}' ({cls.__module__}.{cls.__qualname__} from {_origin(info)}) "
                          f"failed to start: {cause}; available: {', '.join(_usable(discover(kind)))}") from err


def construct(kind: str, cls: type, param: Arguments):
    """`cls(...)` with what its __init__ asks for: the run's Arguments (the
    SDK's signature, whatever the parameter is called), the tokenizer path
    for evalscope's first documented signature `__init__(self, model_path)`
    (what evalscope passed it), or nothing.  The instance has `param` (and,
    for an API plugin, `model_path`) even if its __init__ set neither."""
    token = CONSTRUCTING.set(param)
    try:
        plugin = cls(*_init_args(cls, param))
    finally:
        CONSTRUCTING.reset(token)
    attrs = {"param": param, "model_path": param.tokenizer_path} if kind == "api" else {"query_parameters": param}
    for attr, value in attrs.items():
        if getattr(plugin, attr, None) is None:
            setattr(plugin, attr, value)
    return plugin


def _init_args(cls: type, param: Arguments) -> tuple:
    try:
        params = list(inspect.signature(cls).parameters.values())
    except (TypeError, ValueError):  # no signature to read: the SDK's
        return (param,)
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
    if not positional:
        return ()
    return (param.tokenizer_path,) if positional[0].name == "model_path" else (param,)


def import_plugin_module(spec: str) -> None:
    """--plugin-module: an importable module name or a path to a .py file,
    whose decorated classes then join the registry."""
    before = {kind: dict(reg) for kind, reg in _DECORATED.items()}
    try:
        if spec.endswith(".py") or os.sep in spec:
            if not os.path.isfile(spec):
                raise PluginError(f"--plugin-module '{spec}' not found: give a .py file or a module name")
            name = "servegauge_user_" + re.sub(r"\W", "_", os.path.splitext(os.path.basename(spec))[0])
            module_spec = importlib.util.spec_from_file_location(name, spec)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            try:
                module_spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(name, None)
                raise
        else:
            importlib.import_module(spec)
    except PluginError:
        raise
    except Exception as err:
        cause = " ".join(f"{type(err).__name__}: {err}".split())[:300]
        raise PluginError(f"--plugin-module '{spec}' failed to import: {cause}") from err
    registered = 0
    for kind, reg in _DECORATED.items():
        for name, cls in reg.items():
            if before[kind].get(name) is not cls:
                _FROM_PLUGIN_MODULES[(kind, name)] = (cls, spec)
                registered += 1
    if not registered:
        print(f"servegauge: --plugin-module {spec} registered no plugin (decorate a class with "
              "@register_api('name') or @register_dataset('name'))", file=sys.stderr)
