"""Reference profiles of the live detector (issue 9, "References"): a reference file, a fixed
or trailing window of a model's history, or its first data, profiled once and stored in the
data directory; re-baselining with `watchkeeper reference set` without a restart. Real SQLite
stores, the real CLI, seeded streams."""

from __future__ import annotations

import doctest
import io
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

import watchkeeper.detector.reference_store
import watchkeeper.detector.references
from watchkeeper.cli import main
from watchkeeper.config import Config, ConfigError, config_from_dict, load_config
from watchkeeper.detector import Detector
from watchkeeper.detector.explain import explain_store
from watchkeeper.detector.frame import batch_from_predictions
from watchkeeper.detector.profile import CategoricalProfile, NumericProfile, profile_batch
from watchkeeper.detector.reference_store import ReferenceStore, StoredProfile, dumps, loads
from watchkeeper.detector.replay import finding_id
from watchkeeper.tsdb import Finding, Label, ModelInfo, Prediction, SQLiteStore

T0 = 1_699_999_200.0  # a multiple of one hour
MINUTE = 60.0
HOUR = 3600.0
FEATURES = 5


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def stream(
    start: float,
    end: float,
    *,
    step: float = 4.0,
    seed: int = 0,
    shift: Callable[[np.ndarray], np.ndarray] | None = None,
    feature: int = 2,
    model: str = "m",
) -> list[Prediction]:
    """Standard-normal features `f0..f4`, one prediction every `step` seconds in
    `[start, end)`; `shift(times)` is added to feature `feature`."""
    rng = np.random.default_rng(seed)
    times = np.arange(start, end, step)
    values = rng.normal(size=(times.size, FEATURES))
    if shift is not None:
        values[:, feature] += shift(times)
    return [
        Prediction(
            model,
            f"{model}-{seed}-{i}",
            float(t),
            {f"f{j}": float(values[i, j]) for j in range(FEATURES)},
            output=0.0,
        )
        for i, t in enumerate(times)
    ]


def step_at(when: float, amount: float = 1.0) -> Callable[[np.ndarray], np.ndarray]:
    return lambda times: np.where(times >= when, amount, 0.0)


def write_reference(path: Path, rows: int = 3000, seed: int = 99, offset: float = 0.0) -> Path:
    """A reference file in the `replay --reference` format, drawn like the stream."""
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(rows, FEATURES)) + offset
    header = ",".join(f"f{j}" for j in range(FEATURES)) + ",prediction\n"
    path.write_text(
        header + "".join(",".join(repr(float(v)) for v in r) + ",0.0\n" for r in values)
    )
    return path


def write_config(tmp_path: Path, model: dict[str, Any]) -> Path:
    """`watchkeeper.yaml` in `tmp_path`: data in `tmp_path/data`, model `m` as given (with
    ten-minute windows every five minutes unless it says otherwise)."""
    settings = {"window": "10m", "every": "5m", **model}
    path = tmp_path / "watchkeeper.yaml"
    path.write_text(
        yaml.safe_dump({"storage": {"path": str(tmp_path / "data")}, "models": {"m": settings}})
    )
    return path


def open_store(config: Config, *streams: list[Prediction]) -> SQLiteStore:
    store = SQLiteStore(config.storage.store_file)
    for predictions in streams:
        store.write(predictions=predictions)
    return store


def drift(findings: list[Finding], subject: str | None = None) -> list[Finding]:
    return [f for f in findings if f.check == "drift" and subject in (None, f.subject)]


def breached(findings: list[Finding], subject: str | None = None) -> list[Finding]:
    return [f for f in drift(findings, subject) if f.breached]


def alerts(findings: list[Finding], every: float = HOUR) -> list[tuple[str, str, float]]:
    """Breaches of one check and subject in two consecutive windows (what a `for` of one
    step turns into an alert)."""
    hits = {(f.check, f.subject, f.window_end) for f in findings if f.breached}
    return sorted((c, s, t) for c, s, t in hits if (c, s, t - every) in hits)


