"""The compose stack cannot run here (no Docker engine), so validate everything it refers to:
its structure, its variables, its commands, its configuration, its image and its health checks.

When the `docker compose` plugin is installed, `docker compose config` also checks the file;
that test is defined only then (not skipped otherwise: in CI every skip is a failure).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from watchkeeper.cli import build_parser
from watchkeeper.collectors.ingest import IngestServer, create_app
from watchkeeper.config import IngestConfig, load_config
from watchkeeper.tsdb import SQLiteStore

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "compose"
COMPOSE_FILE = COMPOSE / "docker-compose.yml"
ENV_EXAMPLE = COMPOSE / ".env.example"
WATCHKEEPER_SERVICES = ("serve", "dashboard")

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}; $$ is a literal $.
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?+][^}]*)?\}")
SERVICE_KEYS = {
    "image", "build", "command", "environment", "volumes", "ports", "depends_on",
    "healthcheck", "restart",
}  # fmt: skip


def spec() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def env_example() -> dict[str, tuple[str, list[str]]]:
    """`.env.example` as name -> (value, comment lines just above it)."""
    entries: dict[str, tuple[str, list[str]]] = {}
    comments: list[str] = []
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.startswith("#"):
            comments.append(line.lstrip("# "))
        elif "=" in line:
            name, value = line.split("=", 1)
            assert name not in entries, f"{name} is set twice in .env.example"
            entries[name] = (value, comments)
            comments = []
        else:
            comments = []
    return entries


def service_env(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment", {})
    assert isinstance(environment, dict), "environment as a mapping, please"
    return {str(k): str(v) for k, v in environment.items()}


def substitute(text: str, values: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        return values[match.group(1)]

    return VARIABLE.sub(one, text)


def container_port(mapping: str) -> int:
    """The container side of a `[host:]published:container` port mapping."""
    return int(mapping.rsplit(":", 1)[1])


def test_the_file_has_the_shape_compose_expects() -> None:
    data = spec()
    assert set(data) <= {"name", "services", "volumes", "networks"}
    services = data["services"]
    assert set(services) == {"influxdb", *WATCHKEEPER_SERVICES}
    named_volumes = set(data["volumes"])
    for name, service in services.items():
        assert set(service) <= SERVICE_KEYS, (name, set(service) - SERVICE_KEYS)
        assert service["restart"] in {"always", "unless-stopped", "on-failure"}, name
        health = service["healthcheck"]
        assert health["test"][0] == "CMD", name
        for key in ("interval", "timeout", "start_period"):
            assert re.fullmatch(r"\d+(ms|s|m|h)", health[key]), (name, key)
        assert isinstance(health["retries"], int) and health["retries"] > 0
        for dependency in service.get("depends_on", {}):
            assert dependency in services, (name, dependency)
            assert service["depends_on"][dependency]["condition"] == "service_healthy"
        for volume in service["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE / source).is_file(), (name, source)
            else:
                assert source in named_volumes, (name, source)
    used = {v.split(":")[0] for s in services.values() for v in s["volumes"]}
    assert named_volumes <= used, "every named volume is mounted somewhere"


def test_every_variable_is_documented_in_env_example_and_every_entry_is_used() -> None:
    text = COMPOSE_FILE.read_text()
    referenced = set(VARIABLE.findall(text))
    documented = env_example()
    assert referenced, "the stack takes its settings from .env"
    assert referenced <= set(documented), referenced - set(documented)
    for name in documented:
        value, comments = documented[name]
        assert comments, f"{name} in .env.example has no comment saying what it is"
        assert value, f"{name} in .env.example has no example value"
    assert set(documented) <= referenced, set(documented) - referenced
    # the InfluxDB image is initialised from the same .env: org, bucket, token and retention
    influx_env = service_env(spec()["services"]["influxdb"])
    initialised = {k: VARIABLE.findall(v) for k, v in influx_env.items()}
    for key in ("ORG", "BUCKET", "ADMIN_TOKEN", "RETENTION", "USERNAME", "PASSWORD"):
        assert initialised[f"DOCKER_INFLUXDB_INIT_{key}"], key
    assert influx_env["DOCKER_INFLUXDB_INIT_MODE"] == "setup"


def test_no_secret_is_written_in_the_file_or_baked_into_the_image() -> None:
    for name, service in spec()["services"].items():
        for key, value in service_env(service).items():
            if re.search("TOKEN|PASSWORD|SECRET", key):
                assert value == "" or VARIABLE.fullmatch(value), (name, key, value)
    dockerfile = (COMPOSE / "Dockerfile").read_text()
    for line in dockerfile.splitlines():
        if line.startswith(("ENV", "ARG")):
            assert not re.search("TOKEN|PASSWORD|SECRET", line, re.IGNORECASE), line
    ignored = (COMPOSE / "Dockerfile.dockerignore").read_text().splitlines()
    assert "**/.env" in ignored


def test_every_service_runs_a_real_command_on_a_config_that_loads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services = spec()["services"]
    documented = env_example()
    parser = build_parser()
    for name in WATCHKEEPER_SERVICES:
        service = services[name]
        args = parser.parse_args(service["command"])
        assert args.command == name
        mounted = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
        config_path = COMPOSE / mounted[str(args.config)]
        # the container's environment, with .env.example's values substituted
        environment = {
            k: substitute(v, {n: value for n, (value, _) in documented.items()})
            for k, v in service_env(service).items()
        }
        with monkeypatch.context() as patch:
            for key, value in environment.items():
                patch.setenv(key, value)
            config = load_config(config_path)
        assert config.storage.backend == "influxdb"
        assert config.storage.path == Path("/data")
        assert "/data" in mounted, "storage.path is on the shared named volume"
        influx = config.storage.influxdb
        assert influx is not None
        if name == "serve":
            assert influx.token.get_secret_value() == documented["INFLUXDB_TOKEN"][0]
        # org and bucket are created from .env and must be what the config writes to
        assert influx.org == documented["INFLUXDB_ORG"][0]
        assert influx.bucket == documented["INFLUXDB_BUCKET"][0]
        url = re.fullmatch(r"http://([^:/]+):(\d+)", influx.url)
        assert url is not None, influx.url
        assert url.group(1) in services and int(url.group(2)) == 8086
        assert container_port(services["influxdb"]["ports"][0]) == 8086
        if name == "serve":
            assert config.ingest.host == "0.0.0.0"
            assert container_port(service["ports"][0]) == config.ingest.port
        else:
            assert args.host == "0.0.0.0"
            assert environment["WATCHKEEPER_DASHBOARD_PASSWORD"], "0.0.0.0 needs a password"
            assert container_port(service["ports"][0]) == int(args.port)
        health = " ".join(service["healthcheck"]["test"])
        expected = "/healthz" if name == "serve" else "/_stcore/health"
        assert f"127.0.0.1:{container_port(service['ports'][0])}{expected}" in health


def test_both_watchkeeper_services_use_one_image_and_influxdb_is_2_7() -> None:
    services = spec()["services"]
    assert services["influxdb"]["image"] == "influxdb:2.7"
    assert services["influxdb"]["healthcheck"]["test"] == ["CMD", "influx", "ping"]
    builds = {str(services[name]["build"]) for name in WATCHKEEPER_SERVICES}
    images = {services[name]["image"] for name in WATCHKEEPER_SERVICES}
    assert len(builds) == 1 and len(images) == 1


def test_the_serve_health_check_passes_against_a_real_ingest_server(tmp_path: Path) -> None:
    check = spec()["services"]["serve"]["healthcheck"]["test"]
    assert check[1:3] == ["python", "-c"]
    store = SQLiteStore(tmp_path / "w.db")
    server = IngestServer(create_app(store, IngestConfig()), "127.0.0.1", 0).start()
    try:
        code = check[3].replace("http://127.0.0.1:8765", server.url)
        assert server.url in code
        subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
    finally:
        server.stop()
        store.close()


def test_dockerfile_copies_what_exists_and_runs_as_an_unprivileged_user() -> None:
    build = spec()["services"]["serve"]["build"]
    context = (COMPOSE / build["context"]).resolve()
    dockerfile = (context / build["dockerfile"]).read_text()
    for line in dockerfile.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            for source in shlex.split(line)[1:-1]:
                assert (context / source).exists(), source
    users = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert users and users[-1] not in {"root", "0"}
    assert all(line.split()[1].endswith("-slim-bookworm") for line in dockerfile.splitlines()
               if line.startswith("FROM "))  # fmt: skip
    assert "--requirement /tmp/requirements.lock" in dockerfile


def test_the_lock_pins_every_dependency_within_what_pyproject_allows() -> None:
    import tomllib

    pins: dict[str, str] = {}
    for line in (COMPOSE / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    assert len(pins) > 20, "the lock holds the whole dependency closure, not just the direct ones"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for text in project["dependencies"]:
        requirement = Requirement(text)
        pinned = pins.get(canonicalize_name(requirement.name))
        assert pinned is not None, f"{requirement.name} is not in compose/requirements.lock"
        assert requirement.specifier.contains(pinned), (text, pinned)


def _docker_compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        done = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


if _docker_compose_available():

    def test_docker_compose_accepts_the_file() -> None:
        subprocess.run(
            ["docker", "compose", "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE_FILE),
             "config", "-q"],
            check=True, timeout=60,
        )  # fmt: skip
