"""deploy/rabbitmq/definitions.json is what shared/broker_access.py generates, and the
deploy files ship no default password (compose refuses to start without them)."""

from __future__ import annotations

import json
import re

import yaml

from cli.broker_cmd import DEFINITIONS_PATH, definitions_text
from shared.broker_access import (
    INTERNAL_ROLES,
    SERVICE_ROLES,
    BrokerAccess,
    deploy_definitions,
    hash_password,
    password_env,
    with_credentials,
)
from shared.settings import REPO_ROOT, Settings

DEPLOY = REPO_ROOT / "deploy"


def test_committed_definitions_match_the_code() -> None:
    assert DEFINITIONS_PATH.read_text() == definitions_text(), "run `anime broker definitions`"


def test_definitions_carry_no_secret() -> None:
    document = deploy_definitions()
    assert {u["password_hash"] for u in document["users"]} == {""}
    assert not any("administrator" in u["tags"] for u in document["users"])
    assert {u["name"] for u in document["users"]} == set(INTERNAL_ROLES)


def test_compose_refuses_to_start_without_passwords() -> None:
    text = (DEPLOY / "docker-compose.yml").read_text()
    assert not re.search(r"PASSWORD[A-Z_]*:-", text), "a password with a default"
    assert not re.search(r"amqp://anime:", text), "the old shared administrator"
    for role in INTERNAL_ROLES:
        assert f"${{{password_env(role)}:?" in text, role
    for name in ("ANIME_BROKER_ADMIN_PASSWORD", "POSTGRES_PASSWORD"):
        assert f"${{{name}:?" in text, name
    example = (DEPLOY / "compose.env.example").read_text()
    for line in example.splitlines():
        if "PASSWORD" in line and not line.startswith("#"):
            assert line.endswith("="), f"example ships a password: {line}"
    compose = yaml.safe_load(text)
    assert compose["services"]["broker-setup"]["command"] == ["broker", "provision"]
    for service in SERVICE_ROLES:
        depends = compose["services"][service]["depends_on"]
        assert depends["broker-setup"]["condition"] == "service_completed_successfully"


def test_every_right_is_an_anchored_regex_of_this_pipelines_names() -> None:
    access = BrokerAccess(Settings(exchange="t.events", queue_prefix="t."))
    principals = [*access.internal(), access.submitter("acme", ["neon-skies"])]
    for p in principals:
        assert p.user.startswith("t.")
        for pattern in (
            p.configure,
            p.write,
            p.read,
            *(x for t in p.topics for x in (t.write, t.read)),
        ):
            assert pattern.startswith("^") and pattern.endswith("$"), (p.user, pattern)
            re.compile(pattern)
    renderer = access.service("renderer")
    assert re.match(renderer.configure, "t.renderer.band.high")
    assert not re.match(renderer.configure, "t.ingest.job.submitted")
    assert not re.match(renderer.configure, "t.events")
    (topic,) = renderer.topics
    assert re.match(topic.write, "job.rendered.neon-skies")
    assert not re.match(topic.write, "job.accepted.neon-skies")
    submitter = access.submitter("acme", ["neon-skies"])
    intake, events = submitter.topics
    assert re.match(intake.write, "job.submitted.neon-skies")
    assert not re.match(intake.write, "job.submitted.other")
    assert not re.match(submitter.write, "amq.default")
    assert re.match(events.read, "ledger.*.*.neon-skies")
    assert not re.match(events.read, "ledger.#")


def test_password_hash_and_urls() -> None:
    assert hash_password("x", salt=b"\0\0\0\0") == hash_password("x", salt=b"\0\0\0\0")
    assert json.dumps(hash_password("x"))  # base64 text
    url = with_credentials("amqp://guest:guest@mq.example:5673/anime", "t.ingest", "p@ss/w")
    assert url == "amqp://t.ingest:p%40ss%2Fw@mq.example:5673/anime"
