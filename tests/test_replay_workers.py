"""`replay` with forked workers writes exactly what it writes judging alone.

`watchkeeper replay` judges the later windows of a large batch in forked child processes
(and profiles the reference in one while the batch is built). The files it writes must not
depend on that: same findings, same alert transitions, same order, byte for byte, also when
a worker fails and its windows are judged in the parent instead. The thresholds that keep
small batches in one process are lowered here so that a small stream takes the worker path.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest

from watchkeeper.detector import replay as replay_module
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
