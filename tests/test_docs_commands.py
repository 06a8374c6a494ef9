"""Every shell command in the docs is run by a test, or says why it cannot be (issue 8).

Which text is a command
-----------------------
The docs are README.md, docs/*.md and examples/**/README.md, read as CommonMark (by
markdown-it-py, which streamlit brings through `rich`). Commands are the lines of

- fenced blocks tagged `sh`, `bash`, `shell` or `console`, and fenced blocks without a language:
  the docs write synopses that way (`watchkeeper silence list [--active] --data-dir DATA`), so a
  block that holds no commands must say what it holds (`text`, `yaml`, `json`, `python`);
- indented code blocks, for the same reason (docs/checks.md writes its synopses so);
- in a `console` block, only the lines after `$ `. The lines up to the next `$ ` are the output
  a reader should see, and the test that runs the command checks them (any number and `...`
  match anything in their place).

A command is one logical line: `\\`-continued lines are joined, a comment (a `#` that starts a
word outside quotes) and a trailing `&` are dropped, blank and comment lines are skipped, and a
`&&` chain stays one command, as a reader pastes it. Inline code in prose is not a command, but
every inline `watchkeeper COMMAND --option` must name a real command and real options, as must
every `watchkeeper` command in a block and the examples of `watchkeeper --help`.

How each command is accounted for
---------------------------------
By exactly one of:

(a) `RUN_HERE`: a test of this module runs it for real, in a temporary directory, on loopback,
    on real files, and asserts what a reader expects (exit code, output, files, answers).
    Free ports replace the docs' fixed ones; a synopsis has its `[optional parts]`, `a|b`
    choices and placeholder words (`DATA`, `ID`, ...) filled in.
(b) `RUN_ELSEWHERE`: another test runs it; that test must still exist and still contain the
    strings named, so the mapping cannot rot.
(c) `CANNOT_RUN_HERE`: it needs what no test machine has (a Docker engine, an InfluxDB 2
    server, downloads from PyPI), with the reason.

A new command in the docs that is in none of them fails `test_every_doc_command_is_accounted_for`
with its file, line and text; an entry that no longer matches a doc command fails too.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import yaml
from fixtures_collectors import free_port, wait_for
from markdown_it import MarkdownIt
from prometheus_client import CollectorRegistry, Counter, start_http_server

from watchkeeper import Monitor
from watchkeeper.alerting import AlertManager
from watchkeeper.cli import build_parser, main
from watchkeeper.config import config_from_dict
from watchkeeper.dashboard import health
from watchkeeper.detector.replay import finding_id
from watchkeeper.detector.streams import Change, StreamSpec, generate
from watchkeeper.tsdb import Finding, Prediction, SQLiteStore

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's watchkeeper, python, uvicorn, ...
SHELL_LANGUAGES = {"sh", "bash", "shell", "console", ""}


def doc_files() -> list[Path]:
    return [
        ROOT / "README.md",
        *sorted((ROOT / "docs").glob("*.md")),
        *sorted((ROOT / "examples").glob("**/README.md")),
    ]


# --------------------------------------------------------------------------------------------
# Reading the docs


@dataclass(frozen=True)
class DocCommand:
    path: str  # relative to the repository
    line: int  # 1-based, of the command's first line
    text: str
    output: tuple[str, ...] = ()  # what a console block shows after it

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.text}"


@dataclass(frozen=True)
class Block:
    path: str
    line: int  # 1-based, of the block's first content line
    language: str  # "<indented>" for an indented code block
    text: str


def parse_blocks(path: str, markdown: str) -> list[Block]:
    found = []
    for token in MarkdownIt("commonmark").parse(markdown):
        if token.type == "fence" and token.map:
            language = token.info.strip().split(" ")[0]
            found.append(Block(path, token.map[0] + 2, language, token.content))
        elif token.type == "code_block" and token.map:
            found.append(Block(path, token.map[0] + 1, "<indented>", token.content))
    return found


@functools.cache
def blocks() -> tuple[Block, ...]:
    return tuple(
        block
        for path in doc_files()
        for block in parse_blocks(str(path.relative_to(ROOT)), path.read_text())
    )


def blocks_of(path: str, language: str) -> list[str]:
    return [b.text for b in blocks() if b.path == path and b.language == language]


def without_comment(line: str) -> str:
    """`line` up to a shell comment: a `#` that starts a word, outside quotes."""
    quote = ""
    for i, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def commands_in(block: Block) -> list[DocCommand]:
    console = block.language == "console"
    lines = block.text.splitlines()
    found: list[DocCommand] = []
    i = 0
    while i < len(lines):
        start, text = i, lines[i]
        if console:
            if not text.startswith("$ "):
                i += 1
                continue
            text = text[2:]
        while text.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            text = text.rstrip()[:-1].rstrip() + " " + lines[i].strip()
        text = without_comment(text).strip()
        if text.endswith(" &"):
            text = text[:-2].rstrip()
        i += 1
        output: list[str] = []
        if console:
            while i < len(lines) and not lines[i].startswith("$ "):
                output.append(lines[i])
                i += 1
        if text:
            found.append(DocCommand(block.path, block.line + start, text, tuple(output)))
    return found


def commands_of_blocks(found: list[Block] | tuple[Block, ...]) -> list[DocCommand]:
    return [
        command
        for block in found
        if block.language in SHELL_LANGUAGES or block.language == "<indented>"
        for command in commands_in(block)
    ]


@functools.cache
def doc_commands() -> tuple[DocCommand, ...]:
    return tuple(commands_of_blocks(blocks()))


def inline_code(path: Path) -> Iterator[tuple[int, str]]:
    """(line of the paragraph, text) of every inline code span."""
    for token in MarkdownIt("commonmark").parse(path.read_text()):
        if token.type == "inline" and token.children and token.map:
            for child in token.children:
                if child.type == "code_inline":
                    yield token.map[0] + 1, child.content


# --------------------------------------------------------------------------------------------
# How each command is accounted for

RUN_HERE_BY_TEST: dict[str, list[str]] = {
    "test_watchkeeper_and_each_command_explain_themselves": [  # README.md
        "watchkeeper demo --help",
    ],
    "test_the_readme_configuration_checks_serves_and_shows": [  # README.md
        "watchkeeper check-config watchkeeper.yaml",
        "watchkeeper serve --config watchkeeper.yaml",
        "watchkeeper dashboard --config watchkeeper.yaml",
    ],
    "test_serve_without_a_configuration_keeps_its_data_in_watchkeeper_data": [
        "watchkeeper serve",  # examples/sklearn_service/README.md
    ],
    "test_silences_and_feedback_as_the_alerting_guide_writes_them": [  # docs/alerting.md
        "watchkeeper silence add 'model=\"fraud-scorer\"' 'check!=\"up\"' --duration 2h "
        '--comment "retraining" [--author ana] [--start 2026-11-22T10:00Z] --data-dir DATA',
        "watchkeeper silence list [--active] --data-dir DATA",
        "watchkeeper silence expire ID --data-dir DATA",
        "watchkeeper alerts list --data-dir DATA",
        "watchkeeper alerts ack FINGERPRINT-PREFIX --false-positive|--true-positive "
        "[--note ...] --data-dir DATA",
        "watchkeeper alerts report --data-dir DATA",
    ],
    "test_replay_backtests_and_explain_recomputes_a_replay_finding": [  # docs/checks.md
        "watchkeeper replay --predictions P.csv [--labels L.csv] [--reference R.csv] "
        "[--config C.yaml] [--model NAME] --out alerts.jsonl [--findings-out findings.jsonl]",
        "watchkeeper explain 16d29b81c45d22bd --findings findings.jsonl --predictions P.csv "
        "--labels L.csv --reference R.csv [--config C.yaml]",
    ],
    "test_test_rules_runs_the_checks_guide_example": [  # docs/checks.md
        "watchkeeper test-rules rules.yaml",
    ],
    "test_the_scale_out_commands_run_each_role_on_one_store": [  # docs/scaling.md
        "watchkeeper serve --config watchkeeper.yaml --role ingest --port 8765",
        "watchkeeper serve --config watchkeeper.yaml --role ingest --port 8766",
        "watchkeeper detect --config watchkeeper.yaml --shard 1/2 --port 9101",
        "watchkeeper detect --config watchkeeper.yaml --shard 2/2 --port 9102",
        "watchkeeper serve --config watchkeeper.yaml --role alerting,scraper --port 9103",
    ],
    "test_detect_once_per_shard_then_explain_a_stored_finding": [
        "watchkeeper detect --config watchkeeper.yaml --once --shard 1/2",  # docs/scaling.md
        "watchkeeper detect --config watchkeeper.yaml --once --shard 2/2",
        "watchkeeper explain 16d29b81c45d22bd --config watchkeeper.yaml",  # docs/checks.md
    ],
    "test_a_self_signed_certificate_from_openssl_serves_tls": [  # docs/security.md
        'openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=watchkeeper.internal" '
        '-addext "subjectAltName=DNS:watchkeeper.internal,IP:127.0.0.1" -keyout key.pem '
        "-out cert.pem",
    ],
    "test_the_compose_env_file_is_made_private": [  # docs/production.md, the steps before Docker
        "cd compose",
        "cp .env.example .env && chmod 600 .env",
    ],
}
RUN_HERE: dict[str, str] = {
    command: test for test, commands in RUN_HERE_BY_TEST.items() for command in commands
}


@dataclass(frozen=True)
class Elsewhere:
    test: str  # "tests/FILE.py::test_name"
    uses: tuple[str, ...]  # what that file must still contain


EXAMPLES = "tests/test_examples.py::"
EXAMPLE_TEST = EXAMPLES + "test_the_services_predictions_labels_and_fallbacks_reach_the_store"
GUNICORN_TEST = EXAMPLES + "test_the_flask_example_under_gunicorn_reports_from_every_worker"
RUNBOOK_TEST = EXAMPLES + "test_every_runbook_command_runs_against_a_real_data_directory"
RUNBOOK_USES = ('code_blocks(ROOT / "docs" / "runbook.md")', "main(command[1:])")
DEMO_TEST = "tests/test_demo.py::test_the_demo_fires_for_its_incident_and_delivers_it"
UVICORN = "WATCHKEEPER_ENDPOINT=http://127.0.0.1:8765 uvicorn app:create_app --factory --port 8000"
TRAFFIC = "python traffic.py --url http://127.0.0.1:8000 --requests 200 --missing-every 10"
SHIFTED = "python traffic.py --url http://127.0.0.1:8000 --requests 300 --shift 1.5"
GUNICORN = "gunicorn -w 2 -c gunicorn.conf.py --bind 127.0.0.1:8000 service:app"
MULTIPROC = "PROMETHEUS_MULTIPROC_DIR=/tmp/prom WATCHKEEPER_ENDPOINT=http://127.0.0.1:8765"
RUNBOOK_SILENCE = (
    "watchkeeper silence add --config watchkeeper.yaml --duration 2h --comment "
    '"rollback in progress" \'model="fraud-scorer"\' \'check="drift"\''
)

AUDIT_CLI_TEST = "tests/test_audit.py::test_silences_added_and_expired_from_the_cli_name_who_did_it"
AUDIT_ADD = (
    "watchkeeper silence add 'model=\"fraud-scorer\"' --duration 2h --author ana "
    '--comment "retraining tonight" --config watchkeeper.yaml'
)

RUN_ELSEWHERE: dict[str, Elsewhere] = {
    # docs/instrumenting.md and examples/sklearn_service/README.md
    "cd examples/sklearn_service": Elsewhere(
        EXAMPLE_TEST, ("cd examples/sklearn_service", "cwd=EXAMPLE")
    ),
    UVICORN: Elsewhere(EXAMPLE_TEST, (UVICORN, '"app:create_app", "--factory"')),
    TRAFFIC: Elsewhere(EXAMPLE_TEST, (TRAFFIC, '"traffic.py", "--url", url, "--requests"')),
    SHIFTED: Elsewhere(EXAMPLE_TEST, (SHIFTED, "shlex.split(SHIFT_COMMAND")),
    "rm -rf /tmp/prom && mkdir /tmp/prom": Elsewhere(
        GUNICORN_TEST, ("rm -rf /tmp/prom && mkdir /tmp/prom", "multiproc.mkdir()")
    ),
    f"{MULTIPROC} {GUNICORN}": Elsewhere(GUNICORN_TEST, (GUNICORN, "shlex.split(GUNICORN")),
    # docs/runbook.md: that test reads the runbook's commands and runs each of them
    "watchkeeper alerts list --config watchkeeper.yaml": Elsewhere(RUNBOOK_TEST, RUNBOOK_USES),
    "watchkeeper explain FINDING_ID --config watchkeeper.yaml": Elsewhere(
        RUNBOOK_TEST, RUNBOOK_USES
    ),
    RUNBOOK_SILENCE: Elsewhere(RUNBOOK_TEST, RUNBOOK_USES),
    # README.md: a demo runs for 40 s or more, too long to run again here
    "watchkeeper demo --duration 60 --no-dashboard": Elsewhere(
        "tests/test_demo.py::test_ctrl_c_stops_the_demo_cleanly",
        ('"--no-dashboard"', '"--duration"'),  # the other test of the file gives a duration
    ),
    "watchkeeper demo --notify json://127.0.0.1:9000/hook": Elsewhere(
        DEMO_TEST, ('"--duration"', '"--notify"', "webhook.url")
    ),
    "watchkeeper demo --data-dir /tmp/wk-demo": Elsewhere(DEMO_TEST, ('"--data-dir"',)),
    # docs/security.md, "Audit log": the example session of that section
    AUDIT_ADD: Elsewhere(AUDIT_CLI_TEST, ('"silence", "add"', '"--author"', '"--comment"')),
    "watchkeeper silence expire 574bc753ef7d --by bo --config watchkeeper.yaml": Elsewhere(
        AUDIT_CLI_TEST, ('"silence", "expire", silence_id, "--by"',)
    ),
    "watchkeeper audit --config watchkeeper.yaml --since 7d --action silence": Elsewhere(
        AUDIT_CLI_TEST, ('"audit", *where, "--since", "7d", "--action", "silence"',)
    ),
    "watchkeeper audit --config watchkeeper.yaml --json": Elsewhere(
        AUDIT_CLI_TEST, ('"audit", *argv, "--json"',)
    ),
}

REFERENCES = "tests/test_references.py::"
REBASELINE_TEST = REFERENCES + "test_re_baselining_after_an_accepted_shift_stops_the_drift_alarm"
FILE_REFERENCE_TEST = REFERENCES + "test_a_reference_file_is_profiled_once_and_never_read_again"
RUN_ELSEWHERE |= {
    # docs/checks.md, "References"
    "watchkeeper reference set MODEL --file R.csv [--config C.yaml]": Elsewhere(
        FILE_REFERENCE_TEST, ('"reference", "set", "m", "--file", str(reference), "--config"',)
    ),
    "watchkeeper reference set MODEL --start 2026-11-20T00:00:00Z --end 2026-11-27T00:00:00Z "
    "[--config C.yaml]": Elsewhere(
        REBASELINE_TEST,
        ('window = ["--start", iso(change), "--end"', '"reference", "set", "m", *window, "--by"'),
    ),
    "watchkeeper reference show [MODEL] [--config C.yaml]": Elsewhere(
        FILE_REFERENCE_TEST, ('"reference", "show", "m", "--config"',)
    ),
    "watchkeeper reference clear MODEL [--config C.yaml]": Elsewhere(
        REBASELINE_TEST, ('"reference", "clear", "m", "--config"',)
    ),
}

NO_DOCKER = "no Docker engine runs on the test machines; tests/test_compose.py validates the stack"
NO_INFLUXDB = "no InfluxDB 2 server on the test machines (no Debian package; nothing is downloaded)"

CANNOT_RUN_HERE: dict[str, str] = {
    r"python3 -m venv \.venv && \.venv/bin/pip install \. && \.venv/bin/watchkeeper demo": (
        "installs every dependency from PyPI into a new venv (minutes of downloads); CI's "
        "scripts/test.sh makes its venv the same way, test_packaging.py installs this tree and "
        "test_demo.py runs the demo"
    ),
    r"bash scripts/test.sh": "the whole test suite, this module included; CI runs it (.ci/run)",
    r"docker (run|compose) .*": NO_DOCKER,
    r"influxd .*|influx setup .*": NO_INFLUXDB,
    r"WATCHKEEPER_TEST_INFLUX_\w+=.* pytest tests/influx2 -v": NO_INFLUXDB,
}


def accounts(command: DocCommand) -> list[str]:
    found = []
    if command.text in RUN_HERE:
        found.append(f"run here by {RUN_HERE[command.text]}")
    if command.text in RUN_ELSEWHERE:
        found.append(f"run by {RUN_ELSEWHERE[command.text].test}")
    found += [
        f"cannot run here: {reason}"
        for pattern, reason in CANNOT_RUN_HERE.items()
        if re.fullmatch(pattern, command.text)
    ]
    return found


SAMPLE = r"""# A page

