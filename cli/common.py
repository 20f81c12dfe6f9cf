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


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages)."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.rsplit("@", 1)
        return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{netloc[-1]}"))
    except ValueError:
        return "<unreadable URL>"


def _setting(name: str) -> str:
    from shared.settings import get_settings

    try:
        return str(getattr(get_settings(), name))
    except Exception:  # a message must not fail on a bad configuration
        return "?"


def _database() -> str:
    return f"PostgreSQL at {mask_url(_setting('database_url'))} (ANIME_DATABASE_URL)"


def _rabbitmq() -> str:
    return f"RabbitMQ at {mask_url(_setting('amqp_url'))} (ANIME_AMQP_URL)"


def _amqp_url_problem() -> str | None:
    """Why ANIME_AMQP_URL cannot be a broker's address, or None if it looks like one."""
    from urllib.parse import urlsplit

    url = _setting("amqp_url")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("amqp", "amqps") or not parts.hostname:
        return (
            f"ANIME_AMQP_URL={mask_url(url)} is not an AMQP URL; "
            "expected amqp://user:password@host:5672/vhost"
        )
    return None


def _unwrap(exc: BaseException) -> BaseException:
    """The driver's exception inside SQLAlchemy's wrapper (``orig``, then its cause)."""
    seen = 0
    while seen < 5:
        seen += 1
        inner = getattr(exc, "orig", None)
        if isinstance(inner, BaseException):
            exc = inner
            continue
        if isinstance(exc.__cause__, asyncpg.PostgresError | OSError) and not isinstance(
            exc, asyncpg.PostgresError
        ):
            exc = exc.__cause__
            continue
        break
    return exc


def _raised_in(exc: BaseException, *packages: str) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", ""))
        if module.split(".", 1)[0] in packages:
            return True
        tb = tb.tb_next
    return False


def classify(exc: BaseException) -> tuple[int, str] | None:
    """The exit code and message for an exception an operator can act on, else None."""
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, DBAPIError):
        inner = _unwrap(exc)
        if inner is not exc:
            return classify(inner) or (EXIT_UNREACHABLE, f"{_database()}: {inner}")
    if isinstance(exc, asyncpg.UndefinedTableError):
        return EXIT_UNREACHABLE, (f"{_database()} has no schema yet ({exc}); run `anime migrate`")
    if isinstance(exc, CliError):
        return exc.code, str(exc)
    if isinstance(exc, AuthFailed):
        return EXIT_AUTH, str(exc)
    if isinstance(exc, UnknownQueue):
        return EXIT_USAGE, str(exc)
    if isinstance(exc, BrokerUnreachable | QueueError):
        return EXIT_UNREACHABLE, str(exc)
    if isinstance(exc, aiormq.exceptions.ProbableAuthenticationError):
        return EXIT_AUTH, f"{_rabbitmq()} refused the credentials: {exc}"
    if isinstance(
        exc,
        asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError,
    ):
        return EXIT_AUTH, f"{_database()} refused the login: {exc}"
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return EXIT_UNREACHABLE, f"{_database()}: {exc}; run `anime migrate`"
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
    amqp = isinstance(exc, aiormq.exceptions.AMQPError) or _raised_in(
        exc, "aiormq", "aio_pika", "pamqp", "faststream"
    )
    if amqp and isinstance(exc, aiormq.exceptions.AMQPError | ConnectionError | OSError):
        problem = _amqp_url_problem()
        if problem is not None:
            return EXIT_USAGE, problem
        return EXIT_UNREACHABLE, f"cannot reach {_rabbitmq()}: {exc}"
    if isinstance(exc, TimeoutError):
        return EXIT_UNREACHABLE, "timed out waiting for a service"
    if isinstance(exc, ConnectionError | OSError):
        if _raised_in(exc, "asyncpg", "sqlalchemy"):
            return EXIT_UNREACHABLE, f"cannot reach {_database()}: {exc}"
        return EXIT_UNREACHABLE, f"cannot reach a service: {exc}"
    return None


#: Library loggers whose lines would only repeat the one-line error (set by the
#: ``anime`` callback for every command but ``run`` and ``up``, which serve).
QUIET_LOGGERS = ("aiormq", "aio_pika", "faststream", "asyncio")
quiet_libraries = False


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; turn known failures into one line on stderr and an exit code."""
    import logging

    saved = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    if quiet_libraries:
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.CRITICAL)
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
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


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
