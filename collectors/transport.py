"""HTTP to the ingest API: the endpoint URL, one kept-alive connection, POSTing a gzip body.

Standard library only (`http.client`), so the client library needs no HTTP dependency.
"""

from __future__ import annotations

import http.client
import json
import math
import ssl
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

__all__ = [
    "INGEST_PATH",
    "Endpoint",
    "Transport",
    "parse_endpoint",
    "retry_after",
    "server_message",
    "tls_context",
]

INGEST_PATH = "/v1/ingest"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where batches go: scheme, host, port and the full ingest path."""

    https: bool
    host: str
    port: int
    path: str


def parse_endpoint(endpoint: str) -> Endpoint:
    """An `Endpoint` from `http(s)://host[:port][/prefix]`; `ValueError` saying what is wrong."""
    if not isinstance(endpoint, str) or not endpoint.strip():
        raise ValueError(f"endpoint must be a URL like 'http://host:8765', got {endpoint!r}")
    try:
        parts = urlsplit(endpoint.strip())
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"endpoint {endpoint!r} is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(
            f"endpoint {endpoint!r} must start with http:// or https://, not {parts.scheme!r}"
        )
    if not parts.hostname:
        raise ValueError(f"endpoint {endpoint!r} has no host")
    path = parts.path.rstrip("/")
    if not path.endswith(INGEST_PATH):
        path += INGEST_PATH
    https = parts.scheme == "https"
    return Endpoint(https, parts.hostname, port or (443 if https else 80), path)


class Transport:
    """POSTs gzip JSON bodies to one endpoint over a connection kept alive between batches.

    Used by one sender thread only; not thread-safe. HTTPS verifies the server's certificate
    and host name with `ssl_context` (default: the system's trusted CAs).
    """

    def __init__(
        self,
        endpoint: Endpoint,
        token: str | None,
        timeout_s: float,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self._ssl_context = ssl_context
        self._headers = {
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "User-Agent": "watchkeeper-client/0.1",
        }
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._conn: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        ep = self.endpoint
        if ep.https:
            return http.client.HTTPSConnection(
                ep.host, ep.port, timeout=self.timeout_s, context=self._ssl_context
            )
        return http.client.HTTPConnection(ep.host, ep.port, timeout=self.timeout_s)

    def post(self, data: bytes) -> tuple[int, http.client.HTTPMessage, bytes]:
        """POST `data`; reconnects once when a kept-alive connection had gone stale."""
        for fresh in (self._conn is None, True):
            conn = self._conn = self._conn or self._connect()
            try:
                conn.request("POST", self.endpoint.path, body=data, headers=self._headers)
                response = conn.getresponse()
                text = response.read()
                if response.will_close:
                    self.close()
                return response.status, response.headers, text
            except (ConnectionError, http.client.RemoteDisconnected) as exc:
                self.close()
                if fresh:
                    raise exc from None
            except BaseException:
                self.close()
                raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def tls_context(endpoint: Endpoint, ca_file: str | None) -> ssl.SSLContext | None:
    """The TLS settings for `endpoint`: None for plain HTTP or the system's CAs; with `ca_file`
    (a PEM bundle, e.g. a private CA or a self-signed certificate), a context trusting exactly
    those. `ValueError` when the file cannot be read or `endpoint` is not HTTPS."""
    if ca_file is None:
        return None
    if not endpoint.https:
        raise ValueError(f"ca_file={ca_file!r} is given but the endpoint is not https://")
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot load CA certificates from {ca_file!r}: {exc}") from None


def server_message(text: bytes) -> str:
    """The `error` of a JSON error body, or the start of the body as text."""
    try:
        body = json.loads(text)
    except ValueError:
        return text[:200].decode("utf-8", "replace")
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return cast(str, body["error"])
    return text[:200].decode("utf-8", "replace")


def retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header; None for none, an HTTP date or nonsense."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
