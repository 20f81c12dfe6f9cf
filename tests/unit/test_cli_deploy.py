"""deploy/: the compose file is valid against the Compose Specification's JSON Schema and
says what docs/deploy.md promises; the RabbitMQ files parse and fit together."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.settings import REPO_ROOT, Settings
from tests.support.services import IN_CI

DEPLOY = REPO_ROOT / "deploy"
SERVICES = ("ingest", "renderer", "archiver", "notifier")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return document


def compose_schema() -> dict[str, Any]:
    try:
        import check_jsonschema
    except ImportError:
        message = "check-jsonschema (which ships the compose-spec schema) is not installed"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    path = Path(check_jsonschema.__file__).parent / "builtin_schemas/vendor/compose-spec.json"
    schema: dict[str, Any] = json.loads(path.read_text())
    return schema


def test_compose_file_is_valid_against_the_compose_spec(compose: dict[str, Any]) -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(compose_schema())
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_a_broken_compose_file_is_caught(compose: dict[str, Any]) -> None:
    """The schema check is not vacuous: a typo'd key fails it."""
    import jsonschema

    broken = json.loads(json.dumps(compose))
    broken["services"]["ingest"]["comand"] = ["run", "ingest"]
    assert list(jsonschema.Draft202012Validator(compose_schema()).iter_errors(broken))


def test_one_image_runs_every_service_after_the_migrations(compose: dict[str, Any]) -> None:
    services = compose["services"]
    images = {services[s]["image"] for s in (*SERVICES, "migrate")}
    assert len(images) == 1
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in SERVICES:
        service = services[name]
        assert service["command"] == ["run", name]
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert service["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
        assert "readyz" in " ".join(service["healthcheck"]["test"])
        port = getattr(Settings(), f"{name}_port")
        assert service["environment"]["PORT"] == str(port)
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["anime"]' in dockerfile
    for copied in re.findall(r"^COPY (\S+) ", dockerfile, re.MULTILINE):
        assert (REPO_ROOT / copied).exists(), copied


def test_the_simulator_is_optional_and_real_comfyui_is_a_setting(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["comfyui-sim"]["profiles"] == ["sim"]
    urls = services["renderer"]["environment"]["ANIME_COMFYUI_URLS"]
    assert urls.startswith("${ANIME_COMFYUI_URLS:-")
    assert "ANIME_COMFYUI_URLS=" in (DEPLOY / "compose.env.example").read_text()


def test_environment_names_are_settings(compose: dict[str, Any]) -> None:
    """A typo in an ANIME_ variable would be silently ignored by the services."""
    from shared.broker_access import INTERNAL_ROLES, password_env

    fields = {f"ANIME_{name.upper()}" for name in Settings.model_fields}
    extra = {"ANIME_MANAGEMENT_URL", "ANIME_MANAGEMENT_PORT"}  # read by shared/queues.py
    extra |= {password_env(role) for role in INTERNAL_ROLES}  # read by `anime broker provision`
    for name, service in compose["services"].items():
        for variable in service.get("environment") or {}:
            if variable.startswith("ANIME_"):
                assert variable in fields | extra, (name, variable)


def test_rabbitmq_is_configured_from_files(compose: dict[str, Any]) -> None:
    rabbit = compose["services"]["rabbitmq"]
    assert "management" in rabbit["image"]
    mounts = {
        v.split(":")[1]: DEPLOY / v.split(":")[0] for v in rabbit["volumes"] if v.startswith("./")
    }
    for target in (
        "/etc/rabbitmq/rabbitmq.conf",
        "/etc/rabbitmq/definitions.json",
        "/etc/rabbitmq/enabled_plugins",
    ):
        assert mounts[target].is_file(), target
    conf = (DEPLOY / "rabbitmq/rabbitmq.conf").read_text()
    # Not loaded at boot: that would stop RabbitMQ creating the administrator.
    assert not re.search(r"^\s*load_definitions", conf, re.MULTILINE)
    assert "rabbitmq_management" in (DEPLOY / "rabbitmq/enabled_plugins").read_text()
    definitions = json.loads((DEPLOY / "rabbitmq/definitions.json").read_text())
    vhost = definitions["vhosts"][0]["name"]
    assert rabbit["environment"]["RABBITMQ_DEFAULT_VHOST"] == vhost
    users = {u["name"] for u in definitions["users"]}
    for name in SERVICES:
        url = compose["services"][name]["environment"]["ANIME_AMQP_URL"]
        assert url.startswith(f"amqp://{name}:") and url.endswith(f"@rabbitmq:5672/{vhost}")
        assert name in users
    assert {p["vhost"] for p in definitions["policies"]} == {vhost}
    assert definitions["exchanges"][0]["name"] == Settings().exchange


def test_docker_compose_config_accepts_it_when_docker_compose_is_there() -> None:
    docker = shutil.which("docker")
    if (
        docker is None
        or subprocess.run(
            [docker, "compose", "version"], capture_output=True, check=False
        ).returncode
        != 0
    ):
        pytest.skip("no `docker compose` here (the schema check above still ran)")
    result = subprocess.run(
        [
            docker,
            "compose",
            "-f",
            str(DEPLOY / "docker-compose.yml"),
            "--profile",
            "sim",
            "config",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
