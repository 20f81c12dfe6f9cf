"""Who publishes and who consumes which event, and the documents generated from it.

``docs/asyncapi.json`` (AsyncAPI 3.0) and ``docs/schemas/*.json`` (one JSON Schema per
event) are generated from this module, the event models and the topology, by
``anime docs generate``; a test regenerates them and compares with the committed files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from faststream import FastStream
from faststream.rabbit import RabbitBroker
from faststream.specification import AsyncAPI

from shared.events import EVENT_MODELS, SCHEMA_VERSION, EventType, LedgerEntry
from shared.settings import Settings
from shared.topology import LEDGER_PREFIX, Topology

#: What each party publishes on the events exchange: the contract, and the broker rights
#: of each internal principal (shared/broker_access.py grants exactly these).
PUBLISHES: dict[str, tuple[EventType, ...]] = {
    # Through the outside door (the intake exchange) only.
    "external": (EventType.SUBMITTED,),
    "ingest": (EventType.ACCEPTED, EventType.REJECTED, EventType.CANCEL_REQUESTED),
    "renderer": (
        EventType.STARTED,
        EventType.PROGRESS,
        EventType.RENDERED,
        EventType.RETRYING,
        EventType.FAILED,
        EventType.CANCELLED,
    ),
    "archiver": (EventType.ARCHIVED, EventType.FAILED),
    # The ops dashboard's dead-letter replay.
    "notifier": (EventType.REDRIVEN,),
    # The operator's CLI: cancel requests, redrives (anime jobs cancel, anime dlq replay).
    "ops": (EventType.CANCEL_REQUESTED, EventType.REDRIVEN),
}

#: Which pipeline work queue (``Topology.pipeline_specs`` key) each consumer reads.
CONSUMES: dict[str, str] = {
    "ingest": "ingest.submitted",
    "renderer": "renderer.accepted",
    "archiver (ledger)": "archiver.ledger",
    "archiver (archive)": "archiver.rendered",
}

DESCRIPTION = """Events of the anime-production pipeline.

Every event goes through one durable topic exchange with routing key
`<event_type>.<project>` (bind `job.progress.*` for one type, `job.*.<project>` for one
project, `job.#` for all). Messages are persistent JSON (`content_type`
`application/json`) with the headers of `EventHeaders` (`job_id`, `event_type`,
`event_id`, `project`, `schema_version`); the AMQP `correlation_id` property and the
body's `correlation_id` carry the id from the first request to the last event, and the
AMQP `message_id` property is the `event_id`. Outside systems publish through the intake
exchange (`<exchange>.intake`, given with their credentials by `anime broker submitter`),
routing key `job.submitted.<project>`, and may listen only to the ledger relays.

