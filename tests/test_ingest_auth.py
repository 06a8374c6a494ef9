"""Ingest auth and rate limits over real HTTP: bearer tokens scoped to models, 401/403/429."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fixtures_collectors import Ingest, registry_fixture, start_ingest  # noqa: F401
from prometheus_client import CollectorRegistry

from watchkeeper import Monitor
from watchkeeper.collectors.auth import RateLimiter
from watchkeeper.collectors.ingest import create_app
from watchkeeper.config import IngestConfig, config_from_dict
from watchkeeper.tsdb import SQLiteStore

CHURN_TOKEN = "churn-service-secret"
ADMIN_TOKEN = "admin-from-the-environment"
T0 = 1_700_000_000.0


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


TOKENS = [
    {"name": "churn-svc", "models": ["churn"], "sha256": sha256(CHURN_TOKEN)},
    {"name": "admin", "models": ["*"], "env": "WK_ADMIN_TOKEN"},
]


@pytest.fixture
def secured(store: SQLiteStore) -> Iterator[Ingest]:
    running = start_ingest(store, environ={"WK_ADMIN_TOKEN": ADMIN_TOKEN}, tokens=TOKENS)
    yield running
    running.server.stop()


def body(model: str, n: int = 2, start: int = 0) -> dict[str, Any]:
    return {
        "predictions": [
            {"model": model, "prediction_id": f"{model}-{i}", "timestamp": T0 + i}
            for i in range(start, start + n)
        ]
    }


def post(ingest: Ingest, payload: object, token: str | None = None, **headers: str) -> Any:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(f"{ingest.url}/v1/ingest", json=payload, headers=headers, timeout=10)


def stored(store: SQLiteStore, model: str) -> int:
    return len(store.predictions(model, 0, math.inf))


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {CHURN_TOKEN}"}],
    ids=["none", "wrong token", "not bearer"],
)
def test_no_or_wrong_token_is_401(secured: Ingest, headers: dict[str, str]) -> None:
    response = post(secured, body("churn"), **headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["error"]
    assert secured.rejected("unauthorized") == 1
    assert stored(secured.store, "churn") == 0


def test_a_token_writes_its_models_and_gets_403_for_another_models_data(secured: Ingest) -> None:
    assert post(secured, body("churn"), CHURN_TOKEN).status_code == 200
    mixed = body("churn", start=10)
    mixed["predictions"].append(body("fraud")["predictions"][0])
    response = post(secured, mixed, CHURN_TOKEN)
    assert response.status_code == 403
    assert response.json()["details"] == [
        {"loc": "predictions.2.model", "msg": "token 'churn-svc' may not write model 'fraud'"}
    ]
    assert secured.rejected("forbidden") == 1
    assert stored(secured.store, "churn") == 2  # the refused batch stored nothing at all
    assert stored(secured.store, "fraud") == 0


def test_a_token_from_the_environment_may_write_any_model(secured: Ingest) -> None:
    assert post(secured, body("fraud"), ADMIN_TOKEN).status_code == 200
    assert stored(secured.store, "fraud") == 2


def test_a_monitor_with_its_token_delivers(secured: Ingest, registry: CollectorRegistry) -> None:
    good = Monitor("churn", endpoint=secured.url, token=CHURN_TOKEN, registry=registry)
    wrong = Monitor("fraud", endpoint=secured.url, token=CHURN_TOKEN, registry=registry)
    try:
        good.log_prediction({"x": 1}, 0.5)
        wrong.log_prediction({"x": 1}, 0.5)
        assert good.flush(timeout=10) is True
        assert wrong.flush(timeout=10) is False  # 403: dropped and counted, never retried
        assert wrong.stats.dropped == {"rejected": 1}
    finally:
        good.close(timeout=1)
        wrong.close(timeout=1)
    assert stored(secured.store, "churn") == 1


def test_a_token_env_var_that_is_not_set_fails_at_start(store: SQLiteStore) -> None:
    config = IngestConfig.model_validate({"tokens": TOKENS})
    with pytest.raises(ValueError, match="WK_ADMIN_TOKEN"):
        create_app(store, config, environ={})


def test_tokens_in_config_are_validated() -> None:
    with pytest.raises(ValueError, match="exactly one of sha256"):
        config_from_dict({"ingest": {"tokens": [{"name": "a", "models": ["m"]}]}})
    with pytest.raises(ValueError, match=r"ingest\.tokens\.0\.sha256"):
        config_from_dict({"ingest": {"tokens": [{"name": "a", "models": ["m"], "sha256": "x"}]}})


def test_over_the_rate_limit_is_429_with_retry_after_and_the_client_waits_it_out(
    store: SQLiteStore, registry: CollectorRegistry
) -> None:
    running = start_ingest(store, rate_limit=20, rate_burst=10)
    try:
        assert post(running, body("churn", n=10)).status_code == 200
        refused = post(running, body("churn", n=10, start=10))
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
        assert running.rejected("rate_limited") == 1

        monitor = Monitor("churn", endpoint=running.url, registry=registry, batch_size=10)
        for i in range(10):
            monitor.log_prediction({"x": i}, 0.5, prediction_id=f"m{i}")
        assert monitor.flush(timeout=15) is True  # delivered after waiting as told
        monitor.close(timeout=1)
        assert stored(store, "churn") == 20
    finally:
        running.server.stop()


def test_rate_limiter_refills_at_its_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(10, 20, clock=lambda: now[0])
    assert limiter.take("a", 20) == 0
    assert limiter.take("a", 5) == pytest.approx(0.5)
    assert limiter.take("b", 5) == 0  # buckets are per key
    now[0] = 0.5
    assert limiter.take("a", 5) == 0
    assert limiter.take("a", 100) == pytest.approx(2.0)  # over the burst: waits for a full bucket
    now[0] = 2.5
    assert limiter.take("a", 100) == 0  # then passes, leaving the bucket in debt
    assert limiter.take("a", 1) > 0
