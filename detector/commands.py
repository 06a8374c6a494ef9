"""The detector's subcommands of `watchkeeper`: replay, test-rules, explain and reference.

`watchkeeper/cli.py` calls `add_parsers` once and dispatches to `run_replay`,
`run_test_rules`, `run_explain` and `run_reference`. This module imports nothing heavy at load
time, so the other subcommands start fast; the work happens in `replay`, `rules_test`,
`explain` and `reference_cli`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_parsers(commands: Any) -> None:
    """Add `replay`, `test-rules`, `explain` and `reference` to the CLI's subparsers."""
    replay = commands.add_parser(
        "replay",
        help="backtest: which alerts would have fired on recorded predictions",
        description=(
            "Replay recorded predictions (CSV or Parquet) through the detector and the alert "
            "lifecycle with time advancing with the data: windows, `for` durations, label "
            "delay and staleness during gaps behave as live. Without --config, every model "
            "is judged on tumbling hourly windows; without --reference, its first day is its "
            "reference. Writes one JSON line per alert transition to --out; progress goes to "
            "stderr and a summary (alerts per check) to stdout."
        ),
    )
    replay.add_argument(
        "--predictions",
        required=True,
        type=Path,
        metavar="P.csv",
        help="timestamp, prediction_id, features..., prediction, optional "
        "latency_ms, error, fallback, model, version",
    )
    replay.add_argument(
        "--labels",
        type=Path,
        metavar="L.csv",
        help="prediction_id, label, timestamp (when the label became known)",
    )
    replay.add_argument(
        "--reference",
        type=Path,
        metavar="R.csv",
        help="features, prediction and optionally label of the reference data",
    )
    replay.add_argument("--config", type=Path, help="watchkeeper.yaml with the models' checks")
    replay.add_argument(
        "--model",
        help="only this model (or the name of a file without a model column; default 'model')",
    )
    replay.add_argument("--out", required=True, type=Path, metavar="alerts.jsonl")
    replay.add_argument(
        "--findings-out",
        type=Path,
        metavar="findings.jsonl",
        help="also write every finding (one JSON line each, with its id)",
    )

    rules = commands.add_parser(
        "test-rules",
        help="unit-test a configuration against synthetic streams with expected alerts",
        description=(
            "Run the tests of a YAML file: each generates a prediction stream with stated "
            "changes at stated times (or reads a predictions file), replays it with the "
            "file's configuration, and compares the alerts firing at given times with those "
            "expected (or expected absent). Exit 1 with a readable diff when they differ."
        ),
    )
    rules.add_argument("file", type=Path, help="the rule test file (YAML)")

    explain = commands.add_parser(
        "explain",
        help="recompute one finding from the data and show the numbers behind it",
        description=(
            "Find FINDING_ID (the `id` of a findings.jsonl line or the `finding_id` of an "
            "alert) and recompute it: from the replay files when --findings is given, else "
            "from the store of --config. Prints stored and recomputed numbers side by side, "
            "the window and the reference data used; exit 1 if they differ."
        ),
    )
    explain.add_argument("finding_id", metavar="FINDING_ID")
    explain.add_argument(
        "--findings",
        type=Path,
        metavar="findings.jsonl",
        help="findings written by `replay --findings-out`",
    )
    explain.add_argument("--predictions", type=Path, metavar="P.csv")
    explain.add_argument("--labels", type=Path, metavar="L.csv")
    explain.add_argument("--reference", type=Path, metavar="R.csv")
    explain.add_argument("--config", type=Path, help="watchkeeper.yaml")
    explain.add_argument("--model")
    _add_reference_parser(commands)


