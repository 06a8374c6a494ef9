"""The compose stack cannot run here (no Docker engine), so validate what it refers to."""

from __future__ import annotations

from pathlib import Path

import yaml

from watchkeeper.cli import build_parser
from watchkeeper.config import load_config

COMPOSE = Path(__file__).resolve().parent.parent / "compose"


def test_every_service_runs_a_real_command_on_a_valid_config() -> None:
    spec = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())
    parser = build_parser()
    assert set(spec["services"]) == {"serve", "dashboard"}
    for name, service in spec["services"].items():
        args = parser.parse_args(service["command"])
        assert args.command == name
        for volume in service["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (COMPOSE / source).exists(), (name, source)
        config_target = service["command"][service["command"].index("--config") + 1]
        mounted = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
        load_config(COMPOSE / mounted[config_target])
    build = spec["services"]["serve"]["build"]
    dockerfile = (COMPOSE / build["context"] / build["dockerfile"]).resolve()
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (COMPOSE / build["context"] / source).exists(), source
