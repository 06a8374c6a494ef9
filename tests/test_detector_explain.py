"""`watchkeeper explain` finds a stored finding by its id without reading the whole store: newest
first in growing time slices, or in one window when the caller knows where it is (the
dashboard); the output is the same either way."""

from __future__ import annotations

import doctest
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import watchkeeper.detector.explain
from watchkeeper.config import config_from_dict
from watchkeeper.detector import Detector
from watchkeeper.detector.explain import ExplainError, explain_store, find_stored
from watchkeeper.detector.replay import finding_id
from watchkeeper.tsdb import Finding, Prediction, SQLiteStore

NOW = 1_700_000_000.0
DAY = 86400.0


class Reading:
    """A real store that counts the findings each `findings` call hands back."""

    def __init__(self, inner: SQLiteStore) -> None:
        self._inner = inner
        self.reads: list[int] = []

    def findings(self, *args: Any, **kwargs: Any) -> list[Finding]:
        found = self._inner.findings(*args, **kwargs)
        self.reads.append(len(found))
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def finding(model: str, subject: str, end: float) -> Finding:
    return Finding(
        model=model,
        check="drift",
        subject=subject,
        statistic="ks",
        value=0.1,
        threshold=0.2,
        breached=False,
        severity="warning",
        window_start=end - 3600,
        window_end=end,
    )


@pytest.fixture
def sixty_days(store: SQLiteStore) -> tuple[Reading, list[Finding]]:
    """Two models judged every hour for 60 days, 3 features each (8,640 findings);
    predictions so the store knows both models."""
    found = [
        finding(model, subject, NOW - hour * 3600.0)
        for model in ("a", "b")
        for subject in ("x", "y", "z")
        for hour in range(1440)
    ]
    store.write(
        predictions=[Prediction(m, f"{m}1", NOW - 10, {"x": 1.0}) for m in ("a", "b")],
        findings=found,
    )
    return Reading(store), found


def test_a_recent_finding_is_found_after_reading_only_recent_findings(
    sixty_days: tuple[Reading, list[Finding]],
) -> None:
    store, found = sixty_days
    wanted = finding("b", "y", NOW - 2 * 3600.0)
    assert find_stored(store, finding_id(wanted)) == wanted  # type: ignore[arg-type]
    assert sum(store.reads) < len(found) / 20


@pytest.mark.parametrize("age_days", [0.5, 3.0, 20.0, 59.9])
def test_any_finding_is_found_without_hints(
    sixty_days: tuple[Reading, list[Finding]], age_days: float
) -> None:
    store, _ = sixty_days
    end = NOW - round(age_days * 24) * 3600.0
    wanted = finding("a", "z", end)
    assert find_stored(store, finding_id(wanted)) == wanted  # type: ignore[arg-type]


def test_hints_read_one_window_and_a_wrong_hint_still_finds_it(
    sixty_days: tuple[Reading, list[Finding]],
) -> None:
    store, _ = sixty_days
    wanted = finding("a", "x", NOW - 30 * DAY)
    key = finding_id(wanted)
    assert find_stored(store, key, model="a", window_end=wanted.window_end) == wanted  # type: ignore[arg-type]
    assert store.reads == [3]  # the window's three findings of model a
    store.reads.clear()
    assert find_stored(store, key, model="a", window_end=NOW - 2 * DAY) == wanted  # type: ignore[arg-type]
    assert find_stored(store, key, model="b") == wanted  # type: ignore[arg-type]
    assert find_stored(store, key, window_end=wanted.window_end + 0.5) == wanted  # type: ignore[arg-type]


def test_an_unknown_id_is_none(sixty_days: tuple[Reading, list[Finding]], tmp_path: Path) -> None:
    store, found = sixty_days
    assert find_stored(store, "0123456789abcdef") is None  # type: ignore[arg-type]
    assert sum(store.reads) == len(found)  # every finding looked at exactly once
    empty = SQLiteStore(tmp_path / "empty.db")
    try:
        assert find_stored(empty, "0123456789abcdef") is None
    finally:
        empty.close()


def test_explain_prints_the_same_with_and_without_hints(tmp_path: Path) -> None:
    config = config_from_dict(
        {
            "storage": {"path": str(tmp_path)},
            "models": {
                "m": {"window": "1h", "every": "1h", "checks": {"drift": {"reference": "1h"}}}
            },
        }
    )
    store = SQLiteStore(config.storage.store_file)
    rng = np.random.default_rng(13)
    t0 = NOW - 5 * 3600.0
    store.write(
        predictions=[
            Prediction("m", f"p{i}", t0 + i * 10.0, {"x": float(rng.normal() + (i > 1000))})
            for i in range(4 * 360)
        ]
    )
    findings = Detector(store, config).run_once(t0 + 4 * 3600.0)
    store.close()
    drift = next(f for f in findings if f.check == "drift" and f.breached)
    plain, hinted = io.StringIO(), io.StringIO()
    assert explain_store(finding_id(drift), config, plain) == 0, plain.getvalue()
    assert (
        explain_store(finding_id(drift), config, hinted, model="m", window_end=drift.window_end)
        == 0
    )
    assert hinted.getvalue() == plain.getvalue()
    assert "recomputed: same numbers" in plain.getvalue()
    with pytest.raises(ExplainError, match="no finding with id 'nope'"):
        explain_store("nope", config, io.StringIO(), model="m", window_end=drift.window_end)


def test_explain_examples_run() -> None:
    result = doctest.testmod(watchkeeper.detector.explain)
    assert result.attempted and not result.failed
