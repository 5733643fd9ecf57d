"""`servegauge plugins`: every API and dataset plugin, where it comes from,
and why it cannot be used if it cannot."""
from __future__ import annotations

from engine.usage import CommandParser
from plugins import registry


def main(argv: list[str]) -> int:
    parser = CommandParser(prog="servegauge plugins", description=__doc__)
    parser.add_argument("--plugin-module", action="append", default=[], metavar="NAME_OR_FILE.py",
                        help="also import this module's registered plugins")
    parser.add_argument("--debug", action="store_true")
    ns = parser.parse(argv)
    if ns is None:  # --help
        return 0
    for spec in ns.plugin_module:
        registry.import_plugin_module(spec)
    for kind, title in (("api", "API plugins (--api)"), ("dataset", "Dataset plugins (--dataset)")):
        print(title)
        plugins = registry.discover(kind)
        origins = {name: f"{p.package} {p.version}".strip() for name, p in plugins.items()}
        width = max((len(n) for n in plugins), default=4)
        origin_width = max((len(o) for o in origins.values()), default=8)
        for name in sorted(plugins):
            info = plugins[name]
            text = info.description if info.cls is not None else f"UNUSABLE: {info.error}"
            print(f"  {name:<{width}}  {origins[name]:<{origin_width}}  {text}")
        print()
    return 0
