"""The example model service, run for real: uvicorn serving examples/sklearn_service on a free
port, reporting to a real ingest server over a real SQLite store, driven by its traffic script
with the commands its README gives."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from fixtures_collectors import Ingest, free_port, start_ingest, wait_for

from watchkeeper.config import config_from_dict
from watchkeeper.tsdb import SQLiteStore

pytest.importorskip("sklearn", reason="scikit-learn is in the test extras")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "sklearn_service"
SHIFT_COMMAND = "python traffic.py --url http://127.0.0.1:8000 --requests 300 --shift 1.5"


@pytest.fixture
def ingest(tmp_path: Path) -> Iterator[Ingest]:
    store = SQLiteStore(tmp_path / "w.db")
    running = start_ingest(store)
    yield running
    running.server.stop()
    store.close()


@pytest.fixture
def service(tmp_path: Path, ingest: Ingest) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The README's uvicorn command, on a free port, reporting to `ingest`."""
    port = free_port()
    env = {**os.environ, "WATCHKEEPER_ENDPOINT": ingest.url, "MODEL_VERSION": "2024-06"}
    log = (tmp_path / "service.log").open("wb")
    uvicorn = str(Path(sys.executable).with_name("uvicorn"))
    process = subprocess.Popen(
        [uvicorn, "app:create_app", "--factory", "--host", "127.0.0.1", "--port", str(port)],
        cwd=EXAMPLE, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool | None:
            if process.poll() is not None:
                raise AssertionError((tmp_path / "service.log").read_text()[-3000:])
            return True if httpx.get(f"{url}/healthz", timeout=2).status_code == 200 else None

        wait_for(ready, 60, "the example service to start")
        yield url, process
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=20)
        log.close()


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, as a process manager would: the service's shutdown flushes the Monitor."""
    process.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal it caught
    assert process.wait(timeout=20) in (0, -signal.SIGTERM)


