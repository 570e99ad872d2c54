"""The Dockerfile and docker-compose.yml, checked without a Docker engine: they parse, they name only
settings and commands the code has, every service the code talks to is there, and the health checks
and the entrypoint really work."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
import tomllib
from importlib import import_module
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import uvicorn
import yaml

from finverse_reco.api.app import create_app
from finverse_reco.cli import build_parser
from finverse_reco.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[3]
FINVERSE_SERVICES = {"api": ["serve"], "consumer": ["consume"], "trainer": ["train", "--schedule"]}
INFRASTRUCTURE = {"mongo": "mongo:7", "rabbitmq": "rabbitmq:3.13-management", "redis": "redis:7"}
SECRETS = {
    "FINVERSE_API_KEY": "a" * 48,
    "FINVERSE_WRITER_API_KEYS": f'["{"c" * 48}"]',
    "FINVERSE_ERASURE_KEY": "d" * 48,
    "RABBITMQ_PASSWORD": "b" * 32,
}
_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:[-?])(?P<arg>[^}]*))?\}")


# --- docker-compose.yml ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?error}` (the forms the file uses)."""

    def substitute(match: re.Match) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if variables.get(name):
            return variables[name]
        if op == ":?":
            raise LookupError(f"{name} is required: {arg}")
        return arg if op == ":-" else ""

    return _VARIABLE.sub(substitute, value)


def environment(service: dict, variables: dict[str, str]) -> dict[str, str]:
    return {
        k: interpolate(str(v), variables) for k, v in (service.get("environment") or {}).items()
    }


def setting_name(variable: str) -> str:
    return variable.removeprefix("FINVERSE_").lower()


def test_compose_has_the_services_the_code_needs(compose):
    services = compose["services"]
    for name, image in INFRASTRUCTURE.items():
        assert services[name]["image"] == image
    for name, command in FINVERSE_SERVICES.items():
        assert services[name]["command"] == command
        assert services[name]["build"] == "."
    assert "banking-stub" in services and services["banking-stub"]["profiles"] == ["demo"]


def test_every_finverse_command_in_compose_is_a_real_cli_command(compose):
    parser = build_parser()
    for name, service in compose["services"].items():
        if "build" in service:
            args = parser.parse_args(service["command"])
            assert args.command == service["command"][0], name


def test_every_finverse_variable_in_compose_is_a_setting(compose):
    named = set()
    for service in compose["services"].values():
        named |= {v for v in service.get("environment") or {} if v.startswith("FINVERSE_")}
    unknown = {v for v in named if setting_name(v) not in Settings.model_fields}
    assert not unknown, f"compose sets variables the code never reads: {sorted(unknown)}"
    assert len(named) >= 10


@pytest.mark.parametrize("name", [*FINVERSE_SERVICES, "migrate", "seed"])
def test_each_service_environment_is_a_valid_production_configuration(compose, monkeypatch, name):
    env = environment(compose["services"][name], SECRETS)
    for variable in [v for v in os.environ if v.startswith("FINVERSE_")]:
        monkeypatch.delenv(variable)
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    settings = load_settings(_env_file=None)
    assert settings.environment == "production"
    assert settings.api_key == SECRETS["FINVERSE_API_KEY"]
    services = compose["services"]
    assert urlsplit(settings.store_url).hostname in services
    assert urlsplit(settings.redis_url).hostname in services
    assert urlsplit(settings.banking_url).hostname in services
    if settings.rabbitmq_url:
        assert urlsplit(settings.rabbitmq_url).hostname in services
        assert urlsplit(settings.rabbitmq_url).password == SECRETS["RABBITMQ_PASSWORD"]


def test_secrets_have_no_defaults(compose):
    with pytest.raises(LookupError, match="FINVERSE_API_KEY"):
        environment(compose["services"]["api"], {})
    with pytest.raises(LookupError, match="FINVERSE_WRITER_API_KEYS"):
        environment(compose["services"]["api"], {"FINVERSE_API_KEY": "x"})
    with pytest.raises(LookupError, match="RABBITMQ_PASSWORD"):
        environment(compose["services"]["rabbitmq"], {"FINVERSE_API_KEY": "x"})


