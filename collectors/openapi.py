"""The ingest API's OpenAPI document, served at `GET /openapi.json`.

The ingest handler reads the raw body itself (size limits, gzip, one validating parse), so
FastAPI cannot derive the request schema from a function signature. This module writes the
document from the wire models (`wire.IngestBatch`) instead, so that clients in other languages
and fuzzers (schemathesis in tests/test_fuzz_ingest.py) read the contract the server enforces:
the body schema, every status the API answers with, the error shape and `Retry-After`.

The document depends on the configuration: the bearer scheme and 401/403 appear only when
tokens are configured, 429 only with a rate limit.
"""

from __future__ import annotations

from typing import Any

from .wire import IngestBatch

__all__ = ["ingest_openapi"]

_REF = "#/components/schemas/{model}"

_ERROR = {
    "type": "object",
    "description": "Why a request was refused: a one-line `error` and where (`loc`) each "
    "problem is, e.g. `predictions.3.features.age`.",
    "required": ["error", "details"],
    "properties": {
        "error": {"type": "string", "minLength": 1},
        "details": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["loc", "msg"],
                "properties": {"loc": {"type": "string"}, "msg": {"type": "string"}},
            },
        },
    },
}

_COUNTS = {
    "type": "object",
    "required": ["predictions", "labels", "samples"],
    "properties": {
        k: {"type": "integer", "minimum": 0} for k in ("predictions", "labels", "samples")
    },
    "additionalProperties": False,
}

_RESULT = {
    "type": "object",
    "description": "`accepted`: items in the batch; `stored`: items new to the store (a "
    "retried batch stores nothing twice).",
    "required": ["accepted", "stored"],
    "properties": {
        "accepted": {"$ref": "#/components/schemas/Counts"},
        "stored": {"$ref": "#/components/schemas/Counts"},
    },
    "additionalProperties": False,
}

_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before sending the batch again.",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
}


def _error(description: str, *, retry: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if retry:
        response["headers"] = _RETRY_AFTER
    return response


def ingest_openapi(*, auth: bool, rate_limited: bool) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the ingest API as configured (`auth`: tokens configured;
    `rate_limited`: a rate limit configured)."""
    batch = IngestBatch.model_json_schema(ref_template=_REF)
    schemas: dict[str, Any] = dict(batch.pop("$defs", {}))
    schemas.update(IngestBatch=batch, Error=_ERROR, Counts=_COUNTS, IngestResult=_RESULT)
    responses: dict[str, Any] = {
        "200": {
            "description": "The batch was stored whole.",
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/IngestResult"}}
            },
        },
        "400": _error("The body is not JSON, not UTF-8, or not valid gzip."),
        "413": _error("The body, its decompressed size or its number of items is over a limit."),
        "415": _error("A Content-Encoding other than gzip or identity."),
        "422": _error(
            "The batch breaks the schema, or holds a record the store refuses (a timestamp "
            "more than a day ahead, an over-long name); `details` names each problem. "
            "Nothing of the batch was stored."
        ),
        "503": _error(
            "The store cannot write now (locked, disk full, down); nothing was stored.",
            retry=True,
        ),
    }
    if auth:
        responses["401"] = _error("No bearer token, or an unknown one.")
        responses["403"] = _error("The token may not write a model the batch holds.")
    if rate_limited:
        responses["429"] = _error("Over the rate limit.", retry=True)
    ingest: dict[str, Any] = {
        "summary": "Store a batch of predictions, labels and samples, all or nothing.",
        "description": "The body may be gzip-compressed (`Content-Encoding: gzip`). Records "
        "whose id is already stored are ignored, so retrying a batch is harmless.",
        "operationId": "ingest",
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/IngestBatch"}}
            },
        },
        "responses": responses,
    }
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "watchkeeper ingest", "version": "1"},
        "paths": {
            "/v1/ingest": {"post": ingest},
            "/healthz": {
                "get": {
                    "summary": "Whether the store answers.",
                    "operationId": "healthz",
                    "responses": {
                        "200": {"description": "The store answers."},
                        "503": {"description": "The store does not answer; `error` says why."},
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "The API's own metrics in Prometheus text format.",
                    "operationId": "metrics",
                    "responses": {"200": {"description": "Prometheus exposition text."}},
                }
            },
        },
        "components": {"schemas": schemas},
    }
    if auth:
        document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        ingest["security"] = [{"bearer": []}]
    return document
