"""A RabbitMQ node and a PostgreSQL cluster of the test's own, to break on purpose.

The shared broker and database on this machine serve other engineers' tests at the
same time: faults on the broker or the database are injected here, never there.

* :class:`OwnRabbit`: a second RabbitMQ node (``chaos-<id>@localhost``) on free ports,
  its mnesia, logs, cookie and plugin list in a temporary folder, run in the
  foreground as a child process; ``stop_app``/``start_app`` through ``rabbitmqctl``.
* :class:`OwnPostgres`: ``initdb -A trust`` in a temporary folder, ``pg_ctl``
  start/stop/restart on a free port. PostgreSQL refuses to run as root, so as root the
  commands run as the ``postgres`` user (``runuser``) in a folder it owns.

Both need the server binaries of the distribution packages (``rabbitmq-server``,
``postgresql``); :func:`rabbit_available` and :func:`postgres_available` tell.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import tempfile
import time
import uuid
from pathlib import Path

import aio_pika
import asyncpg

from tests.support.pipeline import free_port

RABBIT_SBIN = Path("/usr/lib/rabbitmq/bin")


# =========================================================================== RabbitMQ


def _rabbit_tool(name: str) -> str | None:
    # The /usr/sbin wrappers `su` to the rabbitmq user when run as root; the real
    # scripts run as whoever calls them, which keeps the node a child of the test.
    direct = RABBIT_SBIN / name
    if direct.exists():
        return str(direct)
    return shutil.which(name)


def rabbit_available() -> bool:
    return _rabbit_tool("rabbitmq-server") is not None and _rabbit_tool("rabbitmqctl") is not None


class OwnRabbit:
    """One RabbitMQ node, started in the foreground; ``guest``/``guest`` on 127.0.0.1."""

    def __init__(self, base: Path | None = None) -> None:
        self.id = uuid.uuid4().hex[:8]
        self.node = f"chaos-{self.id}@localhost"
        self.base = base or Path(tempfile.mkdtemp(prefix=f"chaos-rabbit-{self.id}-"))
        self.port = free_port()
        self.dist_port = free_port()
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.base),  # the node's and rabbitmqctl's .erlang.cookie
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq"),
            "RABBITMQ_PID_FILE": str(self.base / "rabbit.pid"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.base / "advanced.config"),
        }

    async def start(self, *, timeout: float = 60.0) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "enabled_plugins").write_text("[].\n")
        (self.base / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            "log.console = false\n"
            "log.file.level = warning\n"
        )
        (self.base / "advanced.config").write_text("[].\n")
        server = _rabbit_tool("rabbitmq-server")
        assert server is not None
        with (self.base / "server.out").open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                server,
                env=self._env(),
                cwd=str(self.base),
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        await self.wait_amqp(timeout=timeout)

    async def ctl(self, *args: str, timeout: float = 60.0) -> str:
        tool = _rabbit_tool("rabbitmqctl")
        assert tool is not None
        process = await asyncio.create_subprocess_exec(
            tool,
            "-n",
            self.node,
            *args,
            env=self._env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(process.communicate(), timeout)
        text = out.decode(errors="replace")
        if process.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {text[-2000:]}")
        return text

    async def wait_amqp(self, *, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process is not None and self.process.returncode is not None:
                log = (self.base / "server.out").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"RabbitMQ node {self.node} exited: {log}")
            try:
                connection = await aio_pika.connect(self.url, timeout=2)
                await connection.close()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.3)

    async def stop_app(self) -> None:
        """The node stays up, the broker inside it stops: every connection is cut."""
        await self.ctl("stop_app")

    async def start_app(self) -> None:
        await self.ctl("start_app")
        await self.wait_amqp()

    async def close(self) -> None:
        if self.process is None:
            return
        if self.process.returncode is None:
            with contextlib.suppress(Exception):
                await self.ctl("stop", timeout=30)
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                await self.process.wait()
        # Erlang helpers of this node (epmd is shared and stays).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        shutil.rmtree(self.base, ignore_errors=True)


# =========================================================================== PostgreSQL


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for folder in found:
        if (folder / "initdb").exists():
            return folder
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def postgres_available() -> bool:
    if _pg_bin() is None:
        return False
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return False
        return shutil.which("runuser") is not None
    return True


class OwnPostgres:
    """A throw-away PostgreSQL cluster with trust auth on a free port."""

    def __init__(self) -> None:
        self.id = uuid.uuid4().hex[:8]
        # Not under pytest's tmp_path: that is 0700 root, and the server may run as
        # the postgres user.
        self.base = Path(tempfile.mkdtemp(prefix=f"chaos-pg-{self.id}-"))
        self.data = self.base / "data"
        self.port = free_port()
        bin_dir = _pg_bin()
        assert bin_dir is not None, "no initdb/pg_ctl found"
        self.bin = bin_dir
        self._as: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.base, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    async def _run(self, *argv: str, timeout: float = 120.0) -> str:
        process = await asyncio.create_subprocess_exec(
            *self._as,
            *argv,
            cwd=str(self.base),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(process.communicate(), timeout)
        text = out.decode(errors="replace")
        if process.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({process.returncode}): {text[-2000:]}")
        return text

    def _options(self) -> str:
        return (
            f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 "
            "-c max_connections=300 -c shared_buffers=64MB"
        )

    async def _pg_ctl(self, action: str, *extra: str) -> str:
        return await self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.base / "server.log"),
            "-w",
            "-t",
            "60",
            *extra,
            action,
        )

    async def start(self) -> None:
        if not self.data.exists():
            await self._run(
                str(self.bin / "initdb"),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
                str(self.data),
            )
        await self._pg_ctl("start", "-o", self._options())
        await self.wait_ready()

    async def stop(self, mode: str = "fast") -> None:
        await self._pg_ctl("stop", "-m", mode)

    async def restart(self, mode: str = "fast") -> None:
        await self._pg_ctl("restart", "-m", mode, "-o", self._options())
        await self.wait_ready()

    async def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                conn = await asyncpg.connect(self.dsn(), timeout=2)
                await conn.close()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    async def create_database(self, name: str) -> str:
        conn = await asyncpg.connect(self.dsn())
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return self.url(name)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)