def test_only_the_consumer_consumes_and_only_the_trainer_schedules(compose):
    services = compose["services"]
    api = environment(services["api"], SECRETS)
    assert "FINVERSE_RABBITMQ_URL" not in api  # `serve` would also consume in-process
    assert api["FINVERSE_REFRESH_SCHEDULE"] == "off"
    assert "FINVERSE_RABBITMQ_URL" in environment(services["consumer"], SECRETS)
    assert environment(services["trainer"], SECRETS)["FINVERSE_REFRESH_SCHEDULE"] != "off"


def test_models_and_mongodb_data_live_in_named_volumes(compose):
    volumes = compose["volumes"]
    assert {"models", "mongo-data"} <= set(volumes)
    assert "mongo-data:/data/db" in compose["services"]["mongo"]["volumes"]
    for name in FINVERSE_SERVICES:
        service = compose["services"][name]
        model_dir = environment(service, SECRETS)["FINVERSE_MODEL_DIR"]
        assert f"models:{model_dir}" in service["volumes"], name
    for service in compose["services"].values():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            assert source in volumes, f"{mount}: not a declared named volume"


def healthcheck_port(test: list[str]) -> int:
    code = test[-1]
    compile(code, "<healthcheck>", "exec")  # it is real Python
    return int(re.search(r"127\.0\.0\.1:(\d+)/", code)[1])


def test_every_long_running_service_has_a_health_check_on_the_right_port(compose):
    services = compose["services"]
    for name, service in services.items():
        check = service.get("healthcheck")
        assert check, f"{name} has no health check"
        if check.get("disable"):
            assert service.get("restart") == "no", f"{name}: only one-shot jobs may skip it"
            continue
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
    assert healthcheck_port(services["api"]["healthcheck"]["test"]) == int(
        environment(services["api"], SECRETS)["FINVERSE_PORT"]
    )
    for name in ("consumer", "trainer"):
        metrics_port = int(environment(services[name], SECRETS)["FINVERSE_METRICS_PORT"])
        assert healthcheck_port(services[name]["healthcheck"]["test"]) == metrics_port
    stub_port = services["banking-stub"]["command"][-1]
    assert healthcheck_port(services["banking-stub"]["healthcheck"]["test"]) == int(stub_port)


def test_dependencies_wait_for_healthy_services_or_finished_jobs(compose):
    services = compose["services"]
    for name, service in services.items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on a missing {dependency}"
            if services[dependency].get("restart") == "no":  # a one-shot job: wait for success
                assert condition == {"condition": "service_completed_successfully"}, name
            else:
                assert condition == {"condition": "service_healthy"}, name
                assert not services[dependency]["healthcheck"].get("disable")
    assert {"migrate", "rabbitmq"} <= set(services["consumer"]["depends_on"])
    assert "mongo" in services["migrate"]["depends_on"]


def test_every_store_user_waits_for_migrate(compose):
    services = compose["services"]
    for name in [*FINVERSE_SERVICES, "seed"]:
        assert "migrate" in services[name]["depends_on"], name
    assert services["migrate"]["command"] == ["migrate"]


def test_mongodb_is_a_replica_set_with_a_bounded_cache_and_the_url_names_it(compose):
    mongo = compose["services"]["mongo"]
    command = mongo["command"]
    replica_set = command[command.index("--replSet") + 1]
    assert "--wiredTigerCacheSizeGB" in command
    assert f"rs.initiate({{_id: '{replica_set}'" in mongo["healthcheck"]["test"][-1]
    for name in [*FINVERSE_SERVICES, "migrate"]:
        url = environment(compose["services"][name], SECRETS)["FINVERSE_STORE_URL"]
        assert f"replicaSet={replica_set}" in urlsplit(url).query, name


def test_rabbitmq_keeps_its_node_name_across_recreation(compose):
    assert compose["services"]["rabbitmq"]["hostname"] == "rabbitmq"


def test_no_egg_info_anywhere_goes_into_the_build_context():
    assert "**/*.egg-info" in (ROOT / ".dockerignore").read_text().splitlines()


