"""The ingest HTTP API: `POST /v1/ingest`, `GET /healthz`, `GET /metrics`.

The API is stateless: each request body is read with hard limits (declared and actual size,
decompressed size for gzip, number of items), validated against `wire.IngestBatch`, and stored
in one `Store.write` call, so a batch is stored whole or not at all and retries are harmless
(records with an id already stored are ignored). Every refusal is a 4xx whose JSON body says
what is wrong and where (`predictions.3.features.age`); a store that cannot write answers 503
with `Retry-After`, which the client library honours. Input never causes a 500.
`GET /openapi.json` describes all of it (`openapi.py`).

With `tokens` configured, a request needs `Authorization: Bearer <token>` (else 401) and may
only carry data of the models its token is scoped to (else 403 naming the item); with
`rate_limit`, a token (or client address) over its rate gets 429 with `Retry-After`. See
`auth.py`.

`IngestServer` runs an app under uvicorn in a background thread, for the CLI and for tests:

    server = IngestServer(create_app(store, IngestConfig()), "127.0.0.1", 0)
    server.start()          # returns once it listens; server.url -> "http://127.0.0.1:PORT"
    ...
    server.stop()
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import uvicorn
from anyio import CapacityLimiter, to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client import Histogram as PromHistogram
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from watchkeeper.config import IngestConfig
from watchkeeper.health import Health
from watchkeeper.tsdb import InvalidRecord, Store

from .auth import Authenticator, Credential, RateLimiter, TokenChange, Unauthorized
from .openapi import ingest_openapi
from .wire import KINDS, BatchRecords, IngestBatch, count_items, decode_valid

__all__ = ["IngestServer", "create_app", "health_response"]

log = logging.getLogger(__name__)

RETRY_AFTER_S = 1
# Store writes in flight at once: one writing, the others queued to join the next group commit
# (see `SQLiteStore.write`). Measured on 2 cores: more threads only add GIL contention.
STORE_WRITERS = 3
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_ENCODED_SURROGATE = re.compile(rb"\xed[\xa0-\xbf]")  # UTF-8-encoded surrogates
MAX_DETAILS = 100  # a batch of 10,000 bad items gets a readable answer, not 10,000 lines
REJECT_REASONS = (
    "invalid_json",
    "invalid_schema",
    "body_too_large",
    "too_many_items",
    "bad_encoding",
    "store_unavailable",
    "unauthorized",
    "forbidden",
    "rate_limited",
)


class _Reject(Exception):
    """A request refused with a status, a reason label and a one-line message."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        details: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.details = details or []
        self.headers = headers


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.items = Counter(
            "watchkeeper_ingest_items_total",
            "Records accepted by the ingest API, by kind.",
            ["kind"],
            registry=registry,
        )
        self.rejected = Counter(
            "watchkeeper_ingest_rejected_total",
            "Ingest requests refused, by reason.",
            ["reason"],
            registry=registry,
        )
        self.latency = PromHistogram(
            "watchkeeper_ingest_request_duration_seconds",
            "Time to handle one ingest request, reading to answer.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=registry,
        )
        for kind in KINDS:
            self.items.labels(kind)
        for reason in REJECT_REASONS:
            self.rejected.labels(reason)


def _error(
    status: int,
    message: str,
    details: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        {"error": message, "details": details or []}, status_code=status, headers=headers
    )


def _loc(parts: tuple[int | str, ...]) -> str:
    """`predictions.3.features.age`; a key that is empty, holds a dot, or is not printable is
    JSON-quoted (`features."a.b"`), so every location is visible and unambiguous."""
    return ".".join(_loc_part(p) for p in parts) if parts else "body"


def _loc_part(part: int | str) -> str:
    text = str(part)
    if text and "." not in text and '"' not in text and text.isprintable():
        return text
    return json.dumps(text)


def _details(exc: ValidationError | RequestValidationError) -> list[dict[str, str]]:
    seen: set[tuple[str, str]] = set()
    out: list[dict[str, str]] = []
    for err in exc.errors():
        loc = _loc(tuple(err.get("loc", ())))
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if (loc, msg) not in seen:
            seen.add((loc, msg))
            out.append({"loc": loc, "msg": msg})
    return out


