"""`watchkeeper serve` killed (SIGKILL) mid-cycle and restarted on the same data directory.

One real serve process at a time, on loopback, with a JSON webhook receiver. A model's error
rate is breached for a long stretch of history (pending, then firing after `for`) and heals
live. The process is killed three times, each at a point an observer can see:

1. while the detector is catching up on history (findings partly written), after the alert
   went pending and before its `for` has run out;
2. as soon as the alert is firing in alerting's state, while its notification waits out
   `group_wait` (queued, not sent);
3. while the firing notification is in flight (the receiver got it and the process dies
   before it can record the answer).

After the last restart the model heals. Then: every window is judged exactly once (no
duplicate, no gap), the alert fired exactly `for` after it went pending (the timer carried
over the kills instead of restarting), and the receiver heard the firing notification once
(or once more with the same dedup key, the at-least-once case of an in-flight kill) and the
resolution once.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from watchkeeper.tsdb import Prediction, SQLiteStore

pytestmark = pytest.mark.real_server

WAIT_S = 30.0
HISTORY_S = 600  # windows of 1 s judged in the first catch-up
BREACH_FROM = 200  # window index (from the start of history) of the first breached window
FOR_S = 250.0  # the error-rate alert fires this long after it went pending
PER_S = 10  # predictions per second
STARTED = "SELECT 1 FROM follow_meta WHERE key = 'started'"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(what: str, condition: Callable[[], bool], timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


class Hook:
    """A loopback JSON receiver that can run a callback on a request before answering it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.on_request: Callable[[dict[str, Any]], None] | None = None
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                hook.bodies.append(body)
                callback, hook.on_request = hook.on_request, None
                if callback is not None:
                    callback(body)  # e.g. kill the sender before it sees the answer
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"json://127.0.0.1:{self._server.server_address[1]}/hook"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def titles(self, word: str) -> list[dict[str, Any]]:
        return [b for b in self.bodies if word in str(b.get("title", ""))]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class Feeder:
    """Writes PER_S predictions for each second straight into the store, breached (40%
    errors) until `heal()`, from `start` on: history at once, then each second as it begins."""

    def __init__(self, path: Path, start: int, breach_from: int) -> None:
        self._store = SQLiteStore(path)
        self._breach_from = breach_from
        self._healed_from: int | None = None
        self.next = start
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._write_until(int(time.time()))
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def heal(self) -> int:
        """From the next second on the model is healthy; returns that second."""
        with self._lock:
            self._healed_from = self.next
            return self.next

    def _second(self, t: int) -> list[Prediction]:
        bad = t >= self._breach_from and (self._healed_from is None or t < self._healed_from)
        return [
            Prediction(
                "m",
                f"{t}-{i}",
                t + (i + 0.5) / PER_S,
                {"x": float(i)},
                0.5,
                error=bad and i % 5 < 2,
            )
            for i in range(PER_S)
        ]

    def _write_until(self, last: int) -> None:
        with self._lock:
            rows: list[Prediction] = []
            while self.next <= last:
                rows.extend(self._second(self.next))
                self.next += 1
            if rows:
                self._store.write(predictions=rows)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self._write_until(int(time.time()))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._store.close()


def _config(data: Path, port: int, hook: str) -> str:
    off = "{enabled: false}"
    disabled = "\n".join(
        f"      {name}: {off}"
        for name in (
            "up",
            "drift",
            "latency",
            "throughput",
            "fallback_rate",
            "efficacy",
            "missing",
            "out_of_range",
            "schema",
        )
    )
    return f"""\
storage: {{path: {data}}}
ingest: {{host: 127.0.0.1, port: {port}}}
detector: {{interval: 0.2s}}
models:
  m:
    window: 1s
    every: 1s
    checks:
      error_rate: {{for: {FOR_S:g}s, threshold: 0.05, min_count: 5}}
{disabled}
alerting:
  receivers: ["{hook}"]
  console: false
  no_data_after: 1h
  retry_backoff: 0.2s
  send_timeout: 2s  # an in-flight claim lapses after this (+1 s) on restart
  route: {{group_wait: 2s, group_interval: 1s, repeat_interval: 1h}}
"""


