"""The non-generating endpoints: POST /v1/embeddings and POST /v1/rerank.

Embeddings (OpenAI's shape, as vLLM serves it): `input` is a string, a list
of strings, a list of token ids or a list of such lists; one embedding per
input, in order.  `encoding_format` "float" (the default) gives lists of
floats, "base64" the little-endian float32 bytes base64-encoded, which is
what the official `openai` client asks for unless told otherwise.

Rerank (vLLM's shape, which Jina's and Cohere's clients read too): `query`
and `documents` (strings, or objects with a `text`), optional `top_n` and
`return_documents`; results ordered by relevance_score, highest first.

Both answer in one body, due `--ttft-ms` after arrival (the "prefill" of
every input at once).  Vectors and scores are deterministic functions of the
text, so a client can check them; prompt tokens count words (engine.mock.tokens).
"""
from __future__ import annotations

import base64
import struct
import zlib
from typing import TYPE_CHECKING, Any

from .config import MockConfig
from .plan import BadRequest, ModelNotFound, ResponsePlan, json_plan, parse_json_object
from .tokens import count_prompt

if TYPE_CHECKING:
    from .http import Request
    from .truth import TruthRecord

EMBEDDINGS_PATH = "/v1/embeddings"
RERANK_PATHS = ("/v1/rerank", "/rerank", "/v2/rerank")  # vLLM serves all three
EMBEDDING_DIM = 16


def _model(body: dict[str, Any], cfg: MockConfig) -> str:
    model = body.get("model", cfg.model_name)
    if cfg.served_model is not None and model != cfg.served_model:
        raise ModelNotFound(model)
    if not isinstance(model, str):
        raise BadRequest("'model' must be a string")
    return model


def _inputs(value: Any) -> list[Any]:
    """The separate inputs of an embeddings request (each is embedded alone)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return [value]  # one input given as token ids
        if all(isinstance(v, str) or (isinstance(v, list) and v) for v in value):
            return list(value)
    raise BadRequest("'input' must be a non-empty string, a list of strings or a list of token ids")


def vector(item: Any) -> list[float]:
    """The mock's embedding of one input: EMBEDDING_DIM values in [-1, 1)
    drawn from a CRC of its text, so equal inputs embed equally."""
    seed = zlib.crc32(repr(item).encode())
    out = []
    for i in range(EMBEDDING_DIM):
        seed = zlib.crc32(b"%d" % i, seed)
        out.append(seed / 2**31 - 1.0)
    return out


def embeddings(req: Request, cfg: MockConfig, rec: TruthRecord | None) -> ResponsePlan:
    body = parse_json_object(req.body)
    if "input" not in body:
        raise BadRequest("'input' is required")
    model = _model(body, cfg)
    inputs = _inputs(body["input"])
    fmt = body.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise BadRequest(f"encoding_format must be 'float' or 'base64', got {fmt!r}")
    prompt_tokens = sum(count_prompt(item) for item in inputs)
    if rec is not None:
        rec.prompt_tokens, rec.completion_tokens = prompt_tokens, 0
    data = []
    for i, item in enumerate(inputs):
        values = vector(item)
        embedding: Any = values
        if fmt == "base64":
            embedding = base64.b64encode(struct.pack("<%df" % len(values), *values)).decode("ascii")
        data.append({"object": "embedding", "index": i, "embedding": embedding})
    reply = {"id": "embd-" + req.request_id, "object": "list", "created": int(req.arrival), "model": model,
             "data": data, "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens,
                                     "completion_tokens": 0, "prompt_tokens_details": None}}
    return json_plan(200, reply, cfg.ttft_s, notes={"tokens": (prompt_tokens, 0)})  # for /metrics' counters


def _document_text(doc: Any) -> str:
    if isinstance(doc, str):
        return doc
    if isinstance(doc, dict) and isinstance(doc.get("text"), str):
        return doc["text"]
    raise BadRequest("each of 'documents' must be a string or an object with a 'text' string")


def score(query: str, document: str) -> float:
    """Relevance in [0, 1]: the share of the query's words the document has
    (so a test can predict the order), nudged by a CRC to break ties."""
    words = set(query.lower().split())
    have = set(document.lower().split())
    overlap = len(words & have) / len(words) if words else 0.0
    return round(0.9 * overlap + 0.1 * (zlib.crc32(document.encode()) / 2**32), 6)


def rerank(req: Request, cfg: MockConfig, rec: TruthRecord | None) -> ResponsePlan:
    body = parse_json_object(req.body)
    query, documents = body.get("query"), body.get("documents")
    if not isinstance(query, str):
        raise BadRequest("'query' must be a string")
    if not isinstance(documents, list) or not documents:
        raise BadRequest("'documents' must be a non-empty list")
    model = _model(body, cfg)
    texts = [_document_text(d) for d in documents]
    top_n = body.get("top_n")
    if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1):
        raise BadRequest(f"top_n must be a positive integer, got {top_n!r}")
    # vLLM scores each (query, document) pair: the query is read once per document
    prompt_tokens = sum(count_prompt(query) + count_prompt(t) for t in texts)
    if rec is not None:
        rec.prompt_tokens, rec.completion_tokens = prompt_tokens, 0
    ranked = sorted(range(len(texts)), key=lambda i: -score(query, texts[i]))[:top_n]
    results = []
    for i in ranked:
        result: dict[str, Any] = {"index": i, "relevance_score": score(query, texts[i])}
        if body.get("return_documents", True):
            result["document"] = {"text": texts[i]}
        results.append(result)
    reply = {"id": "rerank-" + req.request_id, "model": model, "usage": {"total_tokens": prompt_tokens},
             "results": results}
    return json_plan(200, reply, cfg.ttft_s, notes={"tokens": (prompt_tokens, 0)})  # for /metrics' counters