def cli(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- stored profiles -----------------------------------------------------------------------


def test_a_stored_profile_reads_back_bit_for_bit() -> None:
    rng = np.random.default_rng(3)
    predictions = [
        Prediction(
            "m",
            f"p{i}",
            T0 + i,
            {"x": float(rng.normal()), "colour": str(rng.choice(["red", "blue"])), "gap": None},
            output=float(rng.random()),
        )
        for i in range(500)
    ]
    labels = {
        p.prediction_id: Label("m", p.prediction_id, int(rng.random() < 0.5), T0)
        for p in predictions
    }
    profile = profile_batch(batch_from_predictions(predictions, labels, []), "m@1-2")
    again = loads(dumps(profile))
    assert again.summary() == profile.summary()
    assert again.baseline == profile.baseline and again.baseline is not None
    x, y = profile.columns["x"], again.columns["x"]
    assert isinstance(x, NumericProfile) and isinstance(y, NumericProfile)
    assert np.array_equal(x.sorted_values, y.sorted_values) and x.std == y.std
    c, d = profile.columns["colour"], again.columns["colour"]
    assert isinstance(c, CategoricalProfile) and isinstance(d, CategoricalProfile)
    assert c.categories == d.categories and np.array_equal(c.counts, d.counts)


def test_module_examples_run() -> None:
    for module in (watchkeeper.detector.references, watchkeeper.detector.reference_store):
        result = doctest.testmod(module)
        assert result.attempted and not result.failed


# -- a reference file ------------------------------------------------------------------------


def test_a_reference_file_is_profiled_once_and_never_read_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    reference = write_reference(tmp_path / "train.csv")
    path = write_config(tmp_path, {"reference": {"file": "train.csv"}})  # relative to the file
    data = stream(T0, T0 + 3 * HOUR, shift=step_at(T0 + 2 * HOUR), seed=1)

    # the control: one detector over all of it, file untouched
    control_dir = tmp_path / "control"
    control_dir.mkdir()
    write_reference(control_dir / "train.csv")
    control_config = load_config(write_config(control_dir, {"reference": {"file": "train.csv"}}))
    expected = Detector(open_store(control_config, data), control_config).run_once(T0 + 3 * HOUR)

    config = load_config(path)
    store = open_store(config, data)
    first = Detector(store, config).run_once(T0 + 90 * MINUTE)
    ids = {f.reference_id for f in drift(first)}
    assert len(ids) == 1 and next(iter(ids)).startswith("m@sha256:")
    # a file is complete from the start: drift is judged from the first window on
    assert min(f.window_end for f in drift(first)) == T0 + 5 * MINUTE

    # the file is overwritten with very different data; a restarted detector (configuration
    # loaded again) still judges against the stored profile, and says the file changed
    write_reference(reference, seed=5, offset=3.0)
    restarted = Detector(store, load_config(path))
    with caplog.at_level(logging.WARNING, logger="watchkeeper.detector.references"):
        later = restarted.run_once(T0 + 150 * MINUTE)
    assert {f.reference_id for f in drift(later)} == ids
    assert f"reference file {reference} of model 'm' changed since it was profiled" in caplog.text
    reference.unlink()  # and the detector does not need the file at all
    last = restarted.run_once(T0 + 3 * HOUR)
    assert first + later + last == expected
    assert {f.subject for f in breached(last)} == {"f2"}

    # the changed file given to `reference set` is a new profile, with a new id
    write_reference(reference, seed=5, offset=3.0)
    code, out, _ = cli(
        "reference", "set", "m", "--file", str(reference), "--config", str(path), capsys=capsys
    )
    assert code == 0
    new_id = out.split("reference ")[1].split(" ")[0]
    assert new_id.startswith("m@sha256:") and new_id not in ids
    code, out, _ = cli("reference", "show", "m", "--config", str(path), capsys=capsys)
    assert code == 0
    assert out.startswith(f"m: {new_id}, 3000 rows, profiled ")
    assert f"file {reference}" in out and "set by " in out


# -- a fixed window --------------------------------------------------------------------------


def test_a_fixed_window_is_the_reference_once_it_is_over(tmp_path: Path) -> None:
    # the model's first hour was odd (a feature pipeline fixed at T0 + 1h): the first-data
    # reference alarms on every later window, a fixed window after the fix does not
    data = stream(T0, T0 + 4 * HOUR, shift=lambda t: np.where(t < T0 + HOUR, 1.0, 0.0), seed=2)
    window = {"start": iso(T0 + HOUR), "end": iso(T0 + 2 * HOUR)}
    fixed = load_config(write_config(tmp_path, {"reference": window}))
    findings = Detector(open_store(fixed, data), fixed).run_once(T0 + 4 * HOUR)
    assert min(f.window_start for f in drift(findings)) == T0 + 2 * HOUR
    assert {f.reference_id for f in drift(findings)} == {f"m@{int(T0 + HOUR)}-{int(T0 + 2 * HOUR)}"}
    assert alerts(findings, every=5 * MINUTE) == []
    assert len(breached(findings)) <= 2  # of 5 features x 23 windows, at p = 1 %

    other = tmp_path / "first"
    other.mkdir()
    first = load_config(write_config(other, {}))
    found = Detector(open_store(first, data), first).run_once(T0 + 4 * HOUR)
    assert len(breached(found, "f2")) >= 30  # of 35 windows judged after the first hour


# -- a trailing window -----------------------------------------------------------------------


def test_a_trailing_window_follows_a_slow_shift_the_first_data_alarms_on(tmp_path: Path) -> None:
    # f2's mean creeps up by 0.05 standard deviations an hour, for a day
    slow = lambda t: (t - T0) / HOUR * 0.05  # noqa: E731
    data = stream(T0, T0 + 24 * HOUR, step=10.0, shift=slow, seed=4)
    hourly = {"window": "1h", "every": "1h"}
    results = {}
    for name, model in (
        ("first", {**hourly, "checks": {"drift": {"reference": "1h"}}}),
        ("trailing", {**hourly, "reference": {"trailing": "1h", "refresh": "1h"}}),
    ):
        folder = tmp_path / name
        folder.mkdir()
        config = load_config(write_config(folder, model))
        results[name] = Detector(open_store(config, data), config).run_once(T0 + 24 * HOUR)
    trailing, first = results["trailing"], results["first"]
    assert breached(trailing) == []
    assert {subject for _, subject, _ in alerts(first)} == {"f2"}
    assert len(alerts(first)) >= 10  # of the 23 windows after the first hour
    # each window is compared with the hour before it, one profile per hour
    ids = [f.reference_id for f in drift(trailing, "f2")]
    ends = [f.window_end for f in drift(trailing, "f2")]
    assert ids == [f"m@{int(end - 2 * HOUR)}-{int(end - HOUR)}" for end in ends]
    assert len(ReferenceStore(tmp_path / "trailing" / "data" / "references.db").profiles()) == 23


# -- the default: the first data -------------------------------------------------------------


class FirstKept:
    """A real store that reports, as InfluxDB does, the oldest record it still keeps as a
    model's first record."""

    def __init__(self, inner: SQLiteStore, first: float) -> None:
        self._inner = inner
        self._first = first

    def models(self) -> list[ModelInfo]:
        return [replace(m, first_seen=self._first) for m in self._inner.models()]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_the_first_data_reference_survives_retention_and_a_restart(tmp_path: Path) -> None:
    data = stream(T0, T0 + 3 * HOUR, shift=step_at(T0 + 2 * HOUR), seed=6)
    model = {"checks": {"drift": {"reference": "1h"}}}
    (tmp_path / "c").mkdir()
    control = load_config(write_config(tmp_path / "c", model))
    expected = Detector(open_store(control, data), control).run_once(T0 + 3 * HOUR)
    reference_id = f"m@{int(T0)}-{int(T0 + HOUR)}"
    assert {f.reference_id for f in drift(expected)} == {reference_id}

    (tmp_path / "r").mkdir()
    config = load_config(write_config(tmp_path / "r", model))
    store = open_store(config, data)
    before = Detector(store, config).run_once(T0 + 100 * MINUTE)
    # retention deletes the whole reference period; the detector restarts, on a store that
    # (like InfluxDB) now says the model began later
    assert store.retention("predictions", T0 + 70 * MINUTE) > 0
    restarted = Detector(FirstKept(store, T0 + 70 * MINUTE), config)  # type: ignore[arg-type]
    after = restarted.run_once(T0 + 3 * HOUR)
    assert {f.reference_id for f in drift(after)} == {reference_id}
    assert before + after == expected
    assert "f2" in {f.subject for f in breached(after)}


# -- re-baselining ---------------------------------------------------------------------------


def test_re_baselining_after_an_accepted_shift_stops_the_drift_alarm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, {"checks": {"drift": {"reference": "1h"}}})
    config = load_config(path)
    change = T0 + 2 * HOUR
    store = open_store(config, stream(T0, T0 + 3 * HOUR, shift=step_at(change), seed=7))
    detector = Detector(store, config)
    shifted = detector.run_once(T0 + 3 * HOUR)
    assert len(breached(shifted, "f2")) >= 10
    old = breached(shifted, "f2")[-1]

    # the shift is the new normal: its first stored hour becomes the reference
    window = ["--start", iso(change), "--end", iso(change + HOUR)]
    code, out, err = cli(
        "reference", "set", "m", *window, "--by", "ana", "--config", str(path), capsys=capsys
    )
    assert code == 0, err
    new_id = f"m@{int(change)}-{int(change + HOUR)}"
    assert out.startswith(f"model m: reference {new_id} (window [")
    assert "900 rows); the detector uses it from its next run" in out

    more = stream(T0 + 3 * HOUR, T0 + 5 * HOUR, shift=step_at(change), seed=8)
    store.write(predictions=more)
    calmer = detector.run_once(T0 + 4 * HOUR)  # the running detector, not restarted
    assert {f.reference_id for f in drift(calmer)} == {new_id}
    assert breached(calmer) == []

    # an earlier verdict is still recomputed against the reference it was judged with
    text = io.StringIO()
    assert explain_store(finding_id(old), config, text) == 0, text.getvalue()
    assert f"reference m@{int(T0)}-{int(T0 + HOUR)}: " in text.getvalue()

    # `clear` goes back to the configured (first-data) reference: the shift breaches again
    code, out, _ = cli("reference", "clear", "m", "--config", str(path), capsys=capsys)
    assert (code, out) == (0, "model m: back to its configured reference: first 1h of data\n")
    again = detector.run_once(T0 + 5 * HOUR)
    assert {f.reference_id for f in drift(again)} == {f"m@{int(T0)}-{int(T0 + HOUR)}"}
    assert len(breached(again, "f2")) >= 10

    code, out, _ = cli("audit", "--data-dir", str(tmp_path / "data"), capsys=capsys)
    assert code == 0
    (set_line,) = [line for line in out.splitlines() if "reference.set" in line]
    assert "ana" in set_line and f"profile={new_id}" in set_line
    assert "reference.cleared" in out


