"""`watchkeeper demo` as a user runs it: a real process, real ports, a real webhook."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import WebhookReceiver

from watchkeeper.demo import MARKER, DemoError, prepare_data_dir

# The installed console script, as a user runs it.
WATCHKEEPER = [str(Path(sys.executable).parent / "watchkeeper")]


def test_the_demo_fires_for_its_incident_and_delivers_it(
    tmp_path: Path, webhook: WebhookReceiver
) -> None:
    data = tmp_path / "demo"
    result = subprocess.run(
        [
            *WATCHKEEPER,
            "demo",
            "--duration",
            "40",
            "--data-dir",
            str(data),
            "--notify",
            webhook.url,
            "--port",
            "0",
            "--dashboard-port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    firing = [line for line in out.splitlines() if " FIRING " in line]
    assert any("fraud-scorer error_rate" in line for line in firing), out
    assert any("fraud-scorer drift amount" in line for line in firing), out
    assert any("RESOLVED critical fraud-scorer error_rate" in line for line in out.splitlines())
    assert "dashboard ready: http://127.0.0.1:" in out
    assert "stopped." in out
    titles = webhook.titles()
    assert any("FIRING" in t and "fraud-scorer" in t and "error_rate" in t for t in titles), titles
    assert any("FIRING" in t and "fraud-scorer" in t and "drift" in t for t in titles), titles
    # no stable feature drifted: only `amount`, and the score that depends on it
    drifted = [line for line in firing if " drift " in line]
    assert all(" drift amount:" in x or " drift prediction:" in x for x in drifted), out
    assert (data / "watchkeeper.yaml").exists()


def test_ctrl_c_stops_the_demo_cleanly(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [
            *WATCHKEEPER,
            "demo",
            "--no-dashboard",
            "--data-dir",
            str(tmp_path / "demo"),
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout
    threading.Thread(target=lambda: [lines.put(x) for x in stdout], daemon=True).start()
    deadline = time.monotonic() + 120
    seen = []
    try:
        while time.monotonic() < deadline:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            seen.append(line)
            if "detector running" in line:
                break
        else:
            pytest.fail(f"the demo never went live: {seen}")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
    time.sleep(0.2)
    while not lines.empty():
        seen.append(lines.get())
    assert any("interrupted; stopping cleanly" in line for line in seen), seen
    assert any("stopped." in line for line in seen), seen


def test_the_demo_refuses_a_directory_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(DemoError, match="was not made by `watchkeeper demo`"):
        prepare_data_dir(tmp_path)
    assert (tmp_path / "precious.txt").read_text() == "keep me"
    result = subprocess.run(
        [*WATCHKEEPER, "demo", "--data-dir", str(tmp_path), "--duration", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "choose another directory with --data-dir" in result.stderr


def test_a_previous_demo_directory_is_cleared(tmp_path: Path) -> None:
    prepare_data_dir(tmp_path / "d")
    (tmp_path / "d" / "old.db").write_text("old")
    prepare_data_dir(tmp_path / "d")
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == [MARKER]
