"""Graceful degradation on the dashboard (issue 7): every page says which watchkeeper process is
degraded, unavailable or silent, and which of its parts, from their real `GET /healthz` answers
(a loopback server answering each case, and a real `Stack` whose store is locked)."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
import yaml
from streamlit.testing.v1 import AppTest

from watchkeeper.config import config_from_dict
from watchkeeper.dashboard import app_path
from watchkeeper.dashboard.health import check, health_urls
from watchkeeper.runtime import Stack

DEGRADED = {
    "status": "degraded",
    "degraded": ["detector", "store"],
    "components": {
        "alerting": {"ok": True, "detail": "following findings", "reported_s_ago": 0.4},
        "detector": {
            "ok": False,
            "detail": "paused: the store cannot be used (OperationalError: database is locked)",
            "reported_s_ago": 0.4,
        },
        "store": {
            "ok": False,
            "detail": "OperationalError: database is locked",
            "reported_s_ago": 0.4,
        },
    },
}
ANSWERS: dict[str, tuple[int, Any]] = {
    "/ok/healthz": (200, {"status": "ok", "degraded": [], "components": {}}),
    "/degraded/healthz": (200, DEGRADED),
    "/down/healthz": (
        503,
        {"status": "unavailable", "error": "the store cannot be read: disk I/O error"},
    ),
    "/html/healthz": (200, "<html>a login page</html>"),
}


class HealthServer:
    """A loopback HTTP server answering `ANSWERS` by path; `/hang/healthz` never answers
    (until closed)."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.release = threading.Event()
        release = self.release

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/hang/healthz":
                    release.wait(10)
                    return
                code, body = ANSWERS.get(self.path, (404, {"detail": "Not Found"}))
                raw = (body if isinstance(body, str) else json.dumps(body)).encode()
                self.send_response(code)
                kind = "text/html" if isinstance(body, str) else "application/json"
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


@pytest.fixture
def server() -> Iterator[HealthServer]:
    s = HealthServer()
    try:
        yield s
    finally:
        s.close()