def test_reference_set_refuses_what_it_cannot_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, {})
    config = load_config(path)
    open_store(config, stream(T0, T0 + HOUR)).close()
    code, _, err = cli(
        "reference",
        "set",
        "m",
        "--file",
        str(tmp_path / "nope.csv"),
        "--config",
        str(path),
        capsys=capsys,
    )
    assert code == 2 and "no such file" in err
    code, _, err = cli(
        "reference",
        "set",
        "m",
        "--start",
        iso(T0 + HOUR),
        "--end",
        iso(T0),
        "--config",
        str(path),
        capsys=capsys,
    )
    assert code == 2 and "--end (2023-11-14T22:00:00Z) must be after --start" in err
    code, _, err = cli(
        "reference",
        "set",
        "m",
        "--start",
        iso(T0 + 5 * HOUR),
        "--end",
        iso(T0 + 6 * HOUR),
        "--config",
        str(path),
        capsys=capsys,
    )
    assert code == 1 and "no predictions of model 'm'" in err
    code, _, err = cli(
        "reference", "set", "m", "--start", iso(T0), "--config", str(path), capsys=capsys
    )
    assert code == 2 and "--start and --end go together" in err
    code, out, _ = cli("reference", "show", "--config", str(path), capsys=capsys)
    assert out == "m: not profiled yet\n  source: first 1h of data\n"


