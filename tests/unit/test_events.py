"""The event contract: envelope, routing keys, round trips."""

import uuid

import pytest
from pydantic import ValidationError

from shared.events import (
    EVENT_MODELS,
    CharacterRef,
    EventType,
    JobStarted,
    JobSubmitted,
    derived_id,
    parse_event,
)


def test_every_event_type_has_exactly_one_model() -> None:
    assert set(EVENT_MODELS) == set(EventType)


def test_routing_key_is_event_type_then_project() -> None:
    event = JobStarted(
        job_id=uuid.uuid4(),
        correlation_id="c",
        producer="renderer",
        project="neon-skies",
        backend="http://b",
        prompt_id="p",
        attempt=1,
    )
    assert event.routing_key() == "job.started.neon-skies"
    assert event.headers()["job_id"] == str(event.job_id)


def test_events_round_trip_through_json_by_their_event_type() -> None:
    event = JobStarted(
        job_id=uuid.uuid4(),
        correlation_id="c",
        producer="renderer",
        project="p",
        backend="http://b",
        prompt_id="p",
        attempt=2,
    )
    assert parse_event(event.model_dump_json()) == event


def test_project_must_be_a_safe_slug() -> None:
    with pytest.raises(ValidationError):
        JobSubmitted(
            job_id=uuid.uuid4(),
            correlation_id="c",
            project="../etc",
            request_id="r",
            characters=[{"name": "Kai"}],
        )


def test_a_character_is_named_by_exactly_one_of_name_or_id() -> None:
    with pytest.raises(ValidationError):
        CharacterRef()
    with pytest.raises(ValidationError):
        CharacterRef(name="Kai", id=uuid.uuid4())
    assert CharacterRef(name="Kai", version=2).label() == "Kai"


def test_derived_ids_are_stable() -> None:
    job = uuid.uuid4()
    assert derived_id(job, "accepted") == derived_id(job, "accepted")
    assert derived_id(job, "accepted") != derived_id(job, "rejected")


def test_settings_as_env_round_trips_and_leaves_unset_values_unset() -> None:
    from shared.settings import Settings

    settings = Settings(comfyui_urls="http://a:1,http://b:2", retry_delays="1,2.5")
    env = settings.as_env()
    assert "ANIME_API_KEY" not in env and "ANIME_MANAGEMENT_URL" not in env
    assert env["ANIME_COMFYUI_URLS"] == "http://a:1,http://b:2"
    again = Settings.model_validate({k.removeprefix("ANIME_").lower(): v for k, v in env.items()})
    assert again.comfyui_urls == settings.comfyui_urls and again.retry_delays == [1.0, 2.5]
