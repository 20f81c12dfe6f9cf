"""What every service process does around its handlers.

Start-up, in order: JSON logging; wait (bounded, logged) for PostgreSQL and RabbitMQ;
declare the whole durable topology; start the HTTP server (``/healthz``, ``/readyz``,
``/metrics`` plus the service's own routes). Shutdown undoes it in reverse, after
FastStream has let in-flight handlers finish.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import web
from faststream import FastStream
from faststream.rabbit import ExchangeType, RabbitExchange
from faststream.specification import AsyncAPI
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.auth import KeyChecker, auth_middleware
from shared.db.session import make_engine, make_sessionmaker, wait_for_database
from shared.logging import configure_logging, get_logger
from shared.messaging import EventBus, declare_pipeline, make_broker, wait_for_broker
from shared.metrics import QueueDepthPoller, make_metrics_middleware
from shared.settings import Settings
from shared.topology import Topology

log = get_logger(__name__)

ReadinessCheck = Callable[[], Awaitable[str | None]]
Hook = Callable[[], Awaitable[None]]


class ServiceRuntime:
    """The broker, database and HTTP server of one service process."""

    def __init__(
        self, name: str, settings: Settings, *, http_port: int, version: str = "1"
    ) -> None:
        self.name = name
        self.settings = settings
        self.http_port = http_port
        self.version = version
        self.topology = Topology.from_settings(settings)
        if settings.declare_topology == "own":
            # FastStream declares a subscriber's exchange actively, which needs configure
            # rights on it; a least-privileged service only checks that it exists.
            self.topology.exchange = RabbitExchange(
                settings.exchange, type=ExchangeType.TOPIC, durable=True, declare=False
            )
        self.broker = make_broker(settings, service=name)
        self.broker.add_middleware(make_metrics_middleware(name))
        self.bus = EventBus(self.broker, self.topology, amqp_url=settings.amqp_url)
        self.keys = KeyChecker(lambda: self.sessions())
        self.http = web.Application(
            client_max_size=32 * 1024**2,
            middlewares=[auth_middleware(self.keys, enabled=settings.require_api_keys)],
        )
        self.http.router.add_get("/healthz", self._healthz)
        self.http.router.add_get("/readyz", self._readyz)
        self.http.router.add_get("/metrics", self._metrics)
        self.readiness_checks: dict[str, ReadinessCheck] = {
            "broker": self._broker_ready,
            "database": self._database_ready,
        }
        self.on_ready: list[Hook] = []
        self.on_stop: list[Hook] = []
        # Runs last (hooks run in reverse): a stopping service may still relay.
        self.on_stop.append(self.bus.close)
        # Queue depth and consumer gauges for /metrics, on a connection of their own.
        self.queue_poller = QueueDepthPoller(settings, service=name)
        self.on_ready.append(self.queue_poller.start)
        self.on_stop.append(self.queue_poller.stop)
        self._engine: AsyncEngine | None = None
        self._sessionmaker: async_sessionmaker[AsyncSession] | None = None
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError(f"{self.name}: database used before start-up")
        return self._engine

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        if self._sessionmaker is None:
            raise RuntimeError(f"{self.name}: database used before start-up")
        return self._sessionmaker

    @property
    def client(self) -> aiohttp.ClientSession:
        """The process's outgoing HTTP client (one connection pool for everything)."""
        if self._client is None:
            raise RuntimeError(f"{self.name}: HTTP client used before start-up")
        return self._client

    def app(self, *, description: str) -> FastStream:
        """The FastStream application; its lifespan is this runtime's start and stop."""
        return FastStream(
            self.broker,
            lifespan=self.lifespan,
            logger=get_logger(f"faststream.{self.name}"),
            specification=AsyncAPI(
                title=f"anime-production {self.name}", version=self.version, description=description
            ),
        )

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        configure_logging(self.name, self.settings.log_level)
        timeout = self.settings.startup_timeout_seconds
        self._engine = make_engine(self.settings.database_url)
        self._sessionmaker = make_sessionmaker(self._engine)
        self._client = aiohttp.ClientSession()
        try:
            await wait_for_database(self._engine, timeout=timeout, service=self.name)
            await wait_for_broker(self.broker, timeout=timeout, service=self.name)
            await self._declare_topology()
            for hook in self.on_ready:
                await hook()
            await self._start_http()
            log.info("service.started", service=self.name, port=self.http_port)
            yield
        finally:
            for hook in reversed(self.on_stop):
                try:
                    await hook()
                except Exception:
                    log.exception("service.stop_hook_failed", service=self.name)
            if self._runner is not None:
                await self._runner.cleanup()
            await self._client.close()
            await self._engine.dispose()
            log.info("service.stopped", service=self.name)

    async def _declare_topology(self) -> None:
        """Declare what this process may: everything (``pipeline``) or its own queues.

        As its own least-privileged broker user (``declare_topology=own``) a service may
        not declare other services' queues nor the exchanges; provisioning did that with
        an administrator account, and the exchanges are only checked here.
        """
        specs = list(self.topology.pipeline_specs(self.settings).values())
        own = self.settings.declare_topology == "own"
        if own:
            specs = [spec for spec in specs if spec.service == self.name]
        await declare_pipeline(self.settings.amqp_url, self.topology, specs, exchanges=not own)

    async def _start_http(self) -> None:
        self._runner = web.AppRunner(self.http, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.http_host, self.http_port)
        await site.start()

    # ------------------------------------------------------------------ health

    async def _healthz(self, _: web.Request) -> web.Response:
        """Liveness: open on purpose. It says only that the process answers (no data, no
        dependency state), and orchestrators' probes carry no credentials. The process id
        lets a supervisor check it is talking to the process it started."""
        return web.json_response({"status": "ok", "service": self.name, "pid": os.getpid()})

    async def _readyz(self, _: web.Request) -> web.Response:
        """Readiness: which dependency is down, never why (exception text names hosts and
        users); the exception goes to the log."""
        problems: dict[str, str] = {}
        for name, check in self.readiness_checks.items():
            try:
                problem = await check()
            except Exception:
                log.warning("service.not_ready", service=self.name, dependency=name, exc_info=True)
                problem = f"{name} unavailable"
            if problem:
                problems[name] = problem
        body: dict[str, Any] = {"service": self.name, "ready": not problems, "problems": problems}
        return web.json_response(body, status=503 if problems else 200)

    async def _metrics(self, request: web.Request) -> web.Response:
        """Prometheus text. Open unless ``ANIME_METRICS_TOKEN`` is set (then it needs
        ``Authorization: Bearer <token>``): meant for a scraper on a private network."""
        token = self.settings.metrics_token
        if token:
            header = request.headers.get("Authorization", "")
            presented = header[7:].strip() if header.lower().startswith("bearer ") else ""
            if not hmac.compare_digest(presented.encode(), token.encode()):
                return web.json_response(
                    {
                        "errors": [
                            {
                                "field": "authorization",
                                "code": "unauthorized",
                                "message": "/metrics needs Authorization: Bearer <metrics token>",
                                "suggestions": [],
                            }
                        ]
                    },
                    status=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _broker_ready(self) -> str | None:
        return None if await self.broker.ping(timeout=2.0) else "broker unreachable"

    async def _database_ready(self) -> str | None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return None
