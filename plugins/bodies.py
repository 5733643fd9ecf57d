"""From a dataset item to a request body: the item's text, and the body
--query-template makes of it."""
from __future__ import annotations

import json
from typing import Any

from engine.errors import UsageError


def fill_query_template(template: str, model: str, prompt: str) -> dict:
    """--query-template: %m and %p stand inside JSON strings, so they are
    replaced by JSON-escaped text, and the result must be a JSON object."""
    text = template.replace("%m", json.dumps(model)[1:-1]).replace("%p", json.dumps(prompt)[1:-1])
    try:
        body = json.loads(text)
    except ValueError as e:
        raise UsageError(f"--query-template is not valid JSON after substitution: {e}") from None
    if not isinstance(body, dict):
        raise UsageError("--query-template must be a JSON object")
    return body


def messages_text(item: Any) -> str:
    """The text of a dataset item: a plain string, or the text parts of a
    list of chat messages (images and other parts are not text)."""
    if isinstance(item, str):
        return item
    parts = []
    for message in item or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [c.get("text", "") for c in content if isinstance(c, dict) and isinstance(c.get("text"), str)]
    return "\n".join(parts)
