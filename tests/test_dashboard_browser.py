"""End to end: the demo fills a data directory, `watchkeeper dashboard` serves it, and headless
Chromium (Debian's, through Playwright) opens every page, waits for its charts, reads the
models and the firing drift alert off the screen, and saves a screenshot of each page.

Screenshots go to the test's tmp_path; set WATCHKEEPER_SCREENSHOTS_DIR (e.g. docs/screenshots)
to also copy them there.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from watchkeeper.dashboard import wait_until_ready

CHROMIUM = Path("/usr/bin/chromium")
WATCHKEEPER = Path(sys.executable).with_name("watchkeeper")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PAGES = {"fleet": "", "model": "model", "incidents": "incidents", "alerts": "alerts"}
PAGE_HEIGHT = """() => Math.max(...Array.from(document.querySelectorAll("*"))
    .map((element) => element.scrollHeight)) + 40"""
ALL_CHARTS_DRAWN = """() => Array.from(document.querySelectorAll("[data-testid='stVegaLiteChart']"))
    .every((chart) => chart.querySelector("canvas, svg"))"""

pytestmark = [pytest.mark.real_server, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def stop(process: subprocess.Popen[bytes]) -> None:
    """Ctrl-C the CLI (it stops its Streamlit child), then make sure its whole group is gone."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=15)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # the group this fixture started, by its id
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (/usr/bin/chromium)")
    pytest.importorskip("playwright.sync_api")
    work = tmp_path_factory.mktemp("demo")
    command = [
        str(WATCHKEEPER), "demo", "--duration", "40", "--no-dashboard", "--port", "0",
        "--data-dir", str(work / "data"),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    assert (work / "data" / "watchkeeper.yaml").exists()
    return work / "data"


@pytest.fixture(scope="module")
def dashboard_url(demo_dir: Path) -> Iterator[str]:
    port = free_port()
    log = (demo_dir / "dashboard-e2e.log").open("wb")
    process = subprocess.Popen(
        [
            str(WATCHKEEPER), "dashboard", "--config", str(demo_dir / "watchkeeper.yaml"),
            "--port", str(port),
        ],
        cwd=demo_dir,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(url, timeout=60)
        yield url
    finally:
        stop(process)
        log.close()


def test_every_page_shows_the_demo_models_and_its_firing_alert(
    dashboard_url: str, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    texts: dict[str, str] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            for name, path in PAGES.items():
                page.goto(f"{dashboard_url}/{path}", timeout=60_000)
                page.get_by_role("heading", name=name.capitalize(), exact=True).wait_for(
                    timeout=60_000
                )
                # Charts and tables drawn, and the script no longer running.
                wanted = "[data-testid='stDataFrame']"
                if name != "fleet":
                    wanted = "[data-testid='stVegaLiteChart'] canvas, " + (
                        "[data-testid='stVegaLiteChart'] svg"
                    )
                page.wait_for_selector(wanted, timeout=60_000)
                page.wait_for_selector(
                    "[data-testid='stStatusWidget']", state="detached", timeout=60_000
                )
                if name == "incidents":
                    # Open the newest incident and recompute one of its findings (`explain`).
                    page.locator("[data-testid='stExpander'] summary").first.click()
                    button = page.get_by_role("button", name="Recompute (explain)").first
                    button.wait_for(state="visible", timeout=60_000)
                    button.click()
                    page.wait_for_function(
                        "document.body.innerText.includes('recomputed:')", timeout=120_000
                    )
                page.wait_for_function(ALL_CHARTS_DRAWN, timeout=60_000)
                # Streamlit scrolls inside its own container, so a "full page" screenshot is
                # only the window: grow the window to the page's height to capture it all.
                height = page.evaluate(PAGE_HEIGHT)
                page.set_viewport_size({"width": 1400, "height": min(max(height, 1000), 8000)})
                page.wait_for_function(ALL_CHARTS_DRAWN, timeout=60_000)
                page.wait_for_timeout(1000)  # let the charts repaint at the new size
                texts[name] = page.inner_text("body")
                page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
                page.set_viewport_size({"width": 1400, "height": 1000})
        finally:
            browser.close()

    assert "fraud-scorer" in texts["fleet"] and "churn-model" in texts["fleet"]
    assert "fraud-scorer" in texts["model"]
    assert "amount" in texts["model"]  # the drifting feature is a row of the heat map
    assert "fraud-scorer" in texts["incidents"] and "drift (amount)" in texts["incidents"]
    assert "watchkeeper explain " in texts["incidents"]
    assert "recomputed: same numbers" in texts["incidents"]  # the demo's findings reproduce
    for panel in ("Efficacy", "Data quality", "Window ending"):
        assert panel in texts["model"]
    assert "Add silence" in texts["alerts"] and "Acknowledge" in texts["alerts"]
    assert "firing" in texts["alerts"]
    assert "fraud-scorer · drift (amount)" in texts["alerts"]
    for name in PAGES:
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000
    target = os.environ.get("WATCHKEEPER_SCREENSHOTS_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for name in PAGES:
            shutil.copy(tmp_path / f"{name}.png", Path(target) / f"{name}.png")
