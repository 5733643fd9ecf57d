"""What `ApiPluginBase.parse_responses` receives: a list of `Payload`s.

Plugins are written three ways, and each payload serves all of them:

* as text, like servegauge's own plugins: `json.loads(p)`, `p.startswith(...)`,
  `p == '...'`: a Payload *is* a `str` (a subclass), the event's JSON text;
* as bytes, like evalscope perf's documentation says (`List[bytes]`):
  `p.decode('utf-8')` returns that text, and `json.loads` accepts it;
* as the parsed JSON object, like evalscope 1.x passes them:
  `p.get('usage')`, `p['choices'][0]`, `p.keys()`, `p.items()`, `p.values()`.
  The text is parsed on the first such call, once per payload; each payload
  parses to objects of its own, which the plugin may change.

Where the two readings clash, the text wins: `len(p)`, iteration, `in` and
`p[0]` / `p[1:]` are the str's; a str key (`p['usage']`) reads the object.
A Payload pickles, copies and compares as the plain str it holds, so nothing
of this type reaches the result database.
"""
from __future__ import annotations

import json
from typing import Any

_UTF8 = frozenset(("utf-8", "utf8", "UTF-8", "UTF8", "utf_8"))


class Payload(str):
    """One SSE `data:` payload (or one whole non-streamed body) as text,
    also readable as bytes (`decode`) and as its parsed JSON (`get`, `[key]`)."""

    def json(self) -> Any:
        """The parsed JSON (parsed on the first call, then kept); raises
        ValueError if the payload is not JSON."""
        try:
            return self.__dict__["_json"]
        except KeyError:
            value = self.__dict__["_json"] = json.loads(self)
            return value

    # --- bytes-like ----------------------------------------------------------
    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        """The text, as bytes.decode would give it for the body's UTF-8 bytes."""
        if encoding in _UTF8:
            return str.__str__(self)
        return self.encode("utf-8").decode(encoding, errors)

    # --- the parsed JSON object -------------------------------------------------
    def __getitem__(self, key):
        if isinstance(key, str):
            return self.json()[key]
        return str.__getitem__(self, key)

    def get(self, key: Any, default: Any = None) -> Any:
        return self.json().get(key, default)

    def keys(self):
        return self.json().keys()

    def values(self):
        return self.json().values()

    def items(self):
        return self.json().items()

    # --- plain str to the outside -------------------------------------------------
    def __reduce__(self):
        return str, (str.__str__(self),)


def as_payloads(events) -> list[Payload]:
    """The list parse_responses gets: one Payload per event, in order."""
    return list(map(Payload, events))
