"""Which watchkeeper processes are degraded or down, from their `GET /healthz` answers.

Every watchkeeper process with HTTP answers `GET /healthz` (see `watchkeeper.health`): 200
with `"status": "ok"`, 200 with `"status": "degraded"` and the parts that are not ok, or 503
with `"status": "unavailable"` when it cannot read the store. The dashboard asks each process
named in `dashboard.health_urls` (by default the ingest API of its own configuration) and shows
a banner on every page when one is degraded, unavailable or does not answer, so that people
reading the charts know when the data behind them may be incomplete.

No Streamlit here: `check` is a plain function tested against real HTTP servers. It never
raises; whatever goes wrong becomes the process's status and error.

>>> healthz_url("http://127.0.0.1:8765")
'http://127.0.0.1:8765/healthz'
>>> shown_url("https://user:secret@example.com:8765/healthz")
'https://example.com:8765/healthz'
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from watchkeeper.config import Config

Status = Literal["ok", "degraded", "unavailable", "unreachable"]
TIMEOUT_S = 1.0
"""How long one `/healthz` request may take: a page never waits longer for the banner."""
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}
_MAX_BODY = 1_000_000


@dataclass(frozen=True)
class ProcessHealth:
    """What one process said about itself.

    `status` is the process's own (`ok`, `degraded`, `unavailable`) or `unreachable` when it
    did not answer as a watchkeeper process does; `degraded` holds `(part, detail)` for every
    part that is not ok; `error` says why the process is unavailable or unreachable.
    """

    url: str
    status: Status
    degraded: tuple[tuple[str, str], ...] = ()
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def healthz_url(url: str) -> str:
    """`url` itself when it names `/healthz`, else its `/healthz`."""
    if urllib.parse.urlsplit(url).path.rstrip("/").endswith("/healthz"):
        return url
    return url.rstrip("/") + "/healthz"


def shown_url(url: str) -> str:
    """The URL without any user name or password in it, for showing on a page."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def health_urls(config: Config) -> list[str]:
    """The `/healthz` URLs to ask: `dashboard.health_urls`, or when that is not set the
    ingest API of `config` (https when it has a certificate; a wildcard address becomes
    loopback, where a process on this machine answers).

    >>> health_urls(Config())
    ['http://127.0.0.1:8765/healthz']
    """
    if config.dashboard.health_urls is not None:
        return [healthz_url(url) for url in config.dashboard.health_urls]
    ingest = config.ingest
    host = _WILDCARDS.get(ingest.host, ingest.host)
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if ingest.tls_certfile is not None else "http"
    return [f"{scheme}://{host}:{ingest.port}/healthz"]


_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def _tls_context(cafile: Path | None, host: str) -> ssl.SSLContext:
    """The system's trusted certificates, plus the ingest API's own certificate when given
    (typically self-signed), trusted as it is even without its issuer.

    On loopback with that certificate given, it is the only one trusted and the name is not
    checked: a certificate made for the name clients use (`watchkeeper.internal`) rarely
    names `127.0.0.1` too, and a process on this machine that presents exactly the ingest
    API's certificate holds its key, which is what the name check would establish.
    """
    if cafile is not None and host in _LOOPBACK:
        pinned = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        pinned.check_hostname = False
        pinned.verify_mode = ssl.CERT_REQUIRED
        pinned.load_verify_locations(cafile=str(cafile))
        pinned.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        return pinned
    context = ssl.create_default_context()
    if cafile is not None:
        context.load_verify_locations(cafile=str(cafile))
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


def _from_body(url: str, code: int, body: Any) -> ProcessHealth:
    if not isinstance(body, dict) or body.get("status") not in ("ok", "degraded", "unavailable"):
        return ProcessHealth(url, "unreachable", error=f"HTTP {code}, not a watchkeeper /healthz")
    components = body.get("components")
    components = components if isinstance(components, dict) else {}
    names = body.get("degraded")
    names = [str(n) for n in names] if isinstance(names, list) else []
    names += [str(n) for n, c in components.items() if isinstance(c, dict) and not c.get("ok")]
    degraded = []
    for name in dict.fromkeys(names):
        part = components.get(name)
        detail = part.get("detail") if isinstance(part, dict) else None
        degraded.append((name, str(detail or "")))
    status: Status = body["status"]
    if code >= 400 and status != "unavailable":
        status = "unavailable"
    elif status == "ok" and degraded:
        status = "degraded"
    error = str(body.get("error") or (f"HTTP {code}" if status == "unavailable" else ""))
    return ProcessHealth(url, status, tuple(degraded), error)


def check(url: str, timeout: float = TIMEOUT_S, *, cafile: Path | None = None) -> ProcessHealth:
    """Ask one process's `/healthz` (at most `timeout` seconds); never raises."""
    shown = shown_url(url)
    headers = {"Accept": "application/json"}
    parts = urllib.parse.urlsplit(url)
    if parts.username is not None:  # sent as HTTP basic authentication, never shown
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        headers["Authorization"] = f"Basic {token}"
    try:
        context = _tls_context(cafile, parts.hostname or "") if url.startswith("https:") else None
        request = urllib.request.Request(shown, headers=headers)
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            code, raw = response.status, response.read(_MAX_BODY)
    except urllib.error.HTTPError as exc:
        code, raw = exc.code, exc.read(_MAX_BODY)
        exc.close()
    except urllib.error.URLError as exc:
        return ProcessHealth(shown, "unreachable", error=str(exc.reason))
    except Exception as exc:  # a timeout, a reset, a bad certificate file: all "no answer"
        return ProcessHealth(shown, "unreachable", error=f"{type(exc).__name__}: {exc}")
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    return _from_body(shown, code, body)


def check_all(
    urls: Sequence[str], timeout: float = TIMEOUT_S, *, cafile: Path | None = None
) -> list[ProcessHealth]:
    """`check` every URL at once (so several slow ones cost one timeout), in order."""
    if len(urls) <= 1:
        return [check(url, timeout, cafile=cafile) for url in urls]
    with ThreadPoolExecutor(max_workers=min(len(urls), 8)) as pool:
        return list(pool.map(lambda url: check(url, timeout, cafile=cafile), urls))


def describe(health: ProcessHealth) -> str:
    """The banner text (Markdown) for a process that is not ok: the process, what is wrong,
    and each degraded part with its detail."""
    what = {
        "degraded": "is degraded",
        "unavailable": "is unavailable",
        "unreachable": "does not answer",
    }.get(health.status, "is ok")
    why = f": {health.error}" if health.error else ""
    lines = [f"watchkeeper at `{health.url}` {what}{why}"]
    lines += [f"- **{part}**: {detail or 'not ok'}" for part, detail in health.degraded]
    if health.status == "unreachable":
        lines.append(
            "\nIf it runs somewhere else, name it in `dashboard.health_urls`; "
            "an empty list turns this check off."
        )
    elif health.status != "ok":
        lines.append("\nWhat the dashboard shows may be incomplete until it recovers.")
    return "\n".join(lines)
