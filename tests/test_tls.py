"""TLS for the ingest API: uvicorn's certificate options, a client that trusts a private CA.

Certificates are made in the test (trustme: a throwaway CA and a server certificate for
127.0.0.1 and localhost), written as PEM files the way an operator would deploy them.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trustme
from prometheus_client import CollectorRegistry

from watchkeeper import Monitor
from watchkeeper.collectors.ingest import IngestServer, create_app
from watchkeeper.config import IngestConfig
from watchkeeper.tsdb import SQLiteStore


@dataclass
class Pki:
    ca_file: Path
    cert_file: Path
    key_file: Path
    other_ca_file: Path  # a CA that did not sign the server's certificate


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    pki = Pki(folder / "ca.pem", folder / "cert.pem", folder / "key.pem", folder / "other.pem")
    ca.cert_pem.write_to_path(str(pki.ca_file))
    cert.cert_chain_pems[0].write_to_path(str(pki.cert_file))
    cert.private_key_pem.write_to_path(str(pki.key_file))
    trustme.CA().cert_pem.write_to_path(str(pki.other_ca_file))
    return pki


@dataclass
class TlsIngest:
    server: IngestServer
    store: SQLiteStore

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture
def tls_ingest(pki: Pki, store: SQLiteStore) -> Iterator[TlsIngest]:
    app = create_app(store, IngestConfig(), registry=CollectorRegistry(), environ={})
    server = IngestServer(
        app, "127.0.0.1", 0, ssl_certfile=pki.cert_file, ssl_keyfile=pki.key_file
    ).start()
    try:
        yield TlsIngest(server, store)
    finally:
        server.stop()


def test_the_server_speaks_https_with_its_certificate(tls_ingest: TlsIngest, pki: Pki) -> None:
    assert tls_ingest.url.startswith("https://127.0.0.1:")
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    response = httpx.get(f"{tls_ingest.url}/healthz", verify=context, timeout=10)
    assert response.json() == {"status": "ok"}
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{tls_ingest.url}/healthz", timeout=10)  # the system CAs do not know it


def test_a_monitor_trusting_the_ca_delivers_over_https(tls_ingest: TlsIngest, pki: Pki) -> None:
    monitor = Monitor(
        "churn",
        "v1",
        endpoint=tls_ingest.url,
        registry=CollectorRegistry(),
        ca_file=pki.ca_file,
    )
    try:
        ids = [monitor.log_prediction({"age": i}, 0.5) for i in range(20)]
        monitor.log_label(ids[0], 1)
        assert monitor.flush(timeout=10) is True
        assert monitor.stats.sent == 21
    finally:
        monitor.close(timeout=2)
    stored = tls_ingest.store.predictions("churn", 0, math.inf)
    assert sorted(p.prediction_id for p in stored) == sorted(ids)


def test_a_monitor_that_does_not_trust_the_certificate_sends_nothing(
    tls_ingest: TlsIngest, pki: Pki
) -> None:
    """A server it cannot verify gets nothing: the records stay queued for retry, the service
    is not disturbed."""
    monitor = Monitor(
        "churn",
        endpoint=tls_ingest.url,
        registry=CollectorRegistry(),
        ca_file=pki.other_ca_file,
    )
    try:
        monitor.log_prediction({"age": 1}, 0.5)
        assert monitor.flush(timeout=1) is False
        assert monitor.stats.sent == 0
    finally:
        monitor.close(timeout=0.5)
    assert tls_ingest.store.predictions("churn", 0, math.inf) == []


def test_plain_http_to_the_tls_port_fails_cleanly_and_the_server_carries_on(
    tls_ingest: TlsIngest, pki: Pki
) -> None:
    plain = tls_ingest.url.replace("https://", "http://")
    with pytest.raises(httpx.TransportError):
        httpx.post(f"{plain}/v1/ingest", content=b"{}", timeout=5)
    monitor = Monitor("churn", endpoint=plain, registry=CollectorRegistry())
    try:
        monitor.log_prediction({"age": 1}, 0.5)  # never raises, never blocks
        assert monitor.flush(timeout=1) is False
    finally:
        monitor.close(timeout=0.5)
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    assert httpx.get(f"{tls_ingest.url}/healthz", verify=context, timeout=10).status_code == 200


def test_bad_tls_settings_fail_at_start_naming_the_files(tmp_path: Path, pki: Pki) -> None:
    app = create_app(
        SQLiteStore(tmp_path / "w.db"), IngestConfig(), registry=CollectorRegistry(), environ={}
    )
    missing = tmp_path / "missing.pem"
    with pytest.raises(ValueError, match=r"missing\.pem"):
        IngestServer(app, ssl_certfile=missing).start()
    with pytest.raises(ValueError, match=r"cert\.pem"):  # the key is not in the certificate file
        IngestServer(app, ssl_certfile=pki.cert_file).start()
    with pytest.raises(ValueError, match="needs ssl_certfile"):
        IngestServer(app, ssl_keyfile=pki.key_file)


def test_bad_client_tls_settings_fail_at_construction(tmp_path: Path, pki: Pki) -> None:
    with pytest.raises(ValueError, match=r"nope\.pem"):
        Monitor("m", endpoint="https://127.0.0.1:1", ca_file=tmp_path / "nope.pem")
    with pytest.raises(ValueError, match="not https"):
        Monitor("m", endpoint="http://127.0.0.1:1", ca_file=pki.ca_file)
    with pytest.raises(ValueError, match="https"):
        Monitor("m", ca_file=pki.ca_file)