Inline code such as `watchkeeper serve --port 1` is prose, not a command.

```sh
# a comment line
watchkeeper serve --config w.yaml   # and a comment
python3 -m venv .venv && .venv/bin/pip install .
uvicorn app:create_app \
    --port 8000 &
echo '# quoted' "a # b" c#d
```

```console
$ watchkeeper test-rules rules.yaml
ok   a test
1/1 rule tests passed
$ echo done
done
```

```
watchkeeper silence list [--active] --data-dir DATA
```

    watchkeeper replay --predictions P.csv \
        --out alerts.jsonl

1. In a list:

   ```bash
   watchkeeper alerts list
   ```

```python
print("a program, not a command")
```

```text
output, not a command
```
"""


def test_the_rule_reads_commands_as_the_docstring_says() -> None:
    found = [(c.line, c.text, c.output) for c in commands_of_blocks(parse_blocks("x", SAMPLE))]
    assert found == [
        (7, "watchkeeper serve --config w.yaml", ()),
        (8, "python3 -m venv .venv && .venv/bin/pip install .", ()),
        (9, "uvicorn app:create_app --port 8000", ()),
        (11, "echo '# quoted' \"a # b\" c#d", ()),
        (15, "watchkeeper test-rules rules.yaml", ("ok   a test", "1/1 rule tests passed")),
        (18, "echo done", ("done",)),
        (23, "watchkeeper silence list [--active] --data-dir DATA", ()),
        (26, "watchkeeper replay --predictions P.csv --out alerts.jsonl", ()),
        (32, "watchkeeper alerts list", ()),
    ]


def accounting_problems(commands: list[DocCommand] | tuple[DocCommand, ...]) -> list[str]:
    problems = []
    for command in commands:
        found = accounts(command)
        if not found:
            problems.append(
                f"{command}\n    is exercised by no test: run it in a test of this module and "
                "add it to RUN_HERE, map it to the test that runs it in RUN_ELSEWHERE, or, only "
                "if no test machine can run it, give the reason in CANNOT_RUN_HERE"
            )
        elif len(found) > 1:
            problems.append(f"{command}\n    is accounted for more than once: {found}")
    return problems


def test_every_doc_command_is_accounted_for() -> None:
    problems = accounting_problems(doc_commands())
    assert not problems, "\n".join(problems)


def test_a_new_command_nobody_runs_is_named_with_its_file_and_line() -> None:
    page = "# New\n\n```sh\nwatchkeeper serve\nwatchkeeper frobnicate --now\n```\n"
    problems = accounting_problems(commands_of_blocks(parse_blocks("docs/new.md", page)))
    assert len(problems) == 1
    assert problems[0].startswith("docs/new.md:5: watchkeeper frobnicate --now\n")


def test_every_entry_still_matches_a_doc_command() -> None:
    texts = {c.text for c in doc_commands()}
    stale = [t for t in [*RUN_HERE, *RUN_ELSEWHERE] if t not in texts]
    stale += [p for p in CANNOT_RUN_HERE if not any(re.fullmatch(p, t) for t in texts)]
    assert not stale, f"no doc has these commands any more: {stale}"


def test_every_command_run_here_has_its_test() -> None:
    module = sys.modules[__name__]
    for text, name in RUN_HERE.items():
        assert name.startswith("test_") and callable(getattr(module, name, None)), (text, name)


def test_every_command_run_elsewhere_is_still_in_that_test() -> None:
    for text, where in RUN_ELSEWHERE.items():
        file, name = where.test.split("::")
        source = (ROOT / file).read_text()
        assert f"def {name}(" in source, f"{where.test} (for `{text}`) is gone"
        for used in where.uses:
            assert used in source, f"{file} no longer has {used!r} (for `{text}`)"


def test_what_cannot_run_here_is_run_where_the_reason_says() -> None:
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()
    test_sh = (ROOT / "scripts" / "test.sh").read_text()
    assert 'python3 -m venv "$venv"' in test_sh and "pip install" in test_sh
    assert "docker compose" in (ROOT / "tests" / "test_compose.py").read_text()


def commands_of(request: pytest.FixtureRequest) -> list[DocCommand]:
    """The doc commands RUN_HERE gives to the calling test, in the table's order."""
    name = request.function.__name__
    wanted = [text for text, test in RUN_HERE.items() if test == name]
    found = {c.text: c for c in reversed(doc_commands())}  # the first place each appears
    missing = [text for text in wanted if text not in found]
    assert not missing, f"not in the docs any more: {missing}"
    return [found[text] for text in wanted]


