"""A client written from docs/asyncapi.json alone (issue 12, item 7).

The client part (``DocumentClient``) imports nothing from ``shared`` or ``services``: it
reads the committed AsyncAPI document for the submit channel (address, exchange, message
schema, headers schema) and the ledger relay channel, publishes a ``job.submitted`` with
raw aio-pika, binds a queue of its own to the relay and waits for its job's verdict.
Only the set-up (ingest and the archiver running in-process, an isolated exchange) uses
the project's fixtures. The deployment's exchange name is the one thing the client is
told besides the document: the document describes the default deployment.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import jsonschema
import pytest

from services.archiver.main import create_app as archiver_app
from services.ingest.main import create_app as ingest_app
from shared.settings import Settings
from tests.support.pipeline import running

pytestmark = pytest.mark.integration

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json"


# ----------------------------------------------------------------- the client (document only)


class DocumentClient:
    """Everything it knows about the pipeline comes from the AsyncAPI document."""

    def __init__(self, document: dict[str, Any], amqp_url: str, exchange: str | None = None):
        self.doc = document
        self.amqp_url = amqp_url
        self.submit_channel = self._channel("JobSubmitted", action="send")
        self.relay_channel = self._channel("LedgerEntry", action="send")
        self.exchange = exchange or self.submit_channel["bindings"]["amqp"]["exchange"]["name"]

    def _resolve(self, ref: str) -> Any:
        node: Any = self.doc
        for part in ref.removeprefix("#/").split("/"):
            node = node[part.replace("%20", " ").replace("%28", "(").replace("%29", ")")]
        return node

    def _message(self, channel: dict[str, Any]) -> dict[str, Any]:
        [ref] = [m["$ref"] for m in channel["messages"].values()]
        message: dict[str, Any] = self._resolve(ref)
        return message

    def _channel(self, payload: str, *, action: str) -> dict[str, Any]:
        """The channel an operation with ``action`` uses for messages of ``payload``,
        routed by key on an exchange (not a service's own queue)."""
        for operation in self.doc["operations"].values():
            channel = self._resolve(operation["channel"]["$ref"])
            if operation["action"] != action or channel["bindings"]["amqp"]["is"] != "routingKey":
                continue
            if self._message(channel)["payload"]["$ref"].endswith(f"/{payload}"):
                found: dict[str, Any] = channel
                return found
        raise LookupError(f"no {action} channel for {payload}")

    def schema(self, channel: dict[str, Any], part: str) -> dict[str, Any]:
        """A message part's JSON Schema, with the document's components to resolve refs."""
        return {
            **self._resolve(self._message(channel)[part]["$ref"]),
            "components": self.doc["components"],
        }

    @staticmethod
    def address(channel: dict[str, Any], **values: str) -> str:
        address: str = channel["address"]
        for name, value in values.items():
            address = address.replace(f"{{{name}}}", value)
        return address

    async def submit_and_watch(
        self, request: dict[str, Any], *, timeout: float = 30.0
    ) -> list[dict[str, Any]]:
        """Publish ``request`` as a job.submitted, return the job's relays up to its verdict."""
        job_id = str(uuid.uuid4())
        correlation_id = uuid.uuid4().hex
        body = {"job_id": job_id, "correlation_id": correlation_id, **request}
        jsonschema.validate(body, self.schema(self.submit_channel, "payload"))
        headers_schema = self.schema(self.submit_channel, "headers")
        event_types = headers_schema["properties"]["event_type"]["enum"]
        submitted = next(t for t in event_types if t.endswith(".submitted"))
        headers = {
            "job_id": job_id,
            "event_type": submitted,
            "event_id": str(uuid.uuid4()),
            "project": request["project"],
            "schema_version": headers_schema["properties"]["schema_version"]["const"],
        }
        jsonschema.validate(headers, headers_schema)
        relay_schema = self.schema(self.relay_channel, "payload")
        seen: list[dict[str, Any]] = []
        verdict = asyncio.Event()
        connection = await aio_pika.connect(self.amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(self.exchange)
            queue = await channel.declare_queue(exclusive=True, auto_delete=True)
            # Every event type of the headers' enum is two words (job.<what>): one "*" each.
            relay_types = self.schema(self.relay_channel, "headers")["properties"]["event_type"]
            [family] = {t.split(".")[0] for t in relay_types["enum"]}
            key = self.address(
                self.relay_channel, event_type=f"{family}.*", project=request["project"]
            )
            await queue.bind(exchange, routing_key=key)

            async def on_relay(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                async with message.process():
                    entry = json.loads(message.body)
                    jsonschema.validate(entry, relay_schema)
                    if entry["job_id"] == job_id:
                        seen.append(entry)
                        if entry["event_type"] in ("job.accepted", "job.rejected"):
                            verdict.set()

            await queue.consume(on_relay)
            await exchange.publish(
                aio_pika.Message(
                    json.dumps(body).encode(),
                    headers=headers,
                    content_type="application/json",
                    correlation_id=correlation_id,
                    message_id=headers["event_id"],
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=self.address(self.submit_channel, project=request["project"]),
            )
            await asyncio.wait_for(verdict.wait(), timeout)
        return seen


# ----------------------------------------------------------------------------- the test


async def test_a_client_written_from_the_asyncapi_document_sees_its_job_accepted(
    pipeline_settings: Settings, seeded: Path
) -> None:
    client = DocumentClient(
        json.loads(DOCUMENT.read_text()),
        pipeline_settings.amqp_url,
        exchange=pipeline_settings.exchange,
    )
    request = {
        "request_id": f"doc-client-{uuid.uuid4().hex[:8]}",
        "project": "neon-skies",
        "characters": [{"name": "Kai Nakamura"}],
        "prompt": "rooftop at dusk",
        "template": "model-free",
    }
    async with running(ingest_app(pipeline_settings)), running(archiver_app(pipeline_settings)):
        relays = await client.submit_and_watch(request)
    [entry] = relays
    assert (entry["event_type"], entry["seq"], entry["state"]) == ("job.accepted", 1, "accepted")
    assert entry["event"]["spec"]["request_id"] == request["request_id"]
    assert entry["event"]["correlation_id"]
