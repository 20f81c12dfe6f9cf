"""Ingest's hot-path helpers: the bounded cache and the grouped "verdict published" marks."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from services.ingest.submission import PublishedMarks
from shared.lru import Lru


def test_the_lru_forgets_the_least_recently_used_entry_beyond_its_size() -> None:
    cache: Lru[str, int] = Lru(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recently used
    cache.put("c", 3)
    assert "b" not in cache and cache.get("a") == 1 and cache.get("c") == 3
    cache.discard("a")
    cache.discard("missing")
    assert len(cache) == 1 and cache.get("a") is None


def test_an_lru_needs_room() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Lru[str, int](0)


class FakeDatabase:
    """Sessions whose connection records each statement's ids, and can be made to fail."""

    def __init__(self) -> None:
        self.batches: list[list[uuid.UUID]] = []
        self.fail: Exception | None = None
        self.gate = asyncio.Event()
        self.gate.set()

    def __call__(self) -> FakeDatabase:
        return self

    async def __aenter__(self) -> FakeDatabase:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def connection(self, execution_options: dict[str, Any]) -> FakeDatabase:
        assert execution_options == {"isolation_level": "AUTOCOMMIT"}
        return self

    async def execute(self, statement: Any, params: dict[str, Any]) -> None:
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        self.batches.append(list(params["ids"]))


async def test_marks_noted_while_one_is_written_share_the_next_statement() -> None:
    db = FakeDatabase()
    marks = PublishedMarks(db)  # type: ignore[arg-type]
    ids = [uuid.uuid4() for _ in range(5)]
    db.gate.clear()
    first = asyncio.create_task(marks.note(ids[0]))
    await asyncio.sleep(0)  # the writer starts on the first id and waits on the database
    await asyncio.sleep(0)
    rest = [asyncio.create_task(marks.note(i)) for i in ids[1:]]
    await asyncio.sleep(0)
    assert not first.done() and not any(t.done() for t in rest)  # nobody returns early
    db.gate.set()
    await asyncio.gather(first, *rest)
    assert db.batches == [ids[:1], ids[1:]]


async def test_a_failed_mark_fails_every_caller_of_its_statement_and_not_the_next() -> None:
    db = FakeDatabase()
    marks = PublishedMarks(db)  # type: ignore[arg-type]
    db.fail = RuntimeError("database away")
    results = await asyncio.gather(
        marks.note(uuid.uuid4()), marks.note(uuid.uuid4()), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)
    db.fail = None
    job = uuid.uuid4()
    await marks.note(job)
    assert db.batches == [[job]]


async def test_a_caller_that_gives_up_does_not_break_the_others() -> None:
    db = FakeDatabase()
    marks = PublishedMarks(db)  # type: ignore[arg-type]
    db.gate.clear()
    quitter = asyncio.create_task(marks.note(uuid.uuid4()))
    stayer = asyncio.create_task(marks.note(uuid.uuid4()))
    await asyncio.sleep(0)
    quitter.cancel()
    db.gate.set()
    await stayer
    assert quitter.cancelled() and len(db.batches[0]) == 2
