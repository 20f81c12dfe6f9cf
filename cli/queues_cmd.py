"""``anime queues`` and ``anime dlq list/show/replay/purge`` (logic in shared/queues.py)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    age_text,
    console,
    err,
    fail,
    print_json,
    run_async,
)
from cli.failures import print_wrapped
from shared.queues import (
    DeadLetter,
    DeadLetterFilter,
    DeadLetters,
    PurgeResult,
    QueueReport,
    ReplayResult,
    UnknownQueue,
    dead_letter_queues,
    inspect_queues,
    resolve_dlq,
)
from shared.settings import get_settings

QUEUE_HELP = (
    "Which dead-letter queue: a service (renderer, ingest), a work queue "
    "(archiver.job.rendered) or the DLQ's name. Default: the renderer's."
)

dlq_app = typer.Typer(
    help="Dead letters: list, show, replay to their work queue, purge.\n\n"
    "Examples: anime dlq list; anime dlq show 1a2b3c; anime dlq replay --job <id>; "
    "anime dlq replay --all --queue archiver.ledger; anime dlq purge --reason-contains "
    "validation --yes",
    no_args_is_help=True,
)


def _rate(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def queues(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    amqp_only: Annotated[
        bool, typer.Option("--amqp", help="Skip the management API; use passive declares.")
    ] = False,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Exit 1 if a dead-letter queue holds messages, a work queue has no "
            "consumer, or a queue is missing.",
        ),
    ] = False,
) -> None:
    """Every queue of the pipeline (work, retry, dead-letter): ready, unacked, consumers,
    oldest message age and rates.

    Figures come from RabbitMQ's management API when it answers (port
    ANIME_MANAGEMENT_PORT, default 15672, credentials of ANIME_AMQP_URL), else from
    passive declares (ready and consumers only); the output says which. The oldest age is
    shown for dead-letter queues (their head is peeked) and where the management API
    knows it; work queues are never peeked (a peek would count as a delivery).

    Examples: anime queues; anime queues --json; anime queues --check (for cron/alerts)
    """
    report: QueueReport = run_async(inspect_queues(get_settings(), prefer_management=not amqp_only))
    problems = []
    for q in report.queues:
        if not q.exists:
            problems.append(f"{q.name} does not exist")
        elif q.role == "dlq" and q.ready:
            problems.append(f"{q.name} holds {q.ready} dead letter(s)")
        elif q.role == "work" and q.consumers == 0:
            problems.append(f"{q.name} has no consumer")
    if as_json:
        print_json({**report.as_dict(), "problems": problems})
    else:
        source = (
            "management API"
            if report.source == "management"
            else "AMQP passive declares (ready and consumers only)"
        )
        table = Table(title=f"pipeline queues — source: {source}", title_justify="left")
        for column, justify in (
            ("queue", "left"),
            ("role", "left"),
            ("ready", "right"),
            ("unacked", "right"),
            ("consumers", "right"),
            ("oldest", "right"),
            ("in/s", "right"),
            ("out/s", "right"),
            ("ack/s", "right"),
        ):
            table.add_column(column, justify=justify)  # type: ignore[arg-type]
        for q in report.queues:
            if not q.exists:
                table.add_row(q.name, q.role, "[red]missing[/]", "", "", "", "", "", "")
                continue
            ready = str(q.ready) if q.ready is not None else "—"
            if q.role == "dlq" and q.ready:
                ready = f"[red]{ready}[/]"
            consumers = str(q.consumers) if q.consumers is not None else "—"
            if q.role == "work" and q.consumers == 0:
                consumers = f"[yellow]{consumers}[/]"
            table.add_row(
                q.name,
                q.role,
                ready,
                str(q.unacked) if q.unacked is not None else "—",
                consumers,
                age_text(q.oldest_age_seconds),
                _rate(q.publish_rate),
                _rate(q.deliver_rate),
                _rate(q.ack_rate),
            )
        console.print(table)
        if report.note:
            err.print(f"[yellow]note:[/] {report.note}", highlight=False)
        if check:
            for problem in problems:
                err.print(f"[red]check:[/] {problem}", highlight=False)
    if check and problems:
        raise typer.Exit(EXIT_FAILED)


def _letters_table(letters: list[DeadLetter], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("id", "job", "attempt", "age"):
        table.add_column(column, overflow="fold")
    for letter in letters:
        table.add_row(
            letter.id,
            letter.job_id or "—",
            str(letter.attempt) if letter.attempt is not None else "—",
            age_text(letter.age_seconds),
        )
    return table


def _print_reasons(letters: list[DeadLetter]) -> None:
    """Each letter's whole reason under the table, wrapped at word boundaries."""
    for letter in letters:
        console.print(f"[bold]{letter.id}[/]", highlight=False)
        print_wrapped(console, letter.reason.splitlines() or [""])


def _filter(
    letter_id: str | None, job: str | None, reason_contains: str | None, everything: bool
) -> DeadLetterFilter:
    return DeadLetterFilter(
        ids=frozenset([letter_id]) if letter_id else frozenset(),
        job=job,
        reason_contains=reason_contains,
        everything=everything,
    )