# --------------------------------------------------------------------------------------------
# Every `watchkeeper` command the docs write uses real commands and options


def cli_options() -> dict[str, set[str]]:
    """Each command path ("", "serve", "silence add", ...) -> the options it takes."""
    found: dict[str, set[str]] = {}

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        found[path] = {option for action in parser._actions for option in action.option_strings}
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}".strip())

    walk(build_parser(), "")
    return found


def cli_problems(text: str, options: dict[str, set[str]]) -> list[str]:
    """What is wrong with the `watchkeeper` commands in `text` (a command line or synopsis)."""
    problems = []
    for part in re.split(r"&&|;|\|\|", text):
        words = re.sub(r"[\[\]]", " ", part).split()
        while words and re.fullmatch(r"\w+=\S*", words[0]):  # VARIABLE=value before it
            words = words[1:]
        if not words or words[0].rsplit("/", 1)[-1] != "watchkeeper":
            continue
        words = words[1:]
        while words and words[0].startswith("--") and words[0] in options[""]:
            words = words[2:] if words[0] == "--log-level" else words[1:]
        path = ""
        while words and f"{path} {words[0]}".strip() in options:
            path = f"{path} {words[0]}".strip()
            words = words[1:]
        if not path:
            problems.append(f"no such command: watchkeeper {' '.join(words[:1])}")
            continue
        for option in re.findall(r"(?<![\w-])--[a-z][\w-]*", " ".join(words)):
            if option not in options[path]:
                problems.append(f"`watchkeeper {path}` has no option {option}")
    return problems


