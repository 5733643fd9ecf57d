"""`python -m engine` puts the current folder first on sys.path, and the
import packages' names (`analysis`, `plugins`) are generic: run from a folder
holding its own `analysis/`, it would import that one and fail only after
the run.  `refuse_shadowed()` stops at start-up instead, in one line."""
from __future__ import annotations

import importlib.util
import os
import sys

OWN_PACKAGES = ("analysis", "plugins")
EXIT_USAGE = 2


def shadowed() -> str | None:
    """Why one of our packages would be imported from somewhere other than
    beside this `engine` package, or None when all is well."""
    home = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    for name in OWN_PACKAGES:
        expected = os.path.join(home, name)
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            return f"servegauge's own '{name}' package is missing beside {os.path.join(home, 'engine')}: reinstall"
        if spec.origin not in (None, "namespace"):  # a package's __init__.py, or a module file
            found = os.path.realpath(spec.origin)
            found = os.path.dirname(found) if os.path.basename(found) == "__init__.py" else found
        else:  # a namespace package: a folder without __init__.py
            found = os.path.realpath(next(iter(spec.submodule_search_locations or []), "?"))
        if found != expected:
            return (f"'{name}' would be imported from {found}, not servegauge's own {expected} "
                    f"(python -m engine imports from the current folder first): run the `servegauge` "
                    f"command, or run from another folder")
    return None


def refuse_shadowed() -> None:
    problem = shadowed()
    if problem:
        print(f"servegauge: error: {problem}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
