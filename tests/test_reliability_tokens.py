"""Ingest tokens rotate without a restart: a running ingest server rereads `ingest.tokens_file`
when it changes; a broken file keeps the tokens in force; a swap is all or nothing."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from watchkeeper.collectors.auth import Authenticator, Unauthorized
from watchkeeper.collectors.ingest import IngestServer, create_app
from watchkeeper.config import IngestConfig, IngestToken
from watchkeeper.tsdb import SQLiteStore

OLD, NEW = "old-token-1f2e3d4c", "new-token-5a6b7c8d"
WAIT_S = 20.0


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _write_tokens(path: Path, text: str) -> None:
    """Write the file the way an operator's tooling should: a new file renamed into place."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _body(model: str = "m") -> dict[str, object]:
    return {"predictions": [{"model": model, "prediction_id": "p", "timestamp": time.time()}]}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    tokens = tmp_path / "tokens.yaml"
    _write_tokens(tokens, f"- {{name: svc, models: ['*'], sha256: {_digest(OLD)}}}\n")
    store = SQLiteStore(tmp_path / "w.db")
    app = create_app(store, IngestConfig(tokens_file=tokens))
    running = IngestServer(app, "127.0.0.1", 0).start()
    try:
        yield running.url, tokens
    finally:
        running.stop()
        store.close()


def _status(client: httpx.Client, token: str) -> int:
    r = client.post("/v1/ingest", json=_body(), headers={"Authorization": f"Bearer {token}"})
    return r.status_code


def _until(what: str, client: httpx.Client, want: dict[str, int]) -> None:
    deadline = time.monotonic() + WAIT_S
    while True:
        got = {token: _status(client, token) for token in want}
        if got == want:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: wanted {want}, still {got}")
        time.sleep(0.1)


def test_a_new_tokens_file_takes_over_without_a_restart(
    server: tuple[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    url, tokens = server
    with httpx.Client(base_url=url, timeout=10) as client:
        assert _status(client, OLD) == 200
        assert _status(client, NEW) == 401

        _write_tokens(tokens, f"- {{name: svc, models: ['*'], sha256: '{_digest(NEW)}'}}\n")
        _until("rotation", client, {OLD: 401, NEW: 200})

        # A broken file (bad YAML, then a bad entry, then none) keeps NEW in force, and says so.
        caplog.set_level(logging.ERROR, logger="watchkeeper.collectors.auth")
        for broken in ("- {name: svc, models: [\n", "- {name: svc, models: ['*'], sha256: x}\n"):
            _write_tokens(tokens, broken)
            _until_logged(client, caplog, str(tokens))
            assert _status(client, NEW) == 200 and _status(client, OLD) == 401
            caplog.clear()
        tokens.unlink()
        _until_logged(client, caplog, "tokens.yaml")
        assert _status(client, NEW) == 200

        # Scopes rotate too: the same token limited to one model.
        _write_tokens(tokens, f"- {{name: svc, models: [other], sha256: '{_digest(NEW)}'}}\n")
        deadline = time.monotonic() + WAIT_S
        while client.post("/v1/ingest", json=_body("m"), headers=_bearer(NEW)).status_code != 403:
            assert time.monotonic() < deadline, "the narrower scope never took effect"
            time.sleep(0.1)
        assert client.post("/v1/ingest", json=_body("other"), headers=_bearer(NEW)).is_success


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _until_logged(client: httpx.Client, caplog: pytest.LogCaptureFixture, text: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not any(
        "not reloaded" in r.getMessage() and text in r.getMessage() for r in caplog.records
    ):
        assert time.monotonic() < deadline, f"no reload error logged; got {caplog.text!r}"
        _status(client, NEW)  # the check runs on requests
        time.sleep(0.1)


def test_a_bad_tokens_file_at_start_fails_naming_it(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("- {name: svc, models: ['*'], sha256: nothex}\n")
    with pytest.raises(ValueError, match=r"tokens\.yaml: 0\.sha256"):
        Authenticator([], tokens_file=tokens)
    with pytest.raises(ValueError, match="cannot read"):
        Authenticator([], tokens_file=tmp_path / "missing.yaml")


def test_reload_swaps_the_whole_set_at_once() -> None:
    """Requests racing a reload see the old set or the new one, never a mix of the two."""
    a = [IngestToken(name="a", models=["m1"], sha256=_digest("A")),
         IngestToken(name="b", models=["m1"], sha256=_digest("B"))]  # fmt: skip
    b = [IngestToken(name="a2", models=["m2"], sha256=_digest("A")),
         IngestToken(name="b2", models=["m2"], sha256=_digest("B"))]  # fmt: skip
    auth = Authenticator(a)
    stop = threading.Event()
    seen: set[tuple[str, str]] = set()

    def check() -> None:
        while not stop.is_set():
            pair = []
            for token in ("A", "B"):
                try:
                    pair.append(auth.authenticate(f"Bearer {token}").name)
                except Unauthorized:
                    pair.append("-")
            seen.add((pair[0], pair[1]))

    threads = [threading.Thread(target=check) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(2000):
        auth.reload(b if i % 2 == 0 else a)
    stop.set()
    for t in threads:
        t.join()
    # Each lookup finds its token under one name or the other, never "unknown".
    assert all("-" not in pair for pair in seen)
    assert {name for pair in seen for name in pair} <= {"a", "b", "a2", "b2"}
