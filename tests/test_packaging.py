"""Packaging: the import layout, what importing the client costs, and the public names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import watchkeeper

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ["streamlit", "pandas", "scipy", "fastapi", "pydantic", "uvicorn", "apprise", "yaml"]

PROBE = """
import json, sys
import watchkeeper, watchkeeper.collectors
import watchkeeper.tsdb, watchkeeper.detector, watchkeeper.alerting, watchkeeper.dashboard
print(json.dumps({
    "heavy_after_client": HEAVY_AFTER_CLIENT,
    "files": {name: getattr(sys.modules[name], "__file__", None) for name in (
        "watchkeeper", "watchkeeper.collectors", "watchkeeper.tsdb", "watchkeeper.detector",
        "watchkeeper.alerting", "watchkeeper.dashboard")},
}))
"""


def _probe(cwd: Path, env_path: str | None = None) -> dict[str, object]:
    heavy_check = f"[m for m in {HEAVY!r} if m in sys.modules]"
    code = PROBE.replace(
        "import watchkeeper.tsdb",
        f"HEAVY_AFTER_CLIENT = {heavy_check}\nimport watchkeeper.tsdb",
    )
    env = None
    if env_path is not None:
        env = {"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_the_client_import_pulls_in_nothing_heavy(tmp_path: Path) -> None:
    result = _probe(tmp_path)
    assert result["heavy_after_client"] == []


def test_a_regular_install_imports_like_the_editable_one(tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    site_packages = next(p for p in sys.path if p.endswith("site-packages"))
    regular = _probe(tmp_path, f"{target}:{site_packages}")
    editable = _probe(tmp_path)
    assert regular["heavy_after_client"] == editable["heavy_after_client"] == []
    regular_files = regular["files"]
    editable_files = editable["files"]
    assert isinstance(regular_files, dict) and isinstance(editable_files, dict)
    for name, path in regular_files.items():
        assert str(path).startswith(str(target)), (name, path)
        relative = Path(str(path)).relative_to(target)
        assert str(editable_files[name]).endswith(str(relative)), (name, editable_files[name])


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        ("watchkeeper", ["Monitor", "__version__"]),
        ("watchkeeper.collectors", ["ClientStats", "Monitor"]),
    ],
)
def test_public_names_are_pinned(module: str, expected: list[str]) -> None:
    imported = __import__(module, fromlist=["__all__"])
    assert sorted(imported.__all__) == sorted(expected)
    for name in expected:
        assert hasattr(imported, name)


def test_version_matches_the_distribution() -> None:
    from importlib.metadata import version

    assert watchkeeper.__version__ == version("watchkeeper")