# -- configuration errors --------------------------------------------------------------------

BAD = [
    (
        "missing file",
        "reference: {file: missing.csv}",
        ["models.m.reference.file:", "no such file:", "missing.csv", "(line 4)"],
    ),
    (
        "end before start",
        "reference:\n      start: 2026-11-02T00:00:00Z\n      end: 2026-11-01T00:00:00Z",
        ["models.m.reference.end:", "must be after start (2026-11-02T00:00:00Z)", "(line 6)"],
    ),
    (
        "file and window",
        "reference: {file: train.csv, start: 2026-11-01, end: 2026-11-02}",
        ["models.m.reference:", "give one of file, start and end, or trailing"],
    ),
    (
        "start without end",
        "reference: {start: 2026-11-01}",
        ["models.m.reference.end:", "start and end go together"],
    ),
    (
        "lag without trailing",
        "reference: {file: train.csv, lag: 1d}",
        ["models.m.reference.lag:", "applies only to a trailing reference"],
    ),
    (
        "bad time",
        "reference: {start: last tuesday, end: 2026-11-02}",
        ["models.m.reference.start:", "expected an ISO 8601 time", "'last tuesday'"],
    ),
    (
        "bad duration",
        "reference: {trailing: a week}",
        ["models.m.reference.trailing:", "expected a duration"],
    ),
]