def test_the_option_check_finds_wrong_commands_and_options() -> None:
    options = cli_options()
    assert cli_problems("watchkeeper serve --config w.yaml --role ingest", options) == []
    assert cli_problems("cd x && watchkeeper frobnicate --now", options) == [
        "no such command: watchkeeper frobnicate"
    ]
    assert cli_problems("X=1 watchkeeper silence list [--activ] --data-dir D", options) == [
        "`watchkeeper silence list` has no option --activ"
    ]
    assert cli_problems("influx setup --username watchkeeper --force", options) == []


def test_every_watchkeeper_command_in_the_docs_uses_real_commands_and_options() -> None:
    options = cli_options()
    problems = [f"{c}: {p}" for c in doc_commands() for p in cli_problems(c.text, options)]
    subcommands = {path.split(" ")[0] for path in options if path}
    for path in doc_files():
        for line, code in inline_code(path):
            first = code.split(" ")[0]
            if " --" in code and (first == "watchkeeper" or first in subcommands):
                text = code if first == "watchkeeper" else f"watchkeeper {code}"
                where = f"{path.relative_to(ROOT)}:{line}: `{code}`"
                problems += [f"{where}: {p}" for p in cli_problems(text, options)]
    epilog = build_parser().epilog or ""
    examples = re.findall(r"^ +(watchkeeper .*?)(?: {2,}.*)?$", epilog, re.MULTILINE)
    assert examples, epilog
    for example in examples:
        problems += [
            f"`watchkeeper --help`: {example}: {p}" for p in cli_problems(example, options)
        ]
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------------------------
# Running commands as a reader does: bash, in a temporary directory, the venv first on PATH