Submitting: publish `job.submitted` with a `job_id` (UUID) of your choosing; every answer
is published under it. A message without a usable `job_id` is refused (parked in
ingest's dead-letter queue, reason `missing_job_id` / `invalid_job_id`). Ingest answers
with `job.accepted` or `job.rejected` (every problem listed). `request_id` is the
idempotency key: the same message again is answered from the record; the same request
under another `job_id` is rejected on that id (`code` `duplicate_request`, the existing
job in the message and in `suggestions`); another body under an accepted `request_id` is
rejected (`code` `conflict`).

Watching: bind a queue of your own to `ledger.<event_type>.<project>` (e.g.
`ledger.job.*.<project>`, `ledger.job.archived.<project>`): every event of a job, once
recorded, as a `LedgerEntry` (`seq` per job, `state` after it, `event` the event
itself), headers of `LedgerHeaders`. Final states: `job.archived` is success (state
`completed`); `job.rejected`, `job.failed` and `job.cancelled` are not.

Fetching the result: `job.archived`'s `assets[].path` is relative to the archive, not a
URL. Fetch an asset from the notifier's read API (base URL
`http://<notifier host>:<notifier_port>`, port 8404 by default; an API key with the
`read` scope as `Authorization: Bearer <key>`): list a job's assets with
`GET /v1/projects/<project>/assets` (filters `episode`, `scene`, `shot`, `character`,
`since`; each asset has `links.file`), the asset with `GET /v1/assets/<id>`, its bytes
with `GET /v1/assets/<id>/file` (see docs/archive.md, "Read API")."""

#: AMQP headers of every event (``Event.headers()``).
EVENT_HEADERS: dict[str, Any] = {
    "type": "object",
    "title": "EventHeaders",
    "description": "AMQP headers of every event, to route or log before decoding the body.",
    "properties": {
        "job_id": {"type": "string", "format": "uuid"},
        "event_type": {"type": "string", "enum": [t.value for t in EventType]},
        "event_id": {"type": "string", "format": "uuid"},
        "project": {"type": "string"},
        "schema_version": {"type": "string", "const": str(SCHEMA_VERSION)},
    },
    "required": ["job_id", "event_type", "event_id", "project", "schema_version"],
}
#: AMQP headers of a ledger relay (``EventBus.publish_ledger``).
LEDGER_HEADERS: dict[str, Any] = {
    "type": "object",
    "title": "LedgerHeaders",
    "description": "AMQP headers of a ledger relay.",
    "properties": {
        "job_id": {"type": "string", "format": "uuid"},
        "event_type": {"type": "string", "enum": [t.value for t in EventType]},
        "seq": {"type": "integer", "minimum": 1},
    },
    "required": ["job_id", "event_type", "seq"],
}


def _doc(model: type[Any]) -> str:
    return (model.__doc__ or "").strip().split("\n\n")[0]


def contract_app(settings: Settings | None = None) -> FastStream:
    """A FastStream app whose only purpose is to describe the contract in AsyncAPI."""
    settings = settings or Settings()
    topology = Topology.from_settings(settings)
    broker = RabbitBroker(settings.amqp_url)
    for party, events in PUBLISHES.items():
        for event_type in events:
            model = EVENT_MODELS[event_type]
            broker.publisher(
                exchange=topology.exchange,
                routing_key=f"{event_type.value}.{{project}}",
                schema=model,
                title=f"{party}: publish {event_type.value}",
                description=_doc(model),
                persist=True,
            )
    specs = topology.pipeline_specs(settings)
    for consumer, key in CONSUMES.items():
        spec = specs[key]
        queue = topology.work_queue(spec)
        models = [EVENT_MODELS[EventType(k.removesuffix(".#"))] for k in spec.binding_keys]
        body_type: Any = models[0] if len(models) == 1 else Any

        async def handler(body: Any) -> None:  # pragma: no cover - documentation only
            return None

        handler.__annotations__["body"] = body_type
        broker.subscriber(
            queue,
            topology.exchange,
            title=f"{consumer}: {spec.name}",
            description=(
                f"Durable quorum queue bound with {', '.join(spec.binding_keys)}; dead letters "
                f"go to {spec.dlq}."
            ),
        )(handler)
    broker.publisher(
        exchange=topology.exchange,
        routing_key=f"{LEDGER_PREFIX}.{{event_type}}.{{project}}",
        schema=LedgerEntry,
        title="archiver: ledger relay",
        description=(
            "Every event once recorded in the job ledger, with its per-job sequence number "
            "and the job's state after it. Not persistent: a missed relay is read back from "
            "the notifier (GET /v1/jobs/<id>, or its event stream GET /v1/jobs/<id>/events). "
            "Bind a queue of your own to it."
        ),
        persist=False,
    )
    ledger = topology.fanout_queue("notifier", f"{LEDGER_PREFIX}.#", replica="{replica}")

    async def ledger_handler(body: LedgerEntry) -> None:  # pragma: no cover - documentation only
        return None

    broker.subscriber(
        ledger,
        topology.exchange,
        title="notifier: ledger relay",
        description="Each notifier replica's own queue of recorded events (ledger.#).",
    )(ledger_handler)
    return FastStream(
        broker,
        specification=AsyncAPI(
            title="anime-production events",
            version=f"schema-v{SCHEMA_VERSION}",
            description=DESCRIPTION,
        ),
    )


def asyncapi_document() -> dict[str, Any]:
    document: dict[str, Any] = contract_app().schema.to_specification().to_jsonable()
    components = document["components"]
    components["schemas"]["EventHeaders"] = EVENT_HEADERS
    components["schemas"]["LedgerHeaders"] = LEDGER_HEADERS
    for message in components["messages"].values():
        ledger = message.get("payload", {}).get("$ref", "").endswith("/LedgerEntry")
        message["headers"] = {
            "$ref": f"#/components/schemas/{'LedgerHeaders' if ledger else 'EventHeaders'}"
        }
        # The services set the AMQP correlation_id property, not a header of that name;
        # AsyncAPI can point only into headers or payload, and the payload carries it.
        message["correlationId"] = {
            "description": "Also the AMQP correlation_id property of the message.",
            "location": "$message.payload#/"
            + ("event/correlation_id" if ledger else "correlation_id"),
        }
    return document


def event_schemas() -> dict[str, dict[str, Any]]:
    schemas = {t.value: m.model_json_schema() for t, m in EVENT_MODELS.items()}
    schemas["ledger.entry"] = LedgerEntry.model_json_schema()
    return schemas


def write_documents(docs: Path) -> list[Path]:
    """Write the AsyncAPI document and the JSON Schemas under ``docs``; return the paths."""
    written = []
    target = docs / "asyncapi.json"
    target.write_text(json.dumps(asyncapi_document(), indent=2, sort_keys=True) + "\n")
    written.append(target)
    schema_dir = docs / "schemas"
    schema_dir.mkdir(parents=True, exist_ok=True)
    for name, schema in event_schemas().items():
        path = schema_dir / f"{name}.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
