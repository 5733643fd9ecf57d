"""Decoding the database's base64(pickle) columns without running code.

`request` and `response_messages` are pickles (DESIGN.md).  A database may
come from someone else, and `pickle.loads` on it would run whatever the
pickle names.  This unpickler admits plain builtin containers and scalars
only; any other global (os.system, a class, a reduce to a function) is
refused before it is looked up, so nothing of it ever runs.
"""
from __future__ import annotations

import base64
import binascii
import builtins
import io
import pickle
from typing import Any

# Plain data only.  Protocol 2+ pickles of these types use opcodes, not
# globals, except for set/frozenset/bytes under the older protocols, which
# name them through builtins.
_ALLOWED = {
    ("builtins", name): getattr(builtins, name)
    for name in ("dict", "list", "tuple", "str", "bytes", "int", "float", "bool", "set", "frozenset")
}
_ALLOWED[("builtins", "NoneType")] = type(None)


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle names something other than plain builtin data."""


class RestrictedUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` that resolves only the globals in `_ALLOWED`."""

    def find_class(self, module: str, name: str) -> Any:  # noqa: D401 - pickle API
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"refused global {module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refused persistent id")


def safe_loads(data: bytes) -> Any:
    """Unpickle plain data; raise `pickle.UnpicklingError` for anything else."""
    return RestrictedUnpickler(io.BytesIO(data)).load()


def decode_b64_pickle(text: str | bytes) -> Any:
    """Decode one `base64(pickle.dumps(value))` cell with the restricted unpickler.

    Raises ValueError (with the reason) when the cell is not valid base64,
    not a pickle, or names anything but plain builtin data.
    """
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise ValueError(f"not base64: {exc}") from None
    try:
        return safe_loads(raw)
    except UnsafePickleError as exc:
        raise ValueError(f"unsafe pickle: {exc}") from None
    except Exception as exc:  # truncated/garbled pickles raise many types
        raise ValueError(f"not a pickle: {type(exc).__name__}: {exc}") from None