def environment(**extra: str) -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **extra}


def shell(
    command: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        env=env or environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ran(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


@dataclass
class Running:
    command: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def line(self, fragment: str, timeout: float = 60) -> str:
        """The first output line holding `fragment`; fails with the output if it exits first."""

        def printed() -> str | None:
            for line in self.output().splitlines():
                if fragment in line:
                    return line
            if self.process.poll() is not None:
                raise AssertionError(f"`{self.command}` exited:\n{self.output()[-3000:]}")
            return None

        return wait_for(printed, timeout, f"`{self.command}` to print {fragment!r}")

    def stop(self) -> int:
        """SIGTERM, as a process manager stops it; its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"`{self.command}` ignored SIGTERM:\n{self.output()[-3000:]}"
            ) from None


class Background:
    """Commands left running, as `command &` leaves them; each stopped when the test ends."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.running: list[Running] = []

    def start(self, command: str, env: dict[str, str] | None = None) -> Running:
        log = self.cwd / f"background-{len(self.running)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                ["bash", "-c", f"exec {command}"],
                cwd=self.cwd,
                env=env or environment(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        running = Running(command, process, log)
        self.running.append(running)
        return running

    def stop_all(self) -> list[int]:
        """SIGTERM to every one at once, then their exit codes, in the order they started."""
        for running in self.running:
            if running.process.poll() is None:
                running.process.send_signal(signal.SIGTERM)
        codes = []
        for running in self.running:
            try:
                codes.append(running.process.wait(timeout=30))
            except subprocess.TimeoutExpired:
                running.process.kill()
                codes.append(running.process.wait())
        return codes


@pytest.fixture
def background(tmp_path: Path) -> Iterator[Background]:
    started = Background(tmp_path)
    yield started
    started.stop_all()


def filled(synopsis: str, values: dict[str, str], *, optional: bool = True, choice: int = 0) -> str:
    """A command line from a synopsis: each `[part]` kept (or dropped), the `choice`-th of
    `--a|--b`, and each placeholder word of `values` replaced."""
    text = re.sub(r"\[([^\[\]]*)\]", lambda m: m.group(1) if optional else "", synopsis)
    text = re.sub(
        r"(?<!\S)--[\w-]+(?:\|--[\w-]+)+(?!\S)", lambda m: m.group(0).split("|")[choice], text
    )
    for word, value in values.items():
        text = re.sub(rf"(?<!\S){re.escape(word)}(?!\S)", lambda _m, v=value: v, text)
    return re.sub(r" {2,}", " ", text).strip()


def assert_shows(command: DocCommand, stdout: str) -> None:
    """The output a console block shows for `command` is in `stdout`, line by line, in order
    (numbers and `...` match anything in their place)."""
    assert command.output, f"{command}: the doc shows no output to compare"
    lines = iter(stdout.splitlines())
    for shown in command.output:
        parts = re.split(r"(\.\.\.|\d+(?:\.\d+)?)", shown)
        pattern = "".join(
            ".*" if p == "..." else r"\d+(?:\.\d+)?" if p[:1].isdigit() else re.escape(p)
            for p in parts
        )
        assert any(re.fullmatch(pattern, line.rstrip()) for line in lines), (
            f"{command.path}:{command.line}: the doc shows {shown!r}, the command printed:\n"
            f"{stdout}"
        )


# --------------------------------------------------------------------------------------------
# (a) The commands, run


def test_watchkeeper_and_each_command_explain_themselves(
    request: pytest.FixtureRequest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (demo_help,) = commands_of(request)
    subcommands = {path for path in cli_options() if path and " " not in path}
    top = shell("watchkeeper --help", tmp_path)
    assert top.returncode == 0, ran(top)
    listed = set(re.findall(r"^ {4}([a-z-]+)(?: {2,}|\n)", top.stdout, re.MULTILINE))
    assert listed == subcommands, top.stdout
    # the README names every command there is, and no other
    readme = [c.text for c in doc_commands() if c.path == "README.md"]
    readme += [code for _, code in inline_code(ROOT / "README.md")]
    named = {m for text in readme for m in re.findall(r"(?:^|/|\s)watchkeeper ([a-z-]+)", text)}
    assert named == subcommands, f"README names {sorted(named)}, the CLI has {sorted(subcommands)}"

    result = shell(demo_help.text, tmp_path)
    assert result.returncode == 0, ran(result)
    assert result.stdout.startswith("usage: watchkeeper demo")
    readme_demo = " ".join(c.text for c in doc_commands() if c.text.startswith("watchkeeper demo"))
    for option in re.findall(r"--[a-z-]+", readme_demo):
        assert option in result.stdout, option
    # and so does every other command (in-process: the same parser, without ten start-ups)
    for name in sorted(subcommands):
        with pytest.raises(SystemExit) as exited:
            main([name, "--help"])
        assert exited.value.code == 0
        assert capsys.readouterr().out.startswith(f"usage: watchkeeper {name}")


def test_the_readme_configuration_checks_serves_and_shows(
    request: pytest.FixtureRequest, tmp_path: Path, background: Background
) -> None:
    check, serve, dashboard = commands_of(request)
    (text,) = blocks_of("README.md", "yaml")
    config = yaml.safe_load(text)
    assert config["storage"]["path"] == "/var/lib/watchkeeper"
    data = tmp_path / "data"
    port, dashboard_port = free_port(), free_port()
    config["storage"]["path"] = str(data)
    config["ingest"]["port"] = port
    config["scrape"][0]["url"] = f"http://127.0.0.1:{free_port()}/metrics"  # nobody there
    config["dashboard"] = {"port": dashboard_port}
    (tmp_path / "watchkeeper.yaml").write_text(yaml.safe_dump(config))
    secrets = {"SLACK_TOKEN": "fakea/fakeb/fakec", "SMTP_PASSWORD": "fakepassword"}

    # the receivers' secrets come from the environment; without one, the key is named
    result = shell(check.text, tmp_path, environment(SLACK_TOKEN=secrets["SLACK_TOKEN"]))
    assert result.returncode == 1, ran(result)
    assert "watchkeeper.yaml: alerting.receivers.1:" in result.stderr
    assert "environment variable SMTP_PASSWORD is not set" in result.stderr
    result = shell(check.text, tmp_path, environment(**secrets))
    assert result.returncode == 0, ran(result)
    assert result.stdout == (
        f"watchkeeper.yaml: ok: sqlite store at {data / 'watchkeeper.db'} is writable; "
        "1 configured model(s); 2 receiver URL(s) accepted by apprise\n"
    )

    served = background.start(serve.text, environment(**secrets))
    shown = background.start(dashboard.text, environment(**secrets))
    url = f"http://127.0.0.1:{port}"
    assert served.line("watchkeeper running") == (
        f"watchkeeper running ingest, scraper, detector, alerting on {url} (data in {data})"
    )
    parts = httpx.get(f"{url}/healthz", timeout=5).json()["components"]
    assert {"ingest", "detector", "alerting", "scraper"} <= set(parts), parts
    monitor = Monitor("fraud-scorer", version="2.3.0", endpoint=url, registry=CollectorRegistry())
    monitor.log_prediction({"amount": 120.5, "country": "DE"}, 0.87, prediction_id="tx-1")
    assert monitor.close(timeout=10), monitor.stats
    store = SQLiteStore(data / "watchkeeper.db")
    try:
        (stored,) = store.predictions("fraud-scorer", 0, time.time() + 60)
    finally:
        store.close()
    assert stored.prediction_id == "tx-1" and stored.version == "2.3.0"

    assert shown.line("dashboard ready") == (
        f"dashboard ready: http://127.0.0.1:{dashboard_port} (Ctrl-C to stop)"
    )
    health_page = httpx.get(f"http://127.0.0.1:{dashboard_port}/_stcore/health", timeout=5)
    assert health_page.text == "ok"
    assert background.stop_all() == [0, 0]
    assert "stopping" in served.output()


def test_serve_without_a_configuration_keeps_its_data_in_watchkeeper_data(
    request: pytest.FixtureRequest, tmp_path: Path, background: Background
) -> None:
    (serve,) = commands_of(request)
    port = free_port()  # the default, 8765, may be taken on a shared machine
    served = background.start(f"{serve.text} --port {port}")
    assert served.line("watchkeeper running").endswith(
        f"on http://127.0.0.1:{port} (data in watchkeeper-data)"
    )
    assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    assert (tmp_path / "watchkeeper-data" / "watchkeeper.db").exists()
    assert served.stop() == 0


def write_alerts(data: Path) -> None:
    """alerting's state file as a real AlertManager leaves it: fraud-scorer's `amount` drifting
    (firing) and one error-rate episode that fired and resolved."""
    config = config_from_dict(
        {
            "storage": {"path": str(data)},
            "detector": {"defaults": {"checks": {"error_rate": {"for": 0}, "drift": {"for": 0}}}},
            "alerting": {"console": False},
        }
    )
    start = time.time() - 3 * 3600

    def finding(check: str, subject: str, minute: int, breached: bool) -> Finding:
        return Finding(
            model="fraud-scorer",
            check=check,
            subject=subject,
            statistic="s",
            value=1.0 if breached else 0.0,
            threshold=0.5,
            breached=breached,
            severity="warning" if check == "drift" else "critical",
            window_start=start + (minute - 5) * 60,
            window_end=start + minute * 60,
        )

    manager = AlertManager(config, config.storage.alert_state_file, [])
    try:
        manager.process(
            [
                finding("error_rate", "", 10, True),
                finding("error_rate", "", 30, False),
                finding("drift", "amount", 60, True),
            ]
        )
    finally:
        manager.close()


def test_silences_and_feedback_as_the_alerting_guide_writes_them(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    add, listing, expire, alerts, ack, report = commands_of(request)
    write_alerts(tmp_path / "data")
    where = {"DATA": "data"}

    def run(text: str) -> str:
        result = shell(text, tmp_path)
        assert result.returncode == 0, f"{text}\n{ran(result)}"
        return result.stdout

    # with every optional part (a silence that began on 2026-11-22 and lasted 2 h), then without
    planned = run(filled(add.text, where)).strip()
    active = run(filled(add.text, where, optional=False)).strip()
    assert re.fullmatch(r"\S+", planned) and re.fullmatch(r"\S+", active) and planned != active
    everything = run(filled(listing.text, where, optional=False))
    (line,) = [x for x in everything.splitlines() if x.startswith(active)]
    assert "active" in line and 'model="fraud-scorer" check!="up"' in line
    assert "retraining" in line
    (line,) = [x for x in everything.splitlines() if x.startswith(planned)]
    (start,) = re.findall(r"--start (\S+)\]", add.text)
    over = time.time() > datetime.fromisoformat(start).timestamp() + 2 * 3600
    assert ("expired" if over else "pending") in line and "ana" in line
    assert active in run(filled(listing.text, where))  # --active
    run(filled(expire.text, {**where, "ID": active}))
    assert active not in run(filled(listing.text, where))
    assert active in run(filled(listing.text, where, optional=False)), "kept for audit"

    listed = run(filled(alerts.text, where))
    assert listed.startswith("FINGERPRINT")
    (drift,) = [x.split()[0] for x in listed.splitlines() if "check=drift" in x]
    acked = run(filled(ack.text, {**where, "FINGERPRINT-PREFIX": drift[:8], "...": "'not real'"}))
    assert "acknowledged fraud-scorer drift" in acked and "false positive" in acked
    rows = {
        tuple(x.split()[:2]): x.split()[2:]
        for x in run(filled(report.text, where)).splitlines()[1:]
    }
    assert rows[("fraud-scorer", "drift")][:3] == ["1", "1", "0"]  # fired, false, true
    assert rows[("fraud-scorer", "error_rate")][:3] == ["1", "0", "0"]


def replay_files(folder: Path) -> None:
    """Two days of a model whose `x1` shifts by 1.5 standard deviations after a day and a half."""
    spec = StreamSpec(
        days=2,
        per_hour=120,
        numeric=3,
        categorical=1,
        seed=3,
        changes=(Change("mean_shift", 1.5 * 86400, feature="x1", amount=1.5),),
    )
    predictions, labels, reference = generate(spec)
    predictions.to_csv(folder / "P.csv", index=False)
    labels.to_csv(folder / "L.csv", index=False)
    reference.to_csv(folder / "R.csv", index=False)
    # a configured check, so that explaining without the configuration shows a difference
    (folder / "C.yaml").write_text(
        "models:\n  fraud-scorer:\n    window: 1h\n    every: 1h\n"
        "    checks:\n      drift: {min_effect: 0.2}\n"
    )


def test_replay_backtests_and_explain_recomputes_a_replay_finding(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    replay, explain = commands_of(request)
    replay_files(tmp_path)
    result = shell(filled(replay.text, {"NAME": "fraud-scorer"}), tmp_path)
    assert result.returncode == 0, ran(result)
    assert "windows" in result.stderr  # progress
    assert "alerts fired" in result.stdout and "drift" in result.stdout  # the summary per check
    alerts = [json.loads(x) for x in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    first = alerts[0]
    assert (first["state"], first["model"], first["check"], first["subject"]) == (
        "firing",
        "fraud-scorer",
        "drift",
        "x1",
    )
    assert first["threshold"] == 0.2  # from C.yaml
    # each line has exactly the fields the guide's example shows
    (example,) = [b for b in blocks_of("docs/checks.md", "json") if '"finding_id"' in b]
    assert set(first) == set(json.loads(example))
    findings = [json.loads(x) for x in (tmp_path / "findings.jsonl").read_text().splitlines()]
    assert first["finding_id"] in {f["id"] for f in findings}

    values = {"16d29b81c45d22bd": first["finding_id"]}
    result = shell(filled(explain.text, values), tmp_path)
    assert result.returncode == 0, ran(result)
    assert "recomputed: same numbers" in result.stdout and "'x1'" in result.stdout
    # without the replay's configuration, the numbers differ, as the guide warns
    result = shell(filled(explain.text, values, optional=False), tmp_path)
    assert result.returncode == 1, ran(result)
    assert "recomputed: DIFFERENT numbers" in result.stdout

    # the shortest form: no labels, no reference (the first day is), no configuration
    result = shell(filled(replay.text, {}, optional=False), tmp_path)
    assert result.returncode == 0, ran(result)
    alerts = [json.loads(x) for x in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert ("model", "drift", "x1") in {(a["model"], a["check"], a["subject"]) for a in alerts}


def test_test_rules_runs_the_checks_guide_example(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    (run,) = commands_of(request)
    (rules,) = [b for b in blocks_of("docs/checks.md", "yaml") if "tests:" in b]
    (tmp_path / "rules.yaml").write_text(rules)
    result = shell(run.text, tmp_path)
    assert result.returncode == 0, ran(result)
    assert_shows(run, result.stdout)

    # a wrong expectation fails with the line the guide quotes
    guide = (ROOT / "docs" / "checks.md").read_text()
    (quoted,) = re.findall(r"1 with lines like\n`([^`]+)`", guide)
    (tmp_path / "rules.yaml").write_text(rules.replace("subject: x3}", "subject: x1}"))
    result = shell(run.text, tmp_path)
    assert result.returncode == 1, ran(result)
    assert quoted in result.stdout
    (tmp_path / "rules.yaml").write_text("tests:\n  - stream: {days: 1, colour: red}\n")
    assert shell(run.text, tmp_path).returncode == 2  # the file itself is wrong


def test_the_scale_out_commands_run_each_role_on_one_store(
    request: pytest.FixtureRequest, tmp_path: Path, background: Background
) -> None:
    commands = commands_of(request)
    registry = CollectorRegistry()
    Counter("images", "images classified", registry=registry).inc(7)
    target_port = free_port()
    server, thread = start_http_server(target_port, addr="127.0.0.1", registry=registry)
    config = {
        "storage": {"path": "data"},
        "detector": {"interval": "1s"},
        "alerting": {"console": False},
        "scrape": [
            {
                "url": f"http://127.0.0.1:{target_port}/metrics",
                "model": "image-classifier",
                "interval": "1s",
            }
        ],
    }
    (tmp_path / "watchkeeper.yaml").write_text(yaml.safe_dump(config))
    ports = {}
    running = []
    for command in commands:
        (doc_port,) = re.findall(r"--port (\d+)", command.text)
        ports[doc_port] = free_port()
        running.append(background.start(command.text.replace(doc_port, str(ports[doc_port]))))
    try:
        first_lines = [r.line("watchkeeper running") for r in running]
        roles = [
            ("ingest", "8765"),
            ("ingest", "8766"),
            ("detector, shard 1/2", "9101"),
            ("detector, shard 2/2", "9102"),
            ("scraper, alerting", "9103"),
        ]
        assert first_lines == [
            f"watchkeeper running {what} on http://127.0.0.1:{ports[doc_port]} (data in data)"
            for what, doc_port in roles
        ]
        parts = {}
        for doc_port, port in ports.items():
            answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            assert answer.status_code == 200, (doc_port, answer.text)
            parts[doc_port] = set(answer.json()["components"]) - {"store"}
        assert parts == {
            "8765": {"ingest"},
            "8766": {"ingest"},
            "9101": {"detector"},
            "9102": {"detector"},
            "9103": {"scraper", "alerting"},
        }

        # both ingest replicas write to the one store, and the scraper too
        for i, doc_port in enumerate(["8765", "8766"]):
            url = f"http://127.0.0.1:{ports[doc_port]}"
            monitor = Monitor("churn", "v3", endpoint=url, registry=CollectorRegistry())
            for k in range(20):
                monitor.log_prediction({"tickets": k}, 0.5, prediction_id=f"r{i}-{k}")
            assert monitor.close(timeout=10), monitor.stats
        store = SQLiteStore(tmp_path / "data" / "watchkeeper.db")
        try:
            predictions = store.predictions("churn", 0, time.time() + 60)
            assert len({p.prediction_id for p in predictions}) == len(predictions) == 40

            def scraped() -> bool | None:
                return True if store.series("image-classifier") else None

            wait_for(scraped, 30, "the scraper to store image-classifier's samples")
        finally:
            store.close()
    finally:
        server.shutdown()
        thread.join(timeout=5)
    assert background.stop_all() == [0] * len(running)
    assert all("stopping" in r.output() for r in running)


def test_detect_once_per_shard_then_explain_a_stored_finding(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    shard_1, shard_2, explain = commands_of(request)
    (tmp_path / "watchkeeper.yaml").write_text(
        "storage:\n  path: data\n"
        "detector:\n  defaults:\n    window: 10m\n    every: 10m\n"
        "    checks:\n      error_rate: {for: 0s}\n"
    )
    models = [f"scorer-{i}" for i in range(6)]
    now = time.time()
    predictions = []
    for model in models:
        for k in range(360):  # one every 10 s over the last hour
            t = now - 3600 + 10 * k
            failed = model == "scorer-0" and t > now - 1200 and k % 2 == 0
            predictions.append(
                Prediction(
                    model=model,
                    prediction_id=f"{model}-{k}",
                    timestamp=t,
                    features={"x": float(k % 7)},
                    output=0.5,
                    version="1",
                    latency_s=0.02,
                    error=failed,
                )
            )
    store = SQLiteStore(tmp_path / "data" / "watchkeeper.db")
    try:
        store.write(predictions=predictions)
    finally:
        store.close()

    judged, first_run = 0, []
    for command in (shard_1, shard_2):
        result = shell(command.text, tmp_path)
        assert result.returncode == 0, ran(result)
        assert_shows(command, result.stdout)
        shard = command.text.rsplit(" ", 1)[1]
        (line,) = result.stdout.splitlines()
        count, found = re.findall(
            rf"judged (\d+) model\(s\) \(shard {shard}\): (\d+) finding", line
        )[0]
        judged += int(count)
        first_run.append(int(found))
        assert int(found) > 0 and "; 0 model(s) failed" in line
    assert judged == len(models)  # each model in exactly one shard
    # a second run resumes where the first stopped (it judges only a window that came due in
    # between, should the clock have crossed the 10-minute grid), and nothing is judged twice
    again = shell(shard_1.text, tmp_path)
    assert again.returncode == 0, ran(again)
    (found,) = re.findall(r": (\d+) finding", again.stdout)
    assert int(found) < first_run[0]
    store = SQLiteStore(tmp_path / "data" / "watchkeeper.db")
    try:
        stored = store.findings()
        breached = store.findings("scorer-0", breached_only=True)
    finally:
        store.close()
    assert len(stored) == len({f.key for f in stored}) == sum(first_run) + int(found)
    (error_rate, *_) = [f for f in breached if f.check == "error_rate"]
    result = shell(explain.text.replace("16d29b81c45d22bd", finding_id(error_rate)), tmp_path)
    assert result.returncode == 0, ran(result)
    assert "scorer-0 error_rate" in result.stdout
    assert "recomputed: same numbers" in result.stdout


def test_a_self_signed_certificate_from_openssl_serves_tls(
    request: pytest.FixtureRequest, tmp_path: Path, background: Background
) -> None:
    (make_certificate,) = commands_of(request)
    result = shell(make_certificate.text, tmp_path, timeout=60)
    assert result.returncode == 0, ran(result)
    assert (tmp_path / "cert.pem").read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE KEY-----" in (tmp_path / "key.pem").read_text()
    assert (tmp_path / "key.pem").stat().st_mode & 0o077 == 0, "the key is its owner's only"

    # the guide's configuration, with the files made here, on a free port
    (text,) = [b for b in blocks_of("docs/security.md", "yaml") if "tls_certfile" in b]
    config = yaml.safe_load(text)
    port = free_port()
    ingest = config["ingest"]
    assert ingest["host"] == "0.0.0.0"
    assert Path(ingest["tls_certfile"]).name == "cert.pem"
    assert Path(ingest["tls_keyfile"]).name == "key.pem"
    ingest.update(
        port=port,
        tls_certfile=str(tmp_path / "cert.pem"),
        tls_keyfile=str(tmp_path / "key.pem"),
    )
    config["storage"] = {"path": "data"}
    # what the dashboard asks, and how it checks the certificate: see its banner below
    banner_urls = health.health_urls(config_from_dict(config))
    ingest["host"] = "127.0.0.1"  # on loopback only, here
    (tmp_path / "watchkeeper.yaml").write_text(yaml.safe_dump(config))
    served = background.start("watchkeeper serve --config watchkeeper.yaml --role ingest")
    assert served.line("watchkeeper running").startswith(
        f"watchkeeper running ingest on https://127.0.0.1:{port}"
    )

    def get_healthz(name: str) -> bytes:
        """GET /healthz from a client that trusts cert.pem and asks for `name`."""
        context = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=name) as tls,
        ):
            tls.sendall(f"GET /healthz HTTP/1.1\r\nHost: {name}\r\n\r\n".encode())
            return tls.recv(65536)

    assert get_healthz("watchkeeper.internal").startswith(b"HTTP/1.1 200")
    with pytest.raises(ssl.SSLCertVerificationError, match="match"):
        get_healthz("other.internal")  # the certificate names watchkeeper.internal only
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)  # HTTPS only
    # the dashboard's health banner reaches it too (the certificate names 127.0.0.1)
    assert banner_urls == [f"https://127.0.0.1:{port}/healthz"]
    (answer,) = health.check_all(banner_urls, cafile=tmp_path / "cert.pem")
    assert answer.status == "ok", answer
    assert served.stop() == 0


def test_the_compose_env_file_is_made_private(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    commands = commands_of(request)
    (tmp_path / "compose").mkdir()
    shutil.copy(ROOT / "compose" / ".env.example", tmp_path / "compose" / ".env.example")
    result = shell("set -e\n" + "\n".join(c.text for c in commands), tmp_path)
    assert result.returncode == 0, ran(result)
    made = tmp_path / "compose" / ".env"
    assert made.stat().st_mode & 0o777 == 0o600
    assert made.read_text() == (ROOT / "compose" / ".env.example").read_text()