def test_the_services_predictions_labels_and_fallbacks_reach_the_store(
    service: tuple[str, subprocess.Popen[bytes]], ingest: Ingest
) -> None:
    url, process = service
    started = time.time()
    # a body the model cannot read is refused by FastAPI's validation, and nothing is logged
    assert httpx.post(f"{url}/predict", json={"features": {"x": "big"}}).status_code == 422
    done = subprocess.run(
        [sys.executable, "traffic.py", "--url", url, "--requests", "20", "--missing-every", "10"],
        cwd=EXAMPLE, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert "18 predictions labelled, 2 fallbacks" in done.stdout
    metrics = httpx.get(f"{url}/metrics/", timeout=5).text
    assert 'watchkeeper_predictions_total{model="breast-cancer",version="2024-06"} 18.0' in metrics
    shifted_from = time.time()
    done = subprocess.run(
        shlex.split(SHIFT_COMMAND.replace("http://127.0.0.1:8000", url)),
        cwd=EXAMPLE, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert "300 predictions labelled, 0 fallbacks" in done.stdout
    stop(process)

    store = ingest.store
    predictions = store.predictions("breast-cancer", started - 1, time.time() + 1)
    shifted = [p for p in predictions if p.timestamp >= shifted_from]
    assert len(shifted) == 300
    predictions = [p for p in predictions if p.timestamp < shifted_from]
    assert len(predictions) == 18
    # --shift 1.5 scales the size measurements the drift check should notice
    radius = [float(p.features["mean_radius"]) for p in predictions]  # type: ignore[arg-type]
    shifted_radius = [float(p.features["mean_radius"]) for p in shifted[:18]]  # type: ignore[arg-type]
    assert sum(shifted_radius) / 18 > 1.3 * sum(radius) / 18
    assert {p.version for p in predictions} == {"2024-06"}
    first = predictions[0]
    assert len(first.features) == 30 and "mean_radius" in first.features
    assert isinstance(first.output, float) and 0.0 <= first.output <= 1.0
    assert first.latency_s is not None and first.latency_s > 0
    assert not any(p.error for p in predictions)
    labels = store.labels("breast-cancer", [p.prediction_id for p in predictions])
    assert len(labels) == 18
    # a real model: its answers agree with the diagnoses the labels bring
    truth = {pid: label.label for pid, label in labels.items()}
    assert set(truth.values()) == {True, False}
    right = sum((p.output > 0.5) == truth[p.prediction_id] for p in predictions)  # type: ignore[operator]
    assert right >= 16
    fallbacks = store.samples("breast-cancer", "fallbacks", started - 1, time.time() + 1)
    assert len(fallbacks) == 2
    assert {dict(s.labels).get("reason") for s in fallbacks} == {"missing_features"}


# --------------------------------------------------------------------------------------------
# docs/instrumenting.md: every example runs as written, every command is one run here

DOC = ROOT / "docs" / "instrumenting.md"
FENCE = re.compile(r"^([ \t]*)```(\w+)\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)


def code_blocks(path: Path) -> list[tuple[str, str]]:
    """(language, text) of every fenced block of a Markdown file."""
    return [(m.group(2), textwrap.dedent(m.group(3))) for m in FENCE.finditer(path.read_text())]


def python_file(name: str) -> str:
    """The Python block of docs/instrumenting.md whose first line is `# NAME`."""
    for language, text in code_blocks(DOC):
        if language == "python" and text.startswith(f"# {name}\n"):
            return text
    raise AssertionError(f"no python block starting with '# {name}' in {DOC}")


def doc_commands() -> list[str]:
    lines = [line for lang, text in code_blocks(DOC) if lang == "sh" for line in text.splitlines()]
    return [line for line in lines if line.strip()]


GUNICORN = (
    "PROMETHEUS_MULTIPROC_DIR=/tmp/prom WATCHKEEPER_ENDPOINT=http://127.0.0.1:8765 "
    "gunicorn -w 2 -c gunicorn.conf.py --bind 127.0.0.1:8000 service:app"
)
TESTED_COMMANDS = {
    # run by test_the_services_predictions_labels_and_fallbacks_reach_the_store
    "cd examples/sklearn_service",
    "WATCHKEEPER_ENDPOINT=http://127.0.0.1:8765 uvicorn app:create_app --factory --port 8000",
    "python traffic.py --url http://127.0.0.1:8000 --requests 200 --missing-every 10",
    # run by test_the_flask_example_under_gunicorn_reports_from_every_worker
    "rm -rf /tmp/prom && mkdir /tmp/prom",
    GUNICORN,
}


def test_every_command_of_the_instrumenting_guide_is_one_these_tests_run() -> None:
    assert set(doc_commands()) <= TESTED_COMMANDS, set(doc_commands()) - TESTED_COMMANDS


def test_every_command_of_the_example_readme_is_one_these_tests_run() -> None:
    lines = [
        line.split("  #")[0].strip().removesuffix(" &")
        for lang, text in code_blocks(EXAMPLE / "README.md")
        if lang == "sh"
        for line in text.splitlines()
        if line.strip()
    ]
    # `watchkeeper serve` runs IngestServer(create_app(SQLiteStore)), which the `ingest`
    # fixture starts in-process; tests/test_runtime.py covers the rest of serve.
    tested = TESTED_COMMANDS | {SHIFT_COMMAND, "watchkeeper serve"}
    assert set(lines) <= tested, set(lines) - tested


def run_doc_script(name: str, tmp_path: Path, ingest: Ingest) -> str:
    (tmp_path / name).write_text(python_file(name))
    done = subprocess.run(
        [sys.executable, name],
        cwd=tmp_path, env={**os.environ, "WATCHKEEPER_ENDPOINT": ingest.url},
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return done.stdout


def test_the_plain_python_example_delivers_predictions_labels_and_fallbacks(
    tmp_path: Path, ingest: Ingest
) -> None:
    started = time.time()
    assert run_doc_script("plain.py", tmp_path, ingest).strip() == "delivered"
    predictions = ingest.store.predictions("churn", started - 1, time.time() + 1)
    assert len(predictions) == 20 and {p.version for p in predictions} == {"v3"}
    assert all(p.latency_s is not None for p in predictions), "track() timed each call"
    assert ingest.store.labels("churn", ["churn-3"])["churn-3"].label is True
    fallbacks = ingest.store.samples("churn", "fallbacks", started - 1, time.time() + 1)
    assert [dict(s.labels)["reason"] for s in fallbacks] == ["feature_store_timeout"]


def test_the_batch_example_delivers_every_record(tmp_path: Path, ingest: Ingest) -> None:
    started = time.time()
    assert "scored and reported 3000 customers" in run_doc_script("batch.py", tmp_path, ingest)
    predictions = ingest.store.predictions("nightly-ltv", started - 1, time.time() + 1)
    assert len({p.prediction_id for p in predictions}) == 3000


def test_the_configuration_snippets_are_valid() -> None:
    blocks = [text for lang, text in code_blocks(DOC) if lang == "yaml"]
    assert blocks
    for text in blocks:
        config = config_from_dict(yaml.safe_load(text), str(DOC))
        assert config.models["nightly-ltv"].checks.up.staleness == 26 * 3600


def test_the_fastapi_excerpt_is_what_the_example_service_does() -> None:
    """Each piece of the excerpt (pieces end at blank lines and `...`) is in app.py, in order,
    whatever the line breaks and indentation (ruff formats the guide's code blocks too)."""
    excerpt = python_file("examples/sklearn_service/app.py (excerpt)").split("\n", 1)[1]
    source = re.sub(r"\s", "", (EXAMPLE / "app.py").read_text())
    at = 0
    for piece in re.split(r"\n\s*(?:\.\.\.)?\s*\n", excerpt):
        wanted = re.sub(r"\s", "", piece)
        if wanted:
            found = source.find(wanted, at)
            assert found >= 0, f"not in examples/sklearn_service/app.py (in order):\n{piece}"
            at = found + len(wanted)


def test_the_flask_example_under_gunicorn_reports_from_every_worker(
    tmp_path: Path, ingest: Ingest
) -> None:
    pytest.importorskip("flask", reason="flask is in the test extras")
    gunicorn = Path(sys.executable).with_name("gunicorn")
    assert gunicorn.exists(), "gunicorn is in the test extras"
    (tmp_path / "service.py").write_text(python_file("service.py"))
    (tmp_path / "gunicorn.conf.py").write_text(python_file("gunicorn.conf.py"))
    multiproc = tmp_path / "prom"
    multiproc.mkdir()
    port = free_port()
    command = shlex.split(GUNICORN.replace("127.0.0.1:8000", f"127.0.0.1:{port}"))
    assignments = dict(word.split("=", 1) for word in command[:2])
    assert set(assignments) == {"PROMETHEUS_MULTIPROC_DIR", "WATCHKEEPER_ENDPOINT"}
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),  # a fresh one instead of /tmp/prom
        "WATCHKEEPER_ENDPOINT": ingest.url,
    }
    url = f"http://127.0.0.1:{port}"
    started = time.time()
    with (tmp_path / "gunicorn.log").open("wb") as log:
        process = subprocess.Popen(
            [str(gunicorn), *command[3:]], cwd=tmp_path, env=env, stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:

            def ready() -> bool | None:
                if process.poll() is not None:
                    raise AssertionError((tmp_path / "gunicorn.log").read_text()[-3000:])
                return True if httpx.get(f"{url}/metrics", timeout=2).status_code == 200 else None

            wait_for(ready, 60, "gunicorn to serve the Flask example")
            with httpx.Client(base_url=url, timeout=10) as client:
                for rooms in range(40):
                    answer = client.post(
                        "/predict", json={"rooms": rooms % 5}, headers={"Connection": "close"}
                    )
                    assert answer.status_code == 200
                metrics = client.get("/metrics").text
            total = 'watchkeeper_predictions_total{model="pricing",version="v7"} 40.0'
            assert total in metrics, "the multiprocess registry sums every worker"

            def stored() -> int | None:
                got = ingest.store.predictions("pricing", started - 1, time.time() + 1)
                return len(got) if len(got) >= 40 else None

            assert wait_for(stored, 30, "40 predictions in the store") == 40
        finally:
            process.terminate()
            process.wait(timeout=30)


# --------------------------------------------------------------------------------------------
# docs/production.md and docs/runbook.md


def test_every_command_of_the_production_guide_is_marked_as_needing_docker() -> None:
    blocks = [text for lang, text in code_blocks(ROOT / "docs" / "production.md") if lang == "sh"]
    assert blocks
    for text in blocks:
        assert text.startswith("# needs Docker"), text


def test_every_runbook_command_runs_against_a_real_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from watchkeeper.cli import main

    commands = [
        shlex.split(line)
        for lang, text in code_blocks(ROOT / "docs" / "runbook.md")
        if lang == "sh"
        for line in text.splitlines()
        if line.strip()
    ]
    assert len(commands) == 3 and all(command[0] == "watchkeeper" for command in commands)
    (tmp_path / "watchkeeper.yaml").write_text(f"storage:\n  path: {tmp_path / 'data'}\n")
    monkeypatch.chdir(tmp_path)
    codes = {}
    for command in commands:
        codes[command[1]] = main(command[1:])
    out, err = capsys.readouterr()
    assert codes["alerts"] == 0 and "FINGERPRINT" in out
    assert codes["silence"] == 0
    # the silence is there, with its comment and matchers
    assert main(["silence", "list", "--config", "watchkeeper.yaml"]) == 0
    listed = capsys.readouterr().out
    assert "rollback in progress" in listed and 'model="fraud-scorer"' in listed
    # explain needs a finding id from an alert; an unknown one is refused by name
    assert codes["explain"] == 1 and "no finding with id 'FINDING_ID'" in err
