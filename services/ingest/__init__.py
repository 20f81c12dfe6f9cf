"""Ingest: the one gate every request passes (AMQP ``job.submitted`` and ``POST /v1/jobs``)."""

SERVICE = "ingest"
#: Bodies larger than this are not parsed at all: they are dead-lettered.
MAX_BODY_BYTES = 256 * 1024