@pytest.mark.parametrize(("name", "text", "expected"), BAD, ids=[b[0] for b in BAD])
def test_bad_reference_configuration_names_the_key(
    tmp_path: Path, name: str, text: str, expected: list[str]
) -> None:
    write_reference(tmp_path / "train.csv", rows=10)
    path = tmp_path / "watchkeeper.yaml"
    path.write_text(f"models:\n  m:\n    window: 1h\n    {text}\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: "), message
    for part in expected:
        assert part in message, f"{part!r} missing from {message!r}"


def test_the_guides_reference_example_is_a_valid_configuration(tmp_path: Path) -> None:
    guide = (Path(__file__).resolve().parents[1] / "docs" / "checks.md").read_text()
    (block,) = [b for b in guide.split("```yaml\n")[1:] if "reference: {file:" in b]
    (tmp_path / "data").mkdir()
    write_reference(tmp_path / "data" / "train.csv", rows=10)
    data = yaml.safe_load(block.split("```")[0])
    config = config_from_dict(data, "checks.md", base_dir=tmp_path)
    kinds = {name: m.reference.kind for name, m in config.models.items()}
    assert kinds == {
        "fraud-scorer": "file",
        "churn": "window",
        "ranker": "trailing",
        "search": "first",
    }
    assert config.models["fraud-scorer"].reference.file == tmp_path / "data" / "train.csv"
    assert config.models["ranker"].reference.lag == 86400.0


def test_detector_defaults_give_unconfigured_models_their_reference(tmp_path: Path) -> None:
    write_reference(tmp_path / "train.csv")
    path = tmp_path / "watchkeeper.yaml"
    defaults = {"window": "10m", "every": "5m", "reference": {"file": "train.csv"}}
    path.write_text(
        yaml.safe_dump(
            {"storage": {"path": str(tmp_path / "data")}, "detector": {"defaults": defaults}}
        )
    )
    config = load_config(path)
    store = open_store(config, stream(T0, T0 + HOUR, model="anything"))
    findings = Detector(store, config).run_once(T0 + HOUR)
    (reference_id,) = {f.reference_id for f in drift(findings)}
    assert reference_id.startswith("anything@sha256:")


