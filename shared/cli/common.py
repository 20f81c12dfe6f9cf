"""What every ``anime`` command shares: exit codes, error reporting, JSON output.

Exit codes: 0 success; 1 the job or check failed (or the thing asked for is not
there); 2 bad usage; 3 a service (RabbitMQ, PostgreSQL, the pipeline's HTTP) could not
be reached; 4 a service refused the credentials (API key, AMQP or database login).
Errors are one readable line on stderr, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Coroutine
from typing import Any, NoReturn, TypeVar

import aiohttp
import aiormq
import asyncpg
import typer
from rich.console import Console

from shared.queues import AuthFailed, BrokerUnreachable, QueueError, UnknownQueue

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_AUTH = 0, 1, 2, 3, 4

console = Console()
err = Console(stderr=True, soft_wrap=True)

T = TypeVar("T")


class CliError(Exception):
    """An error to report as one line with a given exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    err.print(f"[red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def classify(exc: BaseException) -> tuple[int, str] | None:
    """The exit code and message for an exception an operator can act on, else None."""
    if isinstance(exc, CliError):
        return exc.code, str(exc)
    if isinstance(exc, AuthFailed):
        return EXIT_AUTH, str(exc)
    if isinstance(exc, UnknownQueue):
        return EXIT_USAGE, str(exc)
    if isinstance(exc, BrokerUnreachable | QueueError):
        return EXIT_UNREACHABLE, str(exc)
    if isinstance(exc, aiormq.exceptions.ProbableAuthenticationError):
        return EXIT_AUTH, f"RabbitMQ refused the credentials in ANIME_AMQP_URL: {exc}"
    if isinstance(
        exc,
        asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError,
    ):
        return EXIT_AUTH, f"PostgreSQL refused the login in ANIME_DATABASE_URL: {exc}"
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return EXIT_UNREACHABLE, f"{exc} (run `anime migrate`)"
    if isinstance(exc, aiohttp.WSServerHandshakeError | aiohttp.ClientResponseError):
        if exc.status in (401, 403):
            return EXIT_AUTH, (
                f"the service refused the API key ({exc.status}): set ANIME_API_KEY to a key "
                "with the needed scope (`anime keys create`)"
            )
        return EXIT_UNREACHABLE, f"the service answered {exc.status}: {exc.message}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return EXIT_UNREACHABLE, f"cannot reach {exc.host}:{exc.port}: {exc.os_error}"
    if isinstance(exc, aiohttp.ClientError):
        return EXIT_UNREACHABLE, f"HTTP error: {exc}"
    if isinstance(exc, aiormq.exceptions.AMQPError):
        return EXIT_UNREACHABLE, f"RabbitMQ error: {exc}"
    if isinstance(exc, TimeoutError):
        return EXIT_UNREACHABLE, "timed out waiting for a service"
    if isinstance(exc, ConnectionError | OSError):
        return EXIT_UNREACHABLE, f"cannot reach a service: {exc}"
    return None


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; turn known failures into one line on stderr and an exit code."""
    try:
        return asyncio.run(coro)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except typer.Exit:
        raise
    except Exception as exc:
        known = classify(exc)
        if known is None:
            raise
        fail(known[1], known[0])


def print_json(value: Any) -> None:
    """JSON on stdout, alone (no rich markup), for scripts."""
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")
    sys.stdout.flush()


def age_text(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def notifier_base(settings: Any) -> str:
    host = settings.http_host
    host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    return f"http://{host}:{settings.notifier_port}"


def api_headers(settings: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