class Serve:
    """`watchkeeper serve` as a subprocess that can be killed and started again."""

    def __init__(self, config: Path, cwd: Path) -> None:
        self.config = config
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = (self.cwd / f"serve-{self.starts}.log").open("wb")
        code = "import sys; from watchkeeper.cli import main; sys.exit(main(sys.argv[1:]))"
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, "serve", "--config", str(self.config)],
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def logs(self) -> str:
        return "\n".join(
            p.read_text(errors="replace") for p in sorted(self.cwd.glob("serve-*.log"))
        )


def _query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:  # table not created yet
        return []
    finally:
        conn.close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    receiver = Hook()
    yield receiver
    receiver.close()


def _dedup_key(body: dict[str, Any]) -> str:
    match = re.search(r"dedup key: (\S+)", str(body.get("message", "")))
    assert match, body
    return match.group(1)


def test_serve_killed_mid_cycle_loses_and_repeats_nothing(tmp_path: Path, hook: Hook) -> None:
    data = tmp_path / "data"
    data.mkdir()
    db, alerts_db = data / "watchkeeper.db", data / "alerts.db"
    config = tmp_path / "watchkeeper.yaml"
    config.write_text(_config(data, _free_port(), hook.url))
    start = int(time.time()) - HISTORY_S
    pending_at = start + BREACH_FROM + 1  # window end of the first breached window
    serve = Serve(config, tmp_path)
    feeder: Feeder | None = None

    def findings() -> int:
        return int(_query(db, "SELECT count(*) FROM findings")[0][0]) if db.exists() else 0

    def alert() -> tuple[Any, ...] | None:
        rows = _query(alerts_db, "SELECT state, active_since, fired_at, resolved_at FROM alerts")
        return rows[0] if rows else None

    try:
        # A running deployment (alerting follows the store from its first poll on), whose
        # detector has a long stretch of history of a new model to catch up on.
        serve.start()
        _wait("alerting to follow the store", lambda: bool(_query(alerts_db, STARTED)))
        feeder = Feeder(db, start, start + BREACH_FROM)

        # 1. Killed while judging history: the alert is pending, its `for` not over.
        _wait("the detector to judge past the breach", lambda: findings() >= BREACH_FROM + 50)
        serve.kill()
        judged = findings()
        assert judged < HISTORY_S - 50, "the kill was meant to land mid catch-up"
        assert pending_at + FOR_S > start + judged, "the kill was meant to land before firing"

        # 2. Killed once the alert fires, while the notification waits out group_wait.
        serve.start()
        _wait("the alert to fire", lambda: (alert() or ("",))[0] == "firing")
        serve.kill()
        assert hook.titles("FIRING") == [], "the kill was meant to land before the send"

        # 3. Killed while the firing notification is in flight.
        hook.on_request = lambda body: serve.kill()
        serve.start()
        _wait("the firing notification", lambda: len(hook.titles("FIRING")) >= 1)
        _wait("the kill in flight", lambda: serve.process is not None and serve.process.poll())

        # Restart for good: the notification is delivered again; then the model heals.
        serve.start()
        _wait("the firing notification again", lambda: len(hook.titles("FIRING")) >= 2)
        assert feeder is not None
        healed_at = feeder.heal()
        _wait("the resolution", lambda: len(hook.titles("RESOLVED")) >= 1)
        time.sleep(1.5)  # anything repeated would arrive within a group_interval
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}; alert {alert()}; {findings()} findings\n{serve.logs()}"
        ) from None
    finally:
        serve.kill()
        if feeder is not None:
            feeder.close()

    logs = serve.logs()
    windows = [row[0] for row in _query(db, "SELECT window_end FROM findings ORDER BY 1")]
    assert windows, logs
    assert len(windows) == len(set(windows)), "a window was judged twice"
    first, last = windows[0], windows[-1]
    assert windows == [first + i for i in range(int(last - first) + 1)], "a window was skipped"
    # The first window judged is the first whole one after the model's first prediction.
    assert first == start + 2 and last >= healed_at + 1

    state, active_since, fired_at, resolved_at = alert() or (None,) * 4
    assert state == "resolved", logs
    assert active_since == pending_at, "the pending alert was lost and started again"
    assert fired_at == pending_at + FOR_S, "the `for` timer did not carry over the restarts"
    assert resolved_at == healed_at + 1

    firing, resolved = hook.titles("FIRING"), hook.titles("RESOLVED")
    assert len(firing) == 2, "one in-flight repeat at most, none otherwise"
    assert _dedup_key(firing[0]) == _dedup_key(firing[1])
    assert len(resolved) == 1
    assert len(hook.bodies) == 3
