"""The deployment files, checked without a Docker engine: docker-compose.yml's structure (parsed
with PyYAML, anchors and merge keys resolved), the Dockerfile it builds, and the shell scripts
CI runs (bash syntax check)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"

REQUIRED_SERVICES = {"redis", "postgres", "migrate", "worker-1", "worker-2", "flower", "api"}
ORCHESTRATOR_SERVICES = ("migrate", "worker-1", "worker-2", "flower")
EXPECTED_ENV = {
    "ORCHESTRATOR_BROKER_URL": "redis://redis:6379/0",
    "ORCHESTRATOR_DATABASE_URL": "postgresql+psycopg://postgres@postgres:5432/orchestrator",
    "ORCHESTRATOR_WORKFLOWS": "/app/examples",
}
DEPENDS_ON_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


@pytest.fixture(scope="module")
def compose() -> dict:
    with COMPOSE_FILE.open(encoding="utf-8") as handle:
        document = yaml.safe_load(handle)
    assert isinstance(document, dict), "docker-compose.yml must be a mapping"
    return document


@pytest.fixture(scope="module")
def services(compose) -> dict:
    services = compose.get("services")
    assert isinstance(services, dict) and services, "docker-compose.yml needs a services mapping"
    return services


def _depends_on(service: dict) -> dict[str, str]:
    """depends_on in either syntax, as {service: condition}."""
    value = service.get("depends_on") or {}
    if isinstance(value, list):
        return {name: "service_started" for name in value}
    assert isinstance(value, dict), f"depends_on must be a list or a mapping, not {value!r}"
    return {name: (spec or {}).get("condition", "service_started") for name, spec in value.items()}


def _environment(service: dict) -> dict[str, str | None]:
    """environment in either syntax (mapping or KEY=VALUE list), as a dict."""
    value = service.get("environment") or {}
    if isinstance(value, list):
        pairs = (item.split("=", 1) if "=" in item else (item, None) for item in value)
        return {key: val for key, val in pairs}
    return {key: None if val is None else str(val) for key, val in value.items()}


def _command(service: dict) -> list[str]:
    command = service.get("command", [])
    return command.split() if isinstance(command, str) else [str(part) for part in command]


def _build_context(build) -> tuple[Path, str]:
    if isinstance(build, str):
        return ROOT / build, "Dockerfile"
    assert isinstance(build, dict), f"build must be a path or a mapping, not {build!r}"
    return ROOT / build.get("context", "."), build.get("dockerfile", "Dockerfile")


def _published_port(entry) -> str | None:
    """The host side of a ports entry ("[ip:]host:container[/proto]", or the long syntax)."""
    if isinstance(entry, dict):
        published = entry.get("published")
        return None if published is None else f"{entry.get('host_ip', '')}:{published}/{entry.get('protocol', 'tcp')}"
    text = str(entry)
    text, _, protocol = text.partition("/")
    parts = text.rsplit(":", 2)
    if len(parts) == 1:
        return None  # container port only: Docker picks a free host port
    host_ip = parts[0] if len(parts) == 3 else ""
    return f"{host_ip}:{parts[-2]}/{protocol or 'tcp'}"


# --- docker-compose.yml --------------------------------------------------------------------------


def test_compose_file_parses_in_the_spec_format(compose):
    assert "version" not in compose, "the Compose spec format has no top-level version key"
    assert set(compose) <= {"services", "volumes", "networks", "configs", "secrets", "name", "include"} | {
        key for key in compose if key.startswith("x-")
    }


def test_required_services_exist(services):
    assert REQUIRED_SERVICES <= set(services)


def test_every_depends_on_names_an_existing_service_with_a_valid_condition(services):
    for name, service in services.items():
        for target, condition in _depends_on(service).items():
            assert target in services, f"{name} depends on unknown service {target!r}"
            assert target != name, f"{name} depends on itself"
            assert condition in DEPENDS_ON_CONDITIONS, f"{name} -> {target}: bad condition {condition!r}"
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target} to be healthy, which has no healthcheck"
            if condition == "service_completed_successfully":
                assert services[target].get("restart", "no") == "no", f"{target} must run once (restart: \"no\")"


def test_depends_on_has_no_cycles(services):
    visiting, done = set(), set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in visiting, f"depends_on cycle: {' -> '.join(path + (name,))}"
        if name in done:
            return
        visiting.add(name)
        for target in _depends_on(services[name]):
            visit(target, path + (name,))
        visiting.discard(name)
        done.add(name)

    for name in services:
        visit(name, ())


def test_workers_wait_for_healthy_servers_and_the_migration(services):
    for name in ("worker-1", "worker-2"):
        assert _depends_on(services[name]) == {
            "redis": "service_healthy",
            "postgres": "service_healthy",
            "migrate": "service_completed_successfully",
        }
    assert _depends_on(services["migrate"]) == {"postgres": "service_healthy"}
    assert "redis" in _depends_on(services["flower"])


def test_the_anchor_gives_orchestrator_services_a_build_and_the_settings(compose, services):
    shared = compose.get("x-orchestrator")
    assert isinstance(shared, dict) and "build" in shared, "x-orchestrator should hold the shared build"
    for name in ORCHESTRATOR_SERVICES:
        service = services[name]
        assert service.get("build") == shared["build"], f"{name} does not use the shared build"
        environment = _environment(service)
        for key, value in EXPECTED_ENV.items():
            assert environment.get(key) == value, f"{name}: {key}={environment.get(key)!r}"
        assert "./examples:/app/examples:ro" in service.get("volumes", []), f"{name} lacks ./examples read-only"


def test_service_commands(services):
    assert _command(services["migrate"]) == ["orchestrator", "db", "upgrade"]
    assert services["migrate"].get("restart") == "no"
    hostnames = set()
    for name in ("worker-1", "worker-2"):
        command = _command(services[name])
        assert command[:2] == ["orchestrator", "worker"]
        assert command[command.index("--concurrency") + 1] == "2"
        hostname = command[command.index("--hostname") + 1]
        assert hostname == f"{name}@%h"
        hostnames.add(hostname)
    assert len(hostnames) == 2, "Celery node names must differ"
    assert _command(services["flower"])[:2] == ["orchestrator", "flower"]


def test_servers_have_images_healthchecks_and_durable_volumes(compose, services):
    assert str(services["redis"]["image"]).startswith("redis:7")
    assert str(services["postgres"]["image"]).startswith("postgres:15")
    assert "redis-cli" in " ".join(map(str, services["redis"]["healthcheck"]["test"]))
    assert "pg_isready" in " ".join(map(str, services["postgres"]["healthcheck"]["test"]))
    postgres_env = _environment(services["postgres"])
    assert postgres_env.get("POSTGRES_HOST_AUTH_METHOD") == "trust"
    assert postgres_env.get("POSTGRES_DB") == "orchestrator"
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":", 1)[0] if not isinstance(volume, dict) else volume.get("source", "")
            if source and not source.startswith((".", "/", "~")):
                assert source in declared, f"{name} uses undeclared named volume {source!r}"
            elif source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"


def test_redis_never_evicts_broker_messages(services):
    command = _command(services["redis"])
    assert "--maxmemory-policy" in command
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert command[command.index("--appendonly") + 1] == "yes"


def test_published_ports_are_unique(services):
    seen: dict[str, str] = {}
    for name, service in services.items():
        for entry in service.get("ports", []):
            port = _published_port(entry)
            if port is None:
                continue
            assert port not in seen, f"{name} and {seen[port]} both publish {port}"
            seen[port] = name
    assert ":5555/tcp" in seen and seen[":5555/tcp"] == "flower"


def test_every_build_context_has_a_dockerfile(services):
    builds = [(name, service["build"]) for name, service in services.items() if "build" in service]
    assert builds
    for name, build in builds:
        context, dockerfile = _build_context(build)
        assert context.is_dir(), f"{name}: build context {context} is missing"
        assert (context / dockerfile).is_file(), f"{name}: no {dockerfile} in {context}"


def test_dockerfile_builds_a_non_root_worker_image():
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    instructions = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert instructions[0].startswith("FROM python:3.11-slim")
    assert "WORKDIR /app" in instructions
    assert re.search(r"pip install --no-cache-dir \.(\s|$)", text)
    users = [line.split(None, 1)[1] for line in instructions if line.startswith("USER ")]
    assert users and users[-1] not in {"root", "0"}, "the image must not run as root"
    cmd = [line for line in instructions if line.startswith("CMD ")]
    assert cmd and cmd[-1] == 'CMD ["orchestrator", "worker"]'
    # Everything the package build needs is copied into the image.
    for needed in ("pyproject.toml", "README.md", "orchestrator", "workers", "migrations"):
        assert re.search(rf"^COPY .*\b{re.escape(needed)}\b", text, re.M), f"Dockerfile does not copy {needed}"


# --- shell scripts -------------------------------------------------------------------------------

SCRIPTS = sorted((ROOT / "scripts").glob("*.sh")) + [ROOT / ".ci" / "run"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_scripts_pass_bash_syntax_check(script):
    assert script.is_file()
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_one_command_scripts_exist():
    for name in ("services.sh", "test.sh", "demo.sh"):
        assert (ROOT / "scripts" / name).is_file(), f"scripts/{name} is missing"


def test_ci_runs_the_readme_test_command():
    ci = ROOT / ".ci" / "run"
    assert os.access(ci, os.X_OK), ".ci/run should be executable"
    lines = [line.strip() for line in ci.read_text(encoding="utf-8").splitlines()]
    commands = [line for line in lines if line and not line.startswith("#")]
    assert "set -euo pipefail" in commands
    assert any(re.match(r"(exec\s+)?bash scripts/test\.sh(\s|$)", line) for line in commands)


def test_test_script_sets_up_services_and_runs_pytest():
    text = (ROOT / "scripts" / "test.sh").read_text(encoding="utf-8")
    assert "set -euo pipefail" in text
    assert "bash scripts/services.sh" in text
    assert re.search(r'exec \.venv/bin/python -m pytest ("\$\{parallel\[@\]\}" )?"\$@"', text)
