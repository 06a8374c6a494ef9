"""Hostile strings in every name and value a client can send: stored verbatim or refused by
name, never executed.

Each string goes, over real HTTP to a real ingest server and SQLite file, into every place a
batch carries text at once: model, version, prediction id, feature names and values, output,
label, sample name, sample label names and values, batch id. It must either be read back
byte-identical through the store, or be refused with a 4xx whose details name the field; and
the database must keep its tables, rows and integrity.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fixtures_collectors import Ingest, start_ingest
from hypothesis import given, settings
from hypothesis import strategies as st

from watchkeeper.tsdb import Label, Prediction, Sample, SQLiteStore
from watchkeeper.tsdb.flux import string_literal

NOW = time.time()

HOSTILE = [
    "x'); DROP TABLE predictions; --",
    '"; DROP TABLE samples; --',
    "' OR '1'='1",
    "1; DELETE FROM models WHERE 1=1",
    "Robert'); UPDATE labels SET label = 0; --",
    '") |> drop(columns: ["_value"]) |> yield(name: "x") //',  # Flux
    'x" or r._measurement =~ /.*/ or r.model == "',
    "${jndi:ldap://127.0.0.1/x}",
    "../../../../etc/passwd",
    "..\\..\\..\\windows\\system32\\config",
    "/dev/zero",
    "a\x00b",
    "\x00",
    "\r\n\t\x0b\x0c",
    "\x1b[2J\x1b[31mred\x1b[0m",
    "\u202etxt.exe",
    "\ufeffbom",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 😀 中文 עברית",
    "%s%s%n%x",
    "{0}{1}{__class__}",
    "<script>alert(1)</script>",
    "null",
    "NaN",
    "\\",
    '"',
    '$."a".b[0]',
    "features.x",
    " ",
]

TABLES_SQL = "SELECT type, name FROM sqlite_master ORDER BY type, name"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ingest]:
    """Ingest with default limits (10 MB bodies), so a 1 MB string reaches validation."""
    store = SQLiteStore(tmp_path_factory.mktemp("hostile") / "w.db")
    running = start_ingest(store)
    try:
        yield running
    finally:
        running.server.stop()
        store.close()


def everywhere(s: str, ts: float = NOW - 60) -> dict[str, Any]:
    """A batch carrying `s` in every text field."""
    return {
        "batch_id": s,
        "predictions": [
            {
                "model": s,
                "prediction_id": s,
                "timestamp": ts,
                "features": {s: s, "n": 1.5},
                "output": s,
                "version": s,
            }
        ],
        "labels": [{"model": s, "prediction_id": s, "label": s, "timestamp": ts}],
        "samples": [
            {"model": s, "name": s, "timestamp": ts, "value": 1.0, "labels": {s: s}, "version": s}
        ],
    }


def post(server: Ingest, body: bytes) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/ingest",
        content=body,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )


def database(path: Path) -> tuple[list[tuple[str, str]], str]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(TABLES_SQL).fetchall(), conn.execute(
            "PRAGMA integrity_check"
        ).fetchone()[0]
    finally:
        conn.close()


@pytest.mark.parametrize("s", HOSTILE, ids=[repr(s)[:30] for s in HOSTILE])
@pytest.mark.parametrize("ascii_only", [False, True], ids=["utf8", "escaped"])
def test_hostile_text_is_stored_verbatim_and_never_executed(
    server: Ingest, s: str, ascii_only: bool
) -> None:
    store = server.store
    schema_before, _ = database(store.path)
    ts = NOW - 60 - len(HOSTILE) + HOSTILE.index(s)
    response = post(server, json.dumps(everywhere(s, ts), ensure_ascii=ascii_only).encode())
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == {"predictions": 1, "labels": 1, "samples": 1}

    [prediction] = store.predictions(s, 0, math.inf)
    assert prediction == Prediction(
        model=s,
        prediction_id=s,
        timestamp=ts,
        features={s: s, "n": 1.5},
        output=s,
        version=s,
    )
    assert prediction.model.encode() == s.encode()  # byte-identical, NULs included
    assert store.labels(s, [s]) == {s: Label(s, s, s, ts)}
    assert store.samples(s, s, 0, math.inf) == [Sample(s, s, ts, 1.0, s, ((s, s),))]
    assert s in store.series(s)
    assert any(m.name == s and m.versions == (s,) for m in store.models())
    frame = store.prediction_frame(s, 0, math.inf)
    assert frame["output"].tolist() == [s]
    # The string as a read argument matches itself only, never "everything".
    assert store.predictions(s + "'", 0, math.inf) == []
    assert store.labels(s, [s + "' OR '1'='1"]) == {}

    schema_after, integrity = database(store.path)
    assert schema_after == schema_before
    assert integrity == "ok"


def test_every_hostile_model_is_still_there_and_alone(server: Ingest) -> None:
    """After all of the above, each model holds exactly its own one prediction (no statement
    deleted, updated or merged anything)."""
    for s in HOSTILE:
        stored = server.store.predictions(s, 0, math.inf)
        assert [p.prediction_id for p in stored] == ([s] if stored else [])


def test_hostile_feature_names_as_aggregate_fields_are_data_not_sql(server: Ingest) -> None:
    s = 'x") OR 1=1; DROP TABLE rollups; --'
    body = everywhere(s)
    body["predictions"][0]["features"] = {s: 2.0, 'q"uote': 3.0}
    assert post(server, json.dumps(body).encode()).status_code == 200
    day = 86400.0
    start = math.floor(NOW / day) * day - day
    assert server.store.aggregate_prediction_field(
        s, f"features.{s}", "sum", start, start + 2 * day, 2 * day
    ) == [(start, 2.0)]
    assert server.store.aggregate_prediction_field(
        s, 'features.q"uote', "max", start, start + 2 * day, 2 * day
    ) == [(start, 3.0)]
    assert database(server.store.path)[1] == "ok"


MEGA = "A" * 1_000_000


@pytest.mark.parametrize(
    ("place", "loc"),
    [
        (("predictions", "model"), "predictions.0.model"),
        (("predictions", "prediction_id"), "predictions.0.prediction_id"),
        (("predictions", "version"), "predictions.0.version"),
        (("predictions", "output"), "predictions.0.output"),
        (("predictions", "feature_name"), "predictions.0.features"),
        (("predictions", "feature_value"), "predictions.0.features['k']"),
        (("labels", "label"), "labels.0.label"),
        (("samples", "name"), "samples.0.name"),
        (("samples", "label_value"), "samples.0.labels['k']"),
    ],
)
def test_a_megabyte_string_is_refused_naming_the_field(
    server: Ingest, place: tuple[str, str], loc: str
) -> None:
    body = everywhere("ok")
    kind, field = place
    item = body[kind][0]
    if field == "feature_name":
        item["features"] = {MEGA: 1}
    elif field == "feature_value":
        item["features"] = {"k": MEGA}
    elif field == "label_value":
        item["labels"] = {"k": MEGA}
    else:
        item[field] = MEGA
    before = database(server.store.path)
    counts = len(server.store.predictions("ok", 0, math.inf))
    response = post(server, json.dumps(body).encode())
    assert response.status_code == 422, response.text[:300]
    assert [d["loc"] for d in response.json()["details"]] == [loc]
    assert "over the limit" in response.json()["details"][0]["msg"]
    assert len(response.content) < 10_000  # the answer does not echo the megabyte back
    assert database(server.store.path) == before
    assert len(server.store.predictions("ok", 0, math.inf)) == counts


NOT_UTF8 = {
    "latin1": (
        b'{"predictions": [{"model": "caf\xe9", "prediction_id": "p", "timestamp": 1}]}',
        "predictions.0.model",
    ),
    "overlong": (
        b'{"labels": [{"model": "m", "prediction_id": "\xc0\xaf", "label": 1, "timestamp": 1}]}',
        "labels.0.prediction_id",
    ),
    "feature-name": (
        b'{"predictions": [{"model": "m", "prediction_id": "p", "timestamp": 1, '
        b'"features": {"\xff": 1}}]}',
        "predictions.0.features.\\udcff",
    ),
}


@pytest.mark.parametrize(("raw", "loc"), NOT_UTF8.values(), ids=NOT_UTF8.keys())
def test_bytes_that_are_not_utf8_are_refused_naming_the_field(
    server: Ingest, raw: bytes, loc: str
) -> None:
    before = database(server.store.path)
    response = post(server, raw)
    assert response.status_code == 400
    payload = response.json()
    assert "not UTF-8" in payload["error"]
    assert [d["loc"] for d in payload["details"]] == [loc]
    assert database(server.store.path) == before


SURROGATES = {
    "escaped": (
        b'{"predictions": [{"model": "\\ud800", "prediction_id": "p", "timestamp": 1}]}',
        "predictions.0.model",
    ),
    "label-value": (
        b'{"samples": [{"model": "m", "name": "n", "timestamp": 1, "value": 1, '
        b'"labels": {"k": "a\\udfffb"}}]}',
        "samples.0.labels.k",
    ),
    "feature-name": (
        b'{"predictions": [{"model": "m", "prediction_id": "p", "timestamp": 1, '
        b'"features": {"\\udc00": 1}}]}',
        "predictions.0.features.\\udc00",
    ),
    "utf8-encoded": (b'{"batch_id": "\xed\xa0\x80"}', "batch_id"),
    "utf8-encoded-model": (
        b'{"predictions": [{"model": "\xed\xbf\xbf", "prediction_id": "p", "timestamp": 1}]}',
        "predictions.0.model",
    ),
}


@pytest.mark.parametrize(("raw", "loc"), SURROGATES.values(), ids=SURROGATES.keys())
def test_lone_surrogates_are_refused_naming_the_field(server: Ingest, raw: bytes, loc: str) -> None:
    before = database(server.store.path)
    response = post(server, raw)
    assert response.status_code == 400
    payload = response.json()
    assert "surrogate" in payload["error"]
    assert [d["loc"] for d in payload["details"]] == [loc]
    assert database(server.store.path) == before


def test_integers_of_any_size_are_stored_verbatim(server: Ingest) -> None:
    """JSON integers beyond 64 bits (up to the range of a double) read back as the same int."""
    features = {"big": 2**70, "neg": -(2**64), "edge": 2**63, "max": 2**1023, "small": 3}
    body = everywhere("big-ints")
    body["predictions"][0]["features"] = features
    body["predictions"][0]["output"] = 2**100
    response = post(server, json.dumps(body).encode())
    assert response.status_code == 200, response.text
    [stored] = server.store.predictions("big-ints", 0, math.inf)
    assert stored.features == features
    assert all(type(v) is int for v in stored.features.values())
    assert stored.output == 2**100
    frame = server.store.prediction_frame("big-ints", 0, math.inf)
    assert frame["small"].tolist() == [3]


def test_control_characters_in_error_answers_stay_inside_json(server: Ingest) -> None:
    """A refused hostile name is quoted in the answer, never splits it or a log line."""
    body = everywhere("fine")
    body["predictions"][0]["features"] = {"": 1, "\n\x1b[31m": 2}
    response = post(server, json.dumps(body).encode())
    assert response.status_code == 422
    assert response.json()["details"][0]["loc"] == "predictions.0.features"
    assert b"\n" not in response.content and b"\x1b" not in response.content


@given(st.text())
@settings(max_examples=300, deadline=None)
def test_flux_string_literals_evaluate_to_exactly_the_string(s: str) -> None:
    """Flux has no bound parameters on InfluxDB OSS: every string is spliced in as a literal.
    The literal must be one token (no unescaped quote closes it early) that reads back as `s`."""
    literal = string_literal(s)
    assert literal[0] == literal[-1] == '"'
    assert unflux(literal[1:-1]) == s


def unflux(body: str) -> str:
    """Read the inside of a Flux string literal as Flux does; fail on an unescaped quote or
    an unescaped `${` (interpolation)."""
    out: list[str] = []
    escapes = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "$": "$"}
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\":
            out.append(escapes[body[i + 1]])
            i += 2
            continue
        assert c != '"', f"unescaped quote in {body!r}"
        assert not body.startswith("${", i), f"interpolation in {body!r}"
        out.append(c)
        i += 1
    return "".join(out)