def test_the_old_drift_reference_key_still_works(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, {"checks": {"drift": {"reference": "30m"}}}))
    findings = Detector(open_store(config, stream(T0, T0 + HOUR)), config).run_once(T0 + HOUR)
    assert {f.reference_id for f in drift(findings)} == {f"m@{int(T0)}-{int(T0 + 30 * MINUTE)}"}


@pytest.mark.parametrize("broken", ["a directory", "not a database"])
def test_an_unusable_profiles_file_does_not_stop_detection(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, broken: str
) -> None:
    config = load_config(write_config(tmp_path, {}))
    data = stream(T0, T0 + 2 * HOUR, shift=step_at(T0 + 90 * MINUTE), seed=9)
    (tmp_path / "good").mkdir()
    good = load_config(write_config(tmp_path / "good", {}))
    expected = Detector(open_store(good, data), good).run_once(T0 + 2 * HOUR)
    store = open_store(config, data)
    where = tmp_path / "data" / "references.db"
    if broken == "a directory":
        where.mkdir()
    else:
        where.write_bytes(b"these are not the bytes of an SQLite database" * 100)
    findings = Detector(store, config).run_once(T0 + 2 * HOUR)
    assert findings == expected  # judged against the profile kept in memory
    assert "f2" in {f.subject for f in breached(findings)}
    assert "reference profiles" in caplog.text


# -- no change, no alarm ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["first", "file", "window", "trailing"])
def test_no_alarm_on_a_stream_without_change(tmp_path: Path, kind: str) -> None:
    write_reference(tmp_path / "train.csv", rows=5000)
    reference = {
        "first": {},
        "file": {"file": "train.csv"},
        "window": {"start": iso(T0 + HOUR), "end": iso(T0 + 4 * HOUR)},
        "trailing": {"trailing": "6h", "refresh": "2h"},
    }[kind]
    model = {"window": "1h", "every": "1h", "reference": reference}
    config = load_config(write_config(tmp_path, model))
    data = stream(T0, T0 + 48 * HOUR, step=10.0, seed=11)
    findings = Detector(open_store(config, data), config).run_once(T0 + 48 * HOUR)
    assert len({f.window_end for f in drift(findings)}) >= 40
    assert alerts(findings) == []
    assert len([f for f in findings if f.breached]) <= 3


def test_a_reference_store_ignores_a_second_profile_of_the_same_id(tmp_path: Path) -> None:
    profiles = ReferenceStore(tmp_path / "references.db")
    assert profiles.get("m@0-1") is None and profiles.profiles() == []
    assert not (tmp_path / "references.db").exists()  # reading creates nothing
    with pytest.raises(KeyError, match="no stored reference profile"):
        profiles.set_pin("m", "m@0-1", "me")
    stored = profile_batch(batch_from_predictions(stream(T0, T0 + 600), None, []), "m@0-1")
    info = StoredProfile("m@0-1", "m", "window", "window", None, 0.0, 1.0, T0, stored.n)
    assert profiles.put(stored, info) == info
    later = replace(info, created=T0 + 1, rows=1)
    assert profiles.put(stored, later) == info  # the first one stays
    profiles.set_pin("m", "m@0-1", "me")
    assert profiles.pin("m") is not None and profiles.pinned_models() == ["m"]
    profiles.set_pin("m", None, "me")
    assert profiles.pins() == {"m": profiles.pin("m")} and profiles.pins()["m"].profile_id is None


@pytest.mark.parametrize(
    "reference",
    [{}, {"trailing": "7d", "lag": "1d"}, {"start": "2026-11-01", "end": "2026-11-02"}],
)
def test_a_configuration_written_out_in_full_reads_back(
    tmp_path: Path, reference: dict[str, str]
) -> None:
    """`watchkeeper demo` writes its configuration with every default spelled out (`lag: 0`,
    `refresh: 1d` included); the file must load again, unchanged."""
    config = config_from_dict({"models": {"m": {"reference": reference}}})
    path = tmp_path / "watchkeeper.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", by_alias=True)))
    again = load_config(path)
    assert again.model("m").reference == config.model("m").reference
