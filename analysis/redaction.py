"""Secrets out of a run's arguments before they reach a report file."""
from __future__ import annotations

import re
from typing import Any

from engine.arguments import REDACTED, SECRET_HEADERS

# the secret headers, and the argument names that hold a secret
SECRET_KEYS = SECRET_HEADERS | {"api_key", "apikey", "password", "secret", "token"}
_SECRET_NORMAL = frozenset(k.replace("_", "-") for k in SECRET_KEYS)


def redact(value: Any) -> Any:
    """Drop secrets from the run's arguments, whatever the nesting."""
    if isinstance(value, dict):
        return {k: (REDACTED if str(k).lower().replace("_", "-") in _SECRET_NORMAL and v not in (None, "", REDACTED)
                    else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, str) and re.match(r"(?i)\s*bearer\s+\S", value):
        return REDACTED
    return value