# --- Dockerfile ------------------------------------------------------------------------------------


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """[(INSTRUCTION, arguments)] per stage, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    logical = re.sub(r"\\\n\s*", " ", text)
    stages: list[list[tuple[str, str]]] = []
    for line in logical.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, arguments = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction.upper(), arguments.strip()))
    return stages


def instruction(stage: list[tuple[str, str]], name: str) -> list[str]:
    return [arguments for found, arguments in stage if found == name]


def test_the_image_is_multi_stage_slim_and_non_root():
    build, runtime = dockerfile_stages()
    assert "slim" in instruction(build, "FROM")[0] and "slim" in instruction(runtime, "FROM")[0]
    assert "build-essential" in " ".join(instruction(build, "RUN"))
    assert "build-essential" not in " ".join(instruction(runtime, "RUN"))
    assert any("--from=build" in copy for copy in instruction(runtime, "COPY"))
    (user,) = instruction(runtime, "USER")
    assert user.split(":")[0] not in ("root", "0")


def test_the_image_copies_only_what_exists_and_ignores_local_state():
    build, _ = dockerfile_stages()
    for copy in instruction(build, "COPY"):
        *sources, _destination = shlex.split(copy)
        for source in sources:
            assert (ROOT / source).exists(), source
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".env", "data"} <= set(ignored)


def test_the_image_environment_names_only_settings():
    _, runtime = dockerfile_stages()
    variables = re.findall(r"(FINVERSE_[A-Z_]+)=", " ".join(instruction(runtime, "ENV")))
    assert variables and all(setting_name(v) in Settings.model_fields for v in variables)


def test_the_entrypoint_is_the_installed_console_script():
    _, runtime = dockerfile_stages()
    (entrypoint,) = instruction(runtime, "ENTRYPOINT")
    (cmd,) = instruction(runtime, "CMD")
    assert json.loads(entrypoint) == ["finverse-reco"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, function = scripts["finverse-reco"].split(":")
    assert callable(getattr(import_module(module), function))
    assert build_parser().parse_args(json.loads(cmd)).command == "serve"
    installed = Path(sys.executable).parent / "finverse-reco"
    result = subprocess.run(
        [str(installed), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    for command in ("serve", "train", "seed-demo", "consume"):
        assert command in result.stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_healthcheck(command: list[str], port: int) -> int:
    assert command[0] == "python"
    return subprocess.run(
        [sys.executable, *command[1:]],
        env={"FINVERSE_PORT": str(port), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        timeout=30,
        check=False,
    ).returncode


def test_the_image_health_check_passes_against_a_live_server_and_fails_without_one(
    bare_settings,
):
    _, runtime = dockerfile_stages()
    (healthcheck,) = instruction(runtime, "HEALTHCHECK")
    command = json.loads(healthcheck.split(" CMD ", 1)[1])
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(bare_settings), host="127.0.0.1", port=port, log_config=None)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        assert run_healthcheck(command, port) == 0
    finally:
        server.should_exit = True
        thread.join(timeout=20)
    assert run_healthcheck(command, port) != 0


def test_the_trainer_serves_the_metrics_its_health_check_reads(compose, tmp_path):
    """`train --schedule` with FINVERSE_METRICS_PORT answers the compose health check (on a free
    port here instead of 9100)."""
    trainer = compose["services"]["trainer"]
    check = trainer["healthcheck"]["test"]
    port = free_port()
    code = check[-1].replace(f":{healthcheck_port(check)}/", f":{port}/")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FINVERSE_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "finverse_reco", *trainer["command"]],
        cwd=tmp_path,
        env={
            **clean,
            "FINVERSE_METRICS_PORT": str(port),
            "FINVERSE_REFRESH_SCHEDULE": "1h",
            "FINVERSE_STORE_URL": f"sqlite:///{tmp_path}/interactions.db",
            "FINVERSE_MODEL_DIR": str(tmp_path / "models"),
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while run_healthcheck([*check[1:3], code], port) != 0:
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "the trainer's metrics server never answered"
            time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(timeout=20)
