"""The OpenAPI document checked into docs/ is the one the ingest API serves."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import httpx
from fixtures_collectors import start_ingest

from watchkeeper.collectors.openapi import ingest_openapi
from watchkeeper.tsdb import SQLiteStore

ROOT = Path(__file__).resolve().parent.parent


def test_the_checked_in_document_is_current() -> None:
    spec = importlib.util.spec_from_file_location(
        "write_openapi", ROOT / "scripts/write_openapi.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (ROOT / "docs/openapi.json").read_text() == module.render(), (
        "docs/openapi.json is stale: run python scripts/write_openapi.py"
    )


def test_the_server_serves_the_document_for_its_configuration(store: SQLiteStore) -> None:
    ingest = start_ingest(store)
    try:
        served = httpx.get(f"{ingest.url}/openapi.json", timeout=10).json()
    finally:
        ingest.server.stop()
    assert served == json.loads(json.dumps(ingest_openapi(auth=False, rate_limited=False)))