@dlq_app.command("list")
def dlq_list(
    queue: Annotated[str | None, typer.Option("--queue", "-q", help=QUEUE_HELP)] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The dead letters of one queue (they stay where they are): id, job, reason,
    attempt, age.

    Examples: anime dlq list; anime dlq list -q ingest --json
    """
    settings = get_settings()

    async def work() -> tuple[str, list[DeadLetter]]:
        ref = resolve_dlq(settings, queue)
        async with DeadLetters(settings) as letters:
            return ref.name, await letters.list(queue, limit=limit)

    name, letters = run_async(work())
    if as_json:
        print_json({"queue": name, "dead_letters": [d.summary() for d in letters]})
        return
    console.print(_letters_table(letters, f"{name}: {len(letters)} dead letter(s)"))
    _print_reasons(letters)


@dlq_app.command("queues")
def dlq_queues() -> None:
    """The names of the pipeline's dead-letter queues (for --queue)."""
    for ref in dead_letter_queues(get_settings()):
        console.print(f"{ref.name}  ({ref.service}, from {ref.work_queue})", highlight=False)


@dlq_app.command("show")
def dlq_show(
    letter_id: Annotated[str, typer.Argument(help="The id from `anime dlq list` (or a prefix).")],
    queue: Annotated[str | None, typer.Option("--queue", "-q", help=QUEUE_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One dead letter in full: reason, headers and body. Exit 1 if it is not there.

    Example: anime dlq show 1a2b3c4d5e6f --json
    """
    settings = get_settings()

    async def work() -> DeadLetter | None:
        async with DeadLetters(settings) as letters:
            return await letters.show(queue, letter_id)

    letter = run_async(work())
    if letter is None:
        fail(f"no dead letter {letter_id!r} in {resolve_dlq(settings, queue).name}")
    if as_json:
        print_json(letter.as_dict())
        return
    document = letter.as_dict()
    body = document.pop("body")
    for key, value in document.items():
        if key != "headers":
            console.print(f"[bold]{key:<15}[/] {value}", highlight=False)
    console.print("[bold]headers[/]")
    console.print_json(data=letter.headers)
    console.print("[bold]body[/]")
    console.print_json(data=body) if not isinstance(body, str) else console.print(body)


@dlq_app.command("replay")
def dlq_replay(
    letter_id: Annotated[str | None, typer.Argument(help="Replay this one (id from list).")] = None,
    job: Annotated[str | None, typer.Option(help="Replay this job's dead letters.")] = None,
    reason_contains: Annotated[
        str | None, typer.Option(help="Replay those whose reason contains this text.")
    ] = None,
    everything: Annotated[bool, typer.Option("--all", help="Replay every dead letter.")] = False,
    queue: Annotated[str | None, typer.Option("--queue", "-q", help=QUEUE_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Send dead letters back to their work queue with a fresh attempt count.

    The attempt, death, park-reason and avoided-backend headers are dropped; each
    message is published persistently with a confirm, then removed from the DLQ. Exit 1
    if an id is not found or a publish failed (those stay in the DLQ).

    Examples: anime dlq replay 1a2b3c4d5e6f; anime dlq replay --job <job-id>;
    anime dlq replay --reason-contains timeout; anime dlq replay --all -q ingest
    """
    which = _filter(letter_id, job, reason_contains, everything)
    if which.is_empty():
        fail("say which: an id, --job, --reason-contains or --all", EXIT_USAGE)
    settings = get_settings()

    async def work() -> ReplayResult:
        async with DeadLetters(settings) as letters:
            return await letters.replay(queue, which, limit=1 if letter_id else None)

    result = run_async(work())
    if as_json:
        print_json(result.as_dict())
    else:
        for letter in result.replayed:
            console.print(f"replayed {letter.id} (job {letter.job_id}) → {result.target}")
        for letter, error in result.failed:
            err.print(f"[red]not replayed[/] {letter.id}: {error}", highlight=False)
        console.print(f"{len(result.replayed)} replayed, {result.kept} left in {result.queue}")
    if result.failed or (letter_id and not result.replayed):
        if letter_id and not result.replayed and not as_json:
            err.print(f"[red]error:[/] no dead letter {letter_id!r} in {result.queue}")
        raise typer.Exit(EXIT_FAILED)


@dlq_app.command("purge")
def dlq_purge(
    letter_id: Annotated[str | None, typer.Argument(help="Purge this one (id from list).")] = None,
    job: Annotated[str | None, typer.Option(help="Purge this job's dead letters.")] = None,
    reason_contains: Annotated[
        str | None, typer.Option(help="Purge those whose reason contains this text.")
    ] = None,
    queue: Annotated[str | None, typer.Option("--queue", "-q", help=QUEUE_HELP)] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Really delete them.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Delete dead letters for good: all of the queue's, or those selected.

    Needs --yes (or a "y" at the prompt on a terminal); exit 2 without it.

    Examples: anime dlq purge --yes; anime dlq purge --reason-contains "invalid job" --yes
    """
    settings = get_settings()
    which = _filter(letter_id, job, reason_contains, everything=False)
    if which.is_empty():
        which = _filter(None, None, None, everything=True)
    try:
        name = resolve_dlq(settings, queue).name
    except UnknownQueue as exc:
        fail(str(exc), EXIT_USAGE)
    if not yes:
        what = "every dead letter" if which.everything else "the selected dead letters"
        if not sys.stdin.isatty() or not typer.confirm(f"Delete {what} in {name}?"):
            fail("not purged: add --yes to delete dead letters", EXIT_USAGE)

    async def work() -> PurgeResult:
        async with DeadLetters(settings) as letters:
            return await letters.purge(queue, which)

    result = run_async(work())
    if as_json:
        print_json(result.as_dict())
    else:
        console.print(f"purged {len(result.purged)}, {result.kept} left in {result.queue}")
    if letter_id and not result.purged:
        raise typer.Exit(EXIT_FAILED)