def _add_reference_parser(commands: Any) -> None:
    reference = commands.add_parser(
        "reference",
        help="re-baseline a model (set its reference), or show which reference each uses",
        description=(
            "A model's checks compare its windows with a reference profile, computed once and "
            "stored in the data directory (references.db). `set` profiles a reference file or "
            "a window of the model's stored history and makes it the model's reference; the "
            "running detector uses it from its next run. `clear` returns the model to its "
            "configured reference. `show` prints the profile each model uses."
        ),
    )
    actions = reference.add_subparsers(dest="action", metavar="ACTION", required=True)
    set_ = actions.add_parser(
        "set",
        help="make a file or a window of history the model's reference",
        description="Profile R.csv (features, prediction, optionally label; CSV or Parquet) "
        "or the model's stored predictions in [--start, --end) and make it MODEL's reference "
        "until the next `set` or `clear`.",
    )
    set_.add_argument("model", metavar="MODEL")
    source = set_.add_mutually_exclusive_group(required=True)
    source.add_argument("--file", type=Path, metavar="R.csv", help="a reference file")
    source.add_argument("--start", metavar="TIME", help="window start (ISO 8601; with --end)")
    set_.add_argument("--end", metavar="TIME", help="window end (ISO 8601, exclusive)")
    show = actions.add_parser("show", help="which reference profile each model uses")
    show.add_argument("model", metavar="MODEL", nargs="?")
    clear = actions.add_parser(
        "clear", help="return a model to its configured reference (undo `set`)"
    )
    clear.add_argument("model", metavar="MODEL")
    for parser in (set_, clear):
        parser.add_argument(
            "--by", metavar="NAME", help="who re-baselines, for the audit log (default: login)"
        )
    for parser in (set_, show, clear):
        parser.add_argument("--config", type=Path, help="watchkeeper.yaml (default: none)")
        parser.add_argument(
            "--data-dir", type=Path, help="data directory (overrides storage.path of the config)"
        )


def _config(path: Path | None) -> Any:
    from watchkeeper.config import load_config

    return load_config(path) if path is not None else None


def run_replay(args: argparse.Namespace) -> int:
    for path in (args.predictions, args.labels, args.reference):
        if path is not None and not path.is_file():
            print(f"watchkeeper replay: no such file: {path}", file=sys.stderr)
            return 2
    from .replay import main

    code = main(
        str(args.predictions),
        str(args.out),
        labels=None if args.labels is None else str(args.labels),
        reference=None if args.reference is None else str(args.reference),
        config=_config(args.config),
        model=args.model,
        findings_out=None if args.findings_out is None else str(args.findings_out),
    )
    # The process ends next; with every object frozen, the interpreter's exit skips its
    # garbage collections over the million-row batch and pandas' and scipy's modules
    # (~0.2 s of a 4 s replay). An in-process caller keeps working (it only loses the
    # collection of cycles that exist at this moment).
    import gc

    gc.freeze()
    return code


def run_test_rules(args: argparse.Namespace) -> int:
    from .rules_test import RuleTestError, run_file

    try:
        return run_file(args.file, sys.stdout)
    except RuleTestError as exc:
        print(f"watchkeeper test-rules: {exc}", file=sys.stderr)
        return 2


def run_explain(args: argparse.Namespace) -> int:
    from .explain import ExplainError, explain_replay, explain_store

    try:
        if args.findings is not None:
            if args.predictions is None:
                raise ExplainError(
                    "--findings needs --predictions (and the replay's --labels, "
                    "--reference, --config)"
                )
            return explain_replay(
                args.finding_id,
                args.findings,
                args.predictions,
                sys.stdout,
                labels=args.labels,
                reference=args.reference,
                config=_config(args.config),
                model=args.model,
            )
        return explain_store(args.finding_id, _config(args.config), sys.stdout)
    except ExplainError as exc:
        print(f"watchkeeper explain: {exc}", file=sys.stderr)
        return 1


def run_reference(args: argparse.Namespace) -> int:
    if args.action == "set" and (args.start is None) != (args.end is None):
        print("watchkeeper reference set: --start and --end go together", file=sys.stderr)
        return 2
    from .reference_cli import run

    return run(args)