def refused_url() -> str:
    """A loopback URL nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    return f"http://127.0.0.1:{port}"


def dashboard(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, urls: list[str]) -> AppTest:
    """The dashboard on an empty data directory, asking `urls` for their health."""
    config = {"storage": {"path": str(tmp_path / "data")}, "dashboard": {"health_urls": urls}}
    path = tmp_path / "watchkeeper.yaml"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setattr(sys, "argv", [str(app_path()), "--config", str(path)])
    at = AppTest.from_file(str(app_path()), default_timeout=60).run()
    assert not at.exception, at.exception
    return at


def test_every_page_names_each_degraded_or_silent_process_and_part(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, server: HealthServer
) -> None:
    refused = refused_url()
    urls = [
        f"{server.url}/ok",  # a base URL: /healthz is added
        f"{server.url}/degraded/healthz",
        f"{server.url}/down/healthz",
        refused,
        f"{server.url}/hang/healthz",
        f"{server.url}/html",
    ]
    at = dashboard(monkeypatch, tmp_path, urls)
    for page in ("page_fleet.py", "page_alerts.py"):
        at.switch_page(page).run()
        assert not at.exception, at.exception
        warnings = [w.value for w in at.warning]
        errors = [e.value for e in at.error]
        assert len(warnings) == 1 and len(errors) == 4, (warnings, errors)
        degraded = warnings[0]
        assert f"`{server.url}/degraded/healthz` is degraded" in degraded
        assert "- **store**: OperationalError: database is locked" in degraded
        assert "- **detector**: paused: the store cannot be used" in degraded
        assert "alerting" not in degraded  # it is fine
        down, silent, hanging, html = errors
        assert f"`{server.url}/down/healthz` is unavailable" in down
        assert "the store cannot be read: disk I/O error" in down
        assert f"`{refused}/healthz` does not answer" in silent and "refused" in silent
        assert f"`{server.url}/hang/healthz` does not answer" in hanging
        assert "timed out" in hanging
        assert "not a watchkeeper /healthz" in html
        assert "/ok/healthz" not in "\n".join(warnings + errors)
    # The page itself still draws: the empty data directory is explained under the banners.
    at.switch_page("page_fleet.py").run()
    assert "No model has reported yet" in at.info[0].value


def test_no_banner_when_every_process_is_ok(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, server: HealthServer
) -> None:
    at = dashboard(monkeypatch, tmp_path, [f"{server.url}/ok/healthz"])
    assert not at.warning and not at.error
    assert "No model has reported yet" in at.info[0].value


def hold_write_lock(db: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process holds the SQLite write lock for `seconds` (reads still work: WAL)."""
    code = (
        "import sqlite3, sys, time\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)\n"
        "c.execute('BEGIN IMMEDIATE')\n"
        "print('locked', flush=True)\n"
        "time.sleep(float(sys.argv[2]))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(db), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def wait_for_status(url: str, status: str, timeout: float) -> None:
    """Until the process's own `/healthz` says `status`, with its detector reporting."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(urllib.error.HTTPError):
            with urllib.request.urlopen(url, timeout=5) as response:
                body = json.loads(response.read())
            if body["status"] == status and "detector" in body["components"]:
                return
        assert time.monotonic() < deadline, f"{url} still says {body}, not {status}"
        time.sleep(0.2)


def test_a_real_detector_and_alerting_process_with_a_locked_store(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = config_from_dict(
        {
            "storage": {"path": str(tmp_path / "data"), "busy_timeout": "0.3s"},
            "detector": {"interval": "0.3s"},
            "alerting": {"console": False},
        }
    )
    with Stack(config, roles=["detector", "alerting"], status_port=0) as stack:
        stack.start()
        url = f"{stack.ingest_url}/healthz"
        wait_for_status(url, "ok", 30)
        at = dashboard(monkeypatch, tmp_path, [stack.ingest_url])
        assert not at.warning and not at.error

        holder = hold_write_lock(config.storage.store_file, 5.0)
        try:
            wait_for_status(url, "degraded", 20)
            st.cache_data.clear()  # the banner caches each answer for 10 s
            at = dashboard(monkeypatch, tmp_path, [stack.ingest_url])
        finally:
            holder.wait(timeout=30)
    assert not at.error
    [warning] = [w.value for w in at.warning]
    assert f"`{url}` is degraded" in warning
    assert "- **store**: OperationalError: database is locked" in warning
    assert "- **detector**: paused: the store cannot be used" in warning


def test_health_urls_come_from_the_config_or_the_ingest_api() -> None:
    assert health_urls(config_from_dict({})) == ["http://127.0.0.1:8765/healthz"]
    wildcard = config_from_dict({"ingest": {"host": "0.0.0.0", "port": 9000}})
    assert health_urls(wildcard) == ["http://127.0.0.1:9000/healthz"]
    v6 = config_from_dict({"ingest": {"host": "::", "port": 9000}})
    assert health_urls(v6) == ["http://[::1]:9000/healthz"]
    tls = config_from_dict(
        {"ingest": {"host": "wk.example", "tls_certfile": "c.pem", "tls_keyfile": "k.pem"}}
    )
    assert health_urls(tls) == ["https://wk.example:8765/healthz"]
    listed = config_from_dict(
        {"dashboard": {"health_urls": ["http://a:1", "https://b:2/wk/healthz", "http://c:3/"]}}
    )
    assert health_urls(listed) == [
        "http://a:1/healthz",
        "https://b:2/wk/healthz",
        "http://c:3/healthz",
    ]
    assert health_urls(config_from_dict({"dashboard": {"health_urls": []}})) == []


def test_a_self_signed_ingest_certificate_is_trusted_for_health_checks(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    leaf = tmp_path / "ingest.pem"  # what `ingest.tls_certfile` names: the server's certificate
    leaf.write_bytes(cert.cert_chain_pems[0].bytes())
    server = HealthServer(tls=context)
    try:
        assert check(f"{server.url}/ok/healthz", cafile=leaf).status == "ok"
        unknown = check(f"{server.url}/ok/healthz")  # without it the certificate is unknown
        assert unknown.status == "unreachable" and "CERTIFICATE_VERIFY_FAILED" in unknown.error
    finally:
        server.close()


def test_on_loopback_the_ingest_certificate_is_pinned_whatever_name_it_has(
    tmp_path: Path,
) -> None:
    """The usual production certificate names the service, not 127.0.0.1; the banner on the
    same machine asks 127.0.0.1 and must still get through, but only to that certificate."""
    trustme = pytest.importorskip("trustme")
    served = trustme.CA().issue_cert("watchkeeper.internal")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    served.configure_cert(context)
    own = tmp_path / "ingest.pem"  # what `ingest.tls_certfile` names
    own.write_bytes(served.cert_chain_pems[0].bytes())
    other = tmp_path / "other.pem"  # the same name, another key
    other.write_bytes(trustme.CA().issue_cert("watchkeeper.internal").cert_chain_pems[0].bytes())
    server = HealthServer(tls=context)
    try:
        assert server.url.startswith("https://127.0.0.1:")
        assert check(f"{server.url}/ok/healthz", cafile=own).status == "ok"
        impostor = check(f"{server.url}/ok/healthz", cafile=other)
        assert impostor.status == "unreachable"
        assert "CERTIFICATE_VERIFY_FAILED" in impostor.error
    finally:
        server.close()


def test_credentials_in_a_health_url_are_not_shown(server: HealthServer) -> None:
    port = server.url.rsplit(":", 1)[1]
    got = check(f"http://user:s3cret-token@127.0.0.1:{port}/degraded/healthz")
    assert got.status == "degraded" and "s3cret" not in got.url
    assert got.url == f"http://127.0.0.1:{port}/degraded/healthz"


def test_the_health_module_examples_run() -> None:
    import doctest

    import watchkeeper.dashboard.health

    result = doctest.testmod(watchkeeper.dashboard.health)
    assert result.attempted and not result.failed
