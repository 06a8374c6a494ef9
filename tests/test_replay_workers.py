"""`replay`'s fast paths give exactly what the plain ones give.

`watchkeeper replay` judges the later windows of a large batch in forked child processes
(and profiles the reference in one while the batch is built). The files it writes must not
depend on that: same findings, same alert transitions, same order, byte for byte, also when
a worker fails and its windows are judged in the parent instead. The thresholds that keep
small batches in one process are lowered here so that a small stream takes the worker path.

It also reads CSV files with every column's type fixed from the file's first block (Arrow
then keeps far less in memory); the table must be the one Arrow's type inference gives,
also when a later block needs a wider type than the first.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
import pytest
from pyarrow import csv as arrow_csv

from watchkeeper.detector import batch_from_frame
from watchkeeper.detector import replay as replay_module
from watchkeeper.detector.frame import read_table
from watchkeeper.detector.judge import ModelJudge
from watchkeeper.detector.streams import Change, StreamSpec, generate

DAY = 86400.0

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="replay forks workers on Linux only"
)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    # a shift and an outage in the later half (the workers' windows), so that alerts fire
    # and resolve there and the lifecycle has to follow state across the workers' stretches
    spec = StreamSpec(
        days=3.0,
        per_hour=120,
        numeric=4,
        categorical=1,
        seed=11,
        changes=(
            Change("mean_shift", 1.2 * DAY, until=2.1 * DAY, feature="x1", amount=1.5),
            Change("error_burst", 2.3 * DAY, until=2.5 * DAY, amount=0.3),
        ),
    )
    predictions, labels, reference = generate(spec)
    where = tmp_path_factory.mktemp("workers")
    paths = {n: where / f"{n}.csv" for n in ("predictions", "labels", "reference")}
    predictions.to_csv(paths["predictions"], index=False)
    labels.to_csv(paths["labels"], index=False)
    reference.to_csv(paths["reference"], index=False)
    return paths


def run(files: dict[str, Path], workers: int, reference: bool = True) -> tuple[str, str, str]:
    out, findings = io.StringIO(), io.StringIO()
    summary = replay_module.replay(
        files["predictions"],
        out,
        labels=files["labels"],
        reference=files["reference"] if reference else None,
        findings_out=findings,
        workers=workers,
    )
    summary.seconds = summary.read_seconds = 0.0
    return out.getvalue(), findings.getvalue(), summary.text()


@pytest.fixture
def fork_small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replay_module, "MIN_ROWS_TO_FORK", 0)
    monkeypatch.setattr(replay_module, "MIN_WINDOWS_PER_WORKER", 4)


@pytest.mark.usefixtures("fork_small_batches")
@pytest.mark.parametrize("workers", [2, 3])
@pytest.mark.parametrize("reference", [True, False])
def test_workers_write_the_same_files(
    files: dict[str, Path], workers: int, reference: bool
) -> None:
    alone = run(files, 1, reference)
    alerts = alone[0].splitlines()
    assert any('"state": "firing"' in a for a in alerts)
    assert any('"state": "resolved"' in a for a in alerts)
    assert run(files, workers, reference) == alone


@pytest.mark.usefixtures("fork_small_batches")
def test_a_failing_worker_has_its_windows_judged_here(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    alone = run(files, 1)
    parent = os.getpid()
    skip = ModelJudge.skip

    def fail_in_a_child(self: ModelJudge, *args: object, **kwargs: object) -> None:
        if os.getpid() != parent:
            raise RuntimeError("worker broke")
        skip(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ModelJudge, "skip", fail_in_a_child)
    assert run(files, 3) == alone
    err = capfd.readouterr().err
    assert "worker broke" in err and "judging its windows here" in err


ROWS = 60_000
"""Rows of the files below: ~3 MB, several of Arrow's 1 MB blocks."""


def late_changes(case: str) -> pd.DataFrame:
    """Predictions whose later rows need what the first block does not show."""
    rng = np.random.default_rng(5)
    seconds = np.sort(rng.uniform(0, 86400, ROWS))
    frame = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(seconds.round(), unit="s", utc=True).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
            "prediction_id": [f"p{i}" for i in range(ROWS)],
            "x": rng.normal(size=ROWS).round(6),
            "n": rng.integers(0, 50, ROWS),
            "c": rng.choice(["a", "b", "c"], ROWS),
            "error": rng.integers(0, 2, ROWS),
            "prediction": rng.integers(0, 2, ROWS),
        }
    )
    frame.loc[rng.random(ROWS) < 0.01, "x"] = np.nan
    late = slice(ROWS - 5_000, None)
    if case == "a fraction in an integer column":
        frame["n"] = frame["n"].astype(object)
        frame.loc[ROWS - 10, "n"] = 0.5
    elif case == "many categories in a later block":
        frame.loc[late, "c"] = [f"v{i}" for i in range(5_000)]
    elif case == "a column empty in the first block":
        frame.loc[: ROWS // 2, "n"] = np.nan
    elif case == "fractional seconds later":
        frame.loc[late, "timestamp"] = frame.loc[late, "timestamp"].str.replace("Z", ".250Z")
    elif case == "missing values in an integer column":
        frame["error"] = frame["error"].astype(object)
        frame.loc[late, "error"] = None
    return frame


@pytest.mark.parametrize(
    "case",
    [
        "nothing",
        "a fraction in an integer column",
        "many categories in a later block",
        "a column empty in the first block",
        "fractional seconds later",
        "missing values in an integer column",
    ],
)
def test_files_read_as_type_inference_reads_them(tmp_path: Path, case: str) -> None:
    from watchkeeper.detector.tables import batch_from_table, read_file

    path = tmp_path / "predictions.csv"
    late_changes(case).to_csv(path, index=False)
    assert path.stat().st_size > 2 * 2**20
    inferred = arrow_csv.read_csv(
        path,
        convert_options=arrow_csv.ConvertOptions(
            auto_dict_encode=True,
            auto_dict_max_cardinality=1000,
            column_types={"prediction_id": pa.string()},
        ),
    )
    table = read_file(str(path))
    assert table.schema == inferred.schema
    assert table.equals(inferred)
    ours, theirs = batch_from_table(table), batch_from_frame(read_table(str(path)))
    for name in ("times", "output", "error"):
        np.testing.assert_array_equal(getattr(ours, name), getattr(theirs, name), err_msg=name)
    assert list(ours.columns) == list(theirs.columns)
    for name in ours.columns:
        np.testing.assert_array_equal(ours.columns[name], theirs.columns[name], err_msg=name)
