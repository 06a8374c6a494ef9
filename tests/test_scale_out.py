"""Scale-out on one store: two ingest replicas, two detector shards and one alerting replica,
each its own `watchkeeper` process on loopback, lose and duplicate nothing (issue 8)."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from conftest import WebhookReceiver
from fixtures_collectors import free_port, wait_for

from watchkeeper import Monitor
from watchkeeper.detector.shard import Shard, parse_shard

WATCHKEEPER = str(Path(sys.executable).parent / "watchkeeper")
MODELS = [f"scorer-{i}" for i in range(6)]
BROKEN = "scorer-0"  # its errors jump to 50% for the last 40 minutes
PER_MODEL = 600  # one prediction every 10 s over the last 100 minutes


class Processes:
    def __init__(self) -> None:
        self.running: list[subprocess.Popen[str]] = []

    def start(self, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [WATCHKEEPER, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.running.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.running:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.running:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def processes() -> Iterator[Processes]:
    procs = Processes()
    yield procs
    procs.stop_all()


def write_config(tmp_path: Path, webhook: WebhookReceiver) -> Path:
    config = {
        "storage": {"path": str(tmp_path / "data")},
        "detector": {
            "interval": "1s",
            "defaults": {
                "window": "10m",
                "every": "10m",
                "checks": {"error_rate": {"for": "0s"}},
            },
        },
        "alerting": {
            "console": False,
            "receivers": [webhook.url],
            "route": {"group_wait": "0s", "group_interval": "1m"},
        },
    }
    path = tmp_path / "watchkeeper.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def ready(proc: subprocess.Popen[str], what: str) -> str:
    """The process's first line once it says it runs; fails with its output if it died."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "watchkeeper running" not in line:
        rest = proc.stdout.read() if proc.poll() is not None else ""
        pytest.fail(f"{what} did not start: {line}{rest}")
    return line


def send_history(urls: list[str], now: float) -> int:
    """Every model's last 100 minutes, each prediction through one of the replicas in turn."""
    monitors = {
        (model, i): Monitor(model, "1", endpoint=url, flush_interval_s=0.2)
        for model in MODELS
        for i, url in enumerate(urls)
    }
    start = now - PER_MODEL * 10.0
    for k in range(PER_MODEL):
        t = start + k * 10.0
        for model in MODELS:
            failed = model == BROKEN and t >= now - 40 * 60 and k % 2 == 0
            monitors[(model, k % len(urls))].log_prediction(
                {"x": float(k % 7)},
                None if failed else 0.5,
                prediction_id=f"{model}-{k}",
                latency_s=0.02,
                error=failed,
                timestamp=t,
            )
    for monitor in monitors.values():
        assert monitor.flush(timeout=30), "a replica did not take every prediction"
        monitor.close()
    return PER_MODEL * len(MODELS)


def judged(output: str) -> tuple[int, int]:
    match = re.search(r"judged (\d+) model\(s\).*?: (\d+) finding\(s\)", output)
    assert match, output
    return int(match.group(1)), int(match.group(2))


