"""``anime broker``: create the pipeline's broker users, their rights and the topology.

Run with an administrator account (``ANIME_AMQP_URL``; the management API at
``ANIME_MANAGEMENT_URL`` or the AMQP host on port 15672). The rights themselves live in
``shared/broker_access.py``; docs/deploy.md explains them.

Examples::

    anime broker provision                       # passwords from ANIME_BROKER_PASSWORD_<ROLE>
    anime broker provision --generate --json     # fresh passwords, printed once (development)
    anime broker submitter storyboard --project neon-skies --password-env STORYBOARD_PASSWORD
    anime broker definitions                     # rewrite deploy/rabbitmq/definitions.json
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from cli.common import EXIT_UNREACHABLE, EXIT_USAGE, console, fail, print_json, run_async
from shared.broker_access import (
    INTERNAL_ROLES,
    BrokerAccess,
    ProvisioningError,
    deploy_definitions,
    new_password,
    password_env,
    provision,
)
from shared.settings import REPO_ROOT, get_settings

broker_app = typer.Typer(
    help="Broker users and rights: provision them, add an outside submitter, write the "
    "definitions file.\n\nExamples: anime broker provision; anime broker submitter "
    "storyboard --project neon-skies; anime broker definitions",
    no_args_is_help=True,
)

DEFINITIONS_PATH = REPO_ROOT / "deploy" / "rabbitmq" / "definitions.json"


def definitions_text() -> str:
    """The committed file's exact text (a test compares it with the code)."""
    return json.dumps(deploy_definitions(), indent=2, sort_keys=True) + "\n"


@broker_app.command("provision")
def provision_cmd(
    generate: Annotated[
        bool, typer.Option(help="Make up passwords (printed once) instead of reading them.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the users as JSON.")] = False,
) -> None:
    """Create or update the service and ops users, their rights, and the whole topology.

    Idempotent: run it at every deployment (compose's broker-setup does). Passwords come
    from ANIME_BROKER_PASSWORD_INGEST, _RENDERER, _ARCHIVER, _NOTIFIER and _OPS; a missing
    one is an error unless --generate.
    """
    settings = get_settings()
    passwords: dict[str, str] = {}
    missing = []
    for role in INTERNAL_ROLES:
        value = os.environ.get(password_env(role), "")
        if value:
            passwords[role] = value
        elif generate:
            passwords[role] = new_password()
        else:
            missing.append(password_env(role))
    if missing:
        fail(f"set {', '.join(missing)} (or pass --generate)", EXIT_USAGE)
    try:
        urls = run_async(provision(settings, passwords))
    except ProvisioningError as exc:
        fail(f"provisioning failed: {exc}", EXIT_UNREACHABLE)
    access = BrokerAccess(settings)
    users = [{"role": role, "user": access.user_name(role)} for role in INTERNAL_ROLES]
    if generate:
        for item in users:
            item["amqp_url"] = urls[item["user"]]
    if as_json:
        print_json({"users": users})
        return
    for item in users:
        console.print(f"{item['role']:>9}: {item.get('amqp_url', item['user'])}")


@broker_app.command("submitter")
def submitter_cmd(
    name: Annotated[str, typer.Argument(help="The outside system's name (user submitter.NAME).")],
    project: Annotated[list[str], typer.Option("--project", "-p", help="Project slug (repeat).")],
    password_env_var: Annotated[
        str | None,
        typer.Option("--password-env", help="Read the password from this variable."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Give an outside system its door: publish job.submitted.<project>, watch its ledger.

    Re-running it with other projects replaces the old ones. Without --password-env a
    password is made up and printed once.
    """
    settings = get_settings()
    access = BrokerAccess(settings)
    try:
        access.submitter(name, project)
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)
    password = os.environ.get(password_env_var, "") if password_env_var else new_password()
    if not password:
        fail(f"{password_env_var} is empty", EXIT_USAGE)
    try:
        urls = run_async(provision(settings, {}, submitters=[(name, project, password)]))
    except ProvisioningError as exc:
        fail(f"provisioning failed: {exc}", EXIT_UNREACHABLE)
    user = access.submitter_user(name)
    document = {
        "user": user,
        "projects": sorted(project),
        "publish_to": {"exchange": access.intake, "routing_key": "job.submitted.<project>"},
        "watch": {
            "exchange": access.exchange,
            "queue_prefix": access.submitter_queue_prefix(name),
            "binding_keys": [f"ledger.*.*.{p}" for p in sorted(project)],
        },
        "amqp_url": urls[user] if not password_env_var else None,
    }
    if as_json:
        print_json(document)
        return
    console.print_json(json.dumps(document))


@broker_app.command("definitions")
def definitions_cmd(
    out: Annotated[Path, typer.Option(help="Where to write it.")] = DEFINITIONS_PATH,
) -> None:
    """Write deploy/rabbitmq/definitions.json from shared/broker_access.py."""
    out.write_text(definitions_text())
    console.print(f"wrote {out}")