async def _read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing (413) a declared or actual size over `limit` before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise _Reject(400, "bad_encoding", "Content-Length is not an integer") from None
        if size > limit:
            raise _Reject(
                413, "body_too_large", f"body of {size} bytes is over the limit of {limit} bytes"
            )
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise _Reject(413, "body_too_large", f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _gunzip(data: bytes, limit: int) -> bytes:
    """Decompress a gzip body without ever holding more than `limit` + 1 bytes of output."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
        if len(out) > limit or inflater.unconsumed_tail:
            raise _Reject(
                413,
                "body_too_large",
                f"decompressed body is over the limit of {limit} bytes",
            )
        out += inflater.flush()
    except zlib.error as exc:
        raise _Reject(400, "bad_encoding", f"body is not valid gzip: {exc}") from None
    if not inflater.eof:
        raise _Reject(400, "bad_encoding", "gzip body is truncated")
    if inflater.unused_data:
        raise _Reject(400, "bad_encoding", "unexpected bytes after the gzip stream")
    return out


def _decode(body: bytes, encoding: str, limit: int) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip"):
        return _gunzip(body, limit)
    raise _Reject(415, "bad_encoding", f"Content-Encoding {encoding!r} is not supported; use gzip")


def _parse(raw: bytes) -> Any:
    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    try:
        body = json.loads(raw, parse_constant=no_constants)
    except UnicodeDecodeError as exc:
        raise _Reject(
            400,
            "invalid_json",
            f"body is not UTF-8 text: invalid byte at offset {exc.start}",
            _bad_text_details(raw, "is not valid UTF-8"),
        ) from None
    except ValueError as exc:
        raise _Reject(400, "invalid_json", f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise _Reject(400, "invalid_json", "body is nested too deeply") from None
    # A lone "\ud800", escaped or as UTF-8 bytes (json.loads lets both through), parses, but
    # no store can encode it.
    if _SURROGATE_ESCAPE.search(raw) or _ENCODED_SURROGATE.search(raw):
        where = _unencodable(body)
        if where is not None:
            raise _Reject(
                400,
                "invalid_json",
                f"{_loc(where)}: a string with an unpaired UTF-16 surrogate",
                [{"loc": _loc(where), "msg": "has an unpaired UTF-16 surrogate"}],
            )
    return body


def _bad_text_details(raw: bytes, msg: str) -> list[dict[str, str]]:
    """Where in a body that is not UTF-8 the bad bytes are (`predictions.0.model`), when the
    rest of it is JSON; else nothing."""
    try:
        body = json.loads(raw.decode("utf-8", "surrogateescape"))
    except (ValueError, RecursionError):
        return []
    where = _unencodable(body)
    return [] if where is None else [{"loc": _loc(where), "msg": msg}]


def _unencodable(value: Any, path: tuple[int | str, ...] = ()) -> tuple[int | str, ...] | None:
    """The location of the first string (key or value) that UTF-8 cannot encode, or None."""
    try:
        if isinstance(value, str):
            value.encode("utf-8")
        elif isinstance(value, dict):
            for key, item in value.items():
                try:
                    key.encode("utf-8")
                except UnicodeEncodeError:
                    return (*path, key.encode("utf-8", "backslashreplace").decode())
                if (found := _unencodable(item, (*path, key))) is not None:
                    return found
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if (found := _unencodable(item, (*path, i))) is not None:
                    return found
    except UnicodeEncodeError:
        return path
    except RecursionError:
        return None
    return None


def _forbidden(records: BatchRecords, credential: Credential) -> list[dict[str, str]]:
    """Where a batch holds data of a model its token may not write."""
    details = []
    for kind in KINDS:
        for i, item in enumerate(getattr(records, kind)):
            if not credential.may_write(item.model):
                details.append(
                    {
                        "loc": f"{kind}.{i}.model",
                        "msg": f"token {credential.name!r} may not write model {item.model!r}",
                    }
                )
    return details


def create_app(
    store: Store,
    config: IngestConfig,
    *,
    registry: CollectorRegistry | None = None,
    environ: Mapping[str, str] | None = None,
    health: Health | None = None,
    on_tokens_reload: Callable[[TokenChange], None] | None = None,
) -> FastAPI:
    """The ingest API over `store`, with its metrics on `registry` (a fresh one by default).

    `GET /healthz` includes what the other parts of the process reported to `health`.

    Tokens configured with `env` are read from `environ` (default `os.environ`) now; a missing
    one raises `ValueError` naming it. `config.tokens_file` is reread when it changes, and
    `on_tokens_reload` told which token names changed (for the audit log).
    """
    registry = registry if registry is not None else CollectorRegistry()
    metrics = _Metrics(registry)
    auth = Authenticator(
        config.tokens, environ, tokens_file=config.tokens_file, on_reload=on_tokens_reload
    )
    limiter = (
        RateLimiter(config.rate_limit, config.rate_burst or config.max_batch_items)
        if config.rate_limit is not None
        else None
    )
    app = FastAPI(title="watchkeeper ingest", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers) if exc.headers else None
        return _error(exc.status_code, str(exc.detail), headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        metrics.rejected.labels("invalid_schema").inc()
        return _error(422, "invalid request", _details(exc))

    limiters: list[CapacityLimiter] = []

    def writers() -> CapacityLimiter:
        """At most `STORE_WRITERS` threads write at once; more batches wait in the event loop,
        not in threads contending for the GIL and the store's lock. (Made on first use: a
        limiter belongs to the running event loop.)"""
        if not limiters:
            limiters.append(CapacityLimiter(STORE_WRITERS))
        return limiters[0]

    def too_many(items: int) -> _Reject:
        return _Reject(
            413,
            "too_many_items",
            f"batch of {items} items is over the limit of {config.max_batch_items}",
        )

    async def handle(request: Request) -> dict[str, Any]:
        credential: Credential | None = None
        if auth.enabled:
            try:
                credential = auth.authenticate(request.headers.get("authorization"))
            except Unauthorized as exc:
                raise _Reject(
                    401, "unauthorized", str(exc), headers={"WWW-Authenticate": "Bearer"}
                ) from None
        raw = await _read_body(request, config.max_body_bytes)
        raw = _decode(raw, request.headers.get("content-encoding", ""), config.max_body_bytes)
        records = decode_valid(raw)
        if records is not None:
            items = len(records.predictions) + len(records.labels) + len(records.samples)
            if items > config.max_batch_items:
                raise too_many(items)
        else:  # something is wrong: find out what, in the order a client can act on
            body = _parse(raw)
            items = count_items(body)
            if items > config.max_batch_items:
                raise too_many(items)
            try:
                batch = IngestBatch.model_validate(body)
            except ValidationError as exc:
                details = _details(exc)
                first = f"{details[0]['loc']}: {details[0]['msg']}" if details else ""
                raise _Reject(
                    422,
                    "invalid_schema",
                    f"invalid batch ({len(details)} problem{'s' * (len(details) != 1)}): {first}",
                    details[:MAX_DETAILS],
                ) from None
            records = batch.to_records()
        if credential is not None and (forbidden := _forbidden(records, credential)):
            raise _Reject(
                403,
                "forbidden",
                f"{forbidden[0]['loc']}: {forbidden[0]['msg']}",
                forbidden[:MAX_DETAILS],
            )
        if limiter is not None:
            key = credential.name if credential else f"client:{_client_host(request)}"
            wait = limiter.take(key, items)
            if wait > 0:
                raise _Reject(
                    429,
                    "rate_limited",
                    f"over the rate limit of {config.rate_limit:g} records/s; retry later",
                    headers={"Retry-After": str(max(1, math.ceil(wait)))},
                )
        try:
            result = await to_thread.run_sync(
                functools.partial(
                    store.write,
                    predictions=records.predictions,
                    labels=records.labels,
                    samples=records.samples,
                ),
                limiter=writers(),
            )
        except InvalidRecord as exc:
            # Data the store will never keep (a timestamp a day ahead, an over-long name):
            # the sender's problem, not an outage, so no retry.
            raise _Reject(
                422,
                "invalid_record",
                f"batch refused: {exc}",
                [{"loc": f"{exc.kind}.{exc.row}.{exc.field}", "msg": exc.problem}],
            ) from None
        except Exception as exc:
            log.warning("store refused a batch of %d items: %s", items, exc)
            raise _Reject(
                503,
                "store_unavailable",
                f"store unavailable, retry later: {exc}",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            ) from None
        accepted = {
            "predictions": len(records.predictions),
            "labels": len(records.labels),
            "samples": len(records.samples),
        }
        for kind, n in accepted.items():
            if n:
                metrics.items.labels(kind).inc(n)
        stored = {
            "predictions": result.predictions,
            "labels": result.labels,
            "samples": result.samples,
        }
        return {"accepted": accepted, "stored": stored}

    @app.post("/v1/ingest")
    async def ingest(request: Request) -> Response:
        started = time.perf_counter()
        try:
            return JSONResponse(await handle(request))
        except _Reject as rej:
            metrics.rejected.labels(rej.reason).inc()
            return _error(rej.status, rej.message, rej.details, rej.headers)
        finally:
            metrics.latency.observe(time.perf_counter() - started)

    @app.get("/healthz")
    async def healthz() -> Response:
        return await health_response(store, health)

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    document = ingest_openapi(auth=auth.enabled, rate_limited=limiter is not None)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_document() -> Response:
        return JSONResponse(document)

    return app


async def health_response(store: Store, health: Health | None) -> JSONResponse:
    """`GET /healthz`: 503 when the store cannot be read, else 200 saying which parts of the
    process are degraded (see `watchkeeper.health`)."""
    body: dict[str, Any] = health.snapshot() if health is not None else {"status": "ok"}
    try:
        await run_in_threadpool(store.models)
    except Exception as exc:
        body.update(status="unavailable", error=f"the store cannot be read: {exc}")
        return JSONResponse(body, status_code=503)
    return JSONResponse(body)


def _client_host(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class IngestServer:
    """Serve an ASGI app with uvicorn in a daemon thread; `start()` returns once listening.

    The listening socket is bound here, before uvicorn starts, so that a port already in use
    raises `OSError` from `start()` and port 0 gives a real port at once.

    With `ssl_certfile` (PEM certificate chain, and the key unless `ssl_keyfile` names it) the
    server speaks HTTPS only (uvicorn's TLS); a certificate or key that cannot be loaded
    raises `ValueError` from `start()`, naming the files. See docs/security.md.
    """

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ssl_certfile: str | os.PathLike[str] | None = None,
        ssl_keyfile: str | os.PathLike[str] | None = None,
    ) -> None:
        if ssl_keyfile is not None and ssl_certfile is None:
            raise ValueError("ssl_keyfile needs ssl_certfile (the certificate chain)")
        self.app = app
        self.host = host
        self.requested_port = port
        self.ssl_certfile = None if ssl_certfile is None else os.fspath(ssl_certfile)
        self.ssl_keyfile = None if ssl_keyfile is None else os.fspath(ssl_keyfile)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._failure: BaseException | None = None
        self._port: int | None = None

    def __repr__(self) -> str:
        tls = ", tls=True" if self.ssl_certfile else ""
        return f"IngestServer(host={self.host!r}, port={self.requested_port}{tls})"

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the server is not started")
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "https" if self.ssl_certfile else "http"
        return f"{scheme}://{host}:{self.port}"

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.requested_port))
            sock.listen(2048)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise OSError(
                exc.errno,
                f"ingest server cannot listen on {self.host}:{self.requested_port}: "
                f"{exc.strerror or exc}",
            ) from exc
        return sock

    def _run(self) -> None:
        assert self._server is not None and self._sock is not None
        try:
            self._server.run(sockets=[self._sock])
        except BaseException as exc:  # SystemExit from uvicorn on start-up failure included
            self._failure = exc

    def start(self, timeout: float = 10.0) -> IngestServer:
        """Bind, start serving in the background and wait until the server accepts requests."""
        if self._thread is not None:
            raise RuntimeError("the server is already started")
        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=self.requested_port,
            log_level="warning",
            access_log=False,  # one log line per batch would cost more than the batch
            lifespan="off",
            ssl_certfile=self.ssl_certfile,
            ssl_keyfile=self.ssl_keyfile,
        )
        if self.ssl_certfile is not None:
            try:
                config.load()  # here, so a bad certificate fails start() with its reason
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(
                    f"cannot load the TLS certificate {self.ssl_certfile!r}"
                    f"{f' / key {self.ssl_keyfile!r}' if self.ssl_keyfile else ''}: {exc}"
                ) from None
        self._sock = self._bind()
        self._port = int(self._sock.getsockname()[1])
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="watchkeeper-ingest", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                self._sock.close()
                raise RuntimeError(f"ingest server failed to start: {self._failure!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"ingest server did not start within {timeout} s")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, let requests in progress finish, and join the thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        if self._sock is not None:
            self._sock.close()

    def __enter__(self) -> IngestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