def test_two_ingest_replicas_two_detector_shards_and_one_alerting_lose_and_repeat_nothing(
    tmp_path: Path, webhook: WebhookReceiver, processes: Processes
) -> None:
    config = str(write_config(tmp_path, webhook))
    now = time.time()

    # Two stateless ingest replicas on one data directory, each on its own port.
    ports = [free_port(), free_port()]
    replicas = [
        processes.start("serve", "--config", config, "--role", "ingest", "--port", str(port))
        for port in ports
    ]
    for proc in replicas:
        ready(proc, "an ingest replica")
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    sent = send_history(urls, now)

    db = tmp_path / "data" / "watchkeeper.db"
    with sqlite3.connect(db) as conn:
        stored, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT prediction_id) FROM predictions"
        ).fetchone()
    assert stored == distinct == sent

    # One alerting replica, with health and metrics on its own port; it follows findings in
    # the store from the first one, since it starts before any exist.
    status_port = free_port()
    alerting = processes.start(
        "serve", "--config", config, "--role", "alerting", "--port", str(status_port)
    )
    ready(alerting, "the alerting replica")
    health = httpx.get(f"http://127.0.0.1:{status_port}/healthz", timeout=5).json()
    assert "ingest" not in health["components"]

    # Two detector shards judge at the same time; each model belongs to exactly one.
    shards = [
        processes.start("detect", "--config", config, "--once", "--shard", f"{i}/2") for i in (1, 2)
    ]
    outputs = [proc.communicate(timeout=120)[0] for proc in shards]
    assert [proc.returncode for proc in shards] == [0, 0], outputs
    counts = [judged(out) for out in outputs]
    expected_models = [sum(Shard(i, 2).owns(m) for m in MODELS) for i in (1, 2)]
    assert [models for models, _ in counts] == expected_models
    with sqlite3.connect(db) as conn:
        (findings,) = conn.execute("SELECT count(*) FROM findings").fetchone()
        (keys,) = conn.execute(
            "SELECT count(*) FROM (SELECT DISTINCT model, check_name, subject, window_end "
            "FROM findings)"
        ).fetchone()
        per_model = dict(conn.execute("SELECT model, count(*) FROM findings GROUP BY model"))
    assert findings == keys == sum(n for _, n in counts) > 0
    assert set(per_model) == set(MODELS)

    # A second round (a restart) judges nothing twice.
    again = [
        processes.start("detect", "--config", config, "--once", "--shard", f"{i}/2") for i in (1, 2)
    ]
    assert [judged(proc.communicate(timeout=120)[0])[1] for proc in again] == [0, 0]

    # Alerting notifies the broken model's error rate exactly once.
    def error_alerts() -> list[str] | None:
        titles = [t for t in webhook.titles() if BROKEN in t and "error_rate" in t]
        return titles or None

    first = wait_for(error_alerts, 60, "the error-rate alert of the broken model")
    time.sleep(3)  # several more follower cycles: nothing is sent again
    assert first == [t for t in webhook.titles() if BROKEN in t and "error_rate" in t]
    assert len(first) == 1 and first[0].startswith("[FIRING")
    assert not [t for t in webhook.titles() if any(m in t for m in MODELS[1:])]
    for proc in (*replicas, alerting):
        assert proc.poll() is None, "a process died"


def test_shards_split_models_evenly_and_exactly_once() -> None:
    names = [f"model-{i}" for i in range(3000)]
    for n in (1, 2, 3, 7):
        owners = [[i for i in range(1, n + 1) if Shard(i, n).owns(name)] for name in names]
        assert all(len(o) == 1 for o in owners)
        sizes = [sum(o == [i] for o in owners) for i in range(1, n + 1)]
        assert min(sizes) > 0.8 * len(names) / n


@pytest.mark.parametrize("text", ["0/2", "3/2", "1/0", "a/b", "1", "1/2/3", "-1/2"])
def test_a_bad_shard_is_refused_by_the_cli_with_the_expected_form(text: str) -> None:
    with pytest.raises(ValueError):
        parse_shard(text)
    result = subprocess.run(
        [WATCHKEEPER, "detect", "--once", "--shard", text],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--shard" in result.stderr and ("I/N" in result.stderr or "between" in result.stderr)


def test_every_command_of_the_scaling_guide_is_what_the_scale_out_test_starts() -> None:
    import shlex

    from test_examples import code_blocks

    from watchkeeper.cli import build_parser

    doc = Path(__file__).resolve().parents[1] / "docs" / "scaling.md"
    lines = [
        line
        for lang, text in code_blocks(doc)
        if lang == "sh"
        for line in text.splitlines()
        if line.strip()
    ]
    assert len(lines) == 5
    parsed = [build_parser().parse_args(shlex.split(line)[1:]) for line in lines]
    assert [(a.command, getattr(a, "role", None)) for a in parsed] == [
        ("serve", [["ingest"]]),
        ("serve", [["ingest"]]),
        ("detect", None),
        ("detect", None),
        ("serve", [["alerting", "scraper"]]),
    ]
    assert [str(a.shard) for a in parsed if a.command == "detect"] == ["1/2", "2/2"]
