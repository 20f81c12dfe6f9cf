"""The client's single websocket to ``/ws``, kept alive in a background task.

Why one socket per client, and why a *fresh* clientId on every reconnect:

* Execution events go **only** to the socket registered under the prompt's
  ``client_id`` (trap 1), so the socket must be open before any ``POST /prompt``
  and its id must be the one we send.
* If we reconnected with the same id while the server still held the old
  connection, the old one's close would later delete the registration and the
  new socket would silently receive nothing (trap 10, capture 11). A new uuid per
  connection makes that impossible.
* Consequently, prompts submitted under an *earlier* id never send events to us
  again; the client notices through :attr:`EventSocket.generation` and polls
  history for them instead.

The server sends no heartbeat, so we let aiohttp ping (``heartbeat``): a
half-open TCP connection is then detected in seconds rather than never.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable

import aiohttp
import structlog
from pydantic import ValidationError

from .models import BinaryFrame, WsMessage, WsStatus, parse_binary_frame, parse_ws_text

log = structlog.get_logger(__name__)

MessageHandler = Callable[[WsMessage], None]
BinaryHandler = Callable[[BinaryFrame], None]
StateHandler = Callable[[bool], None]


class EventSocket:
    """Owns the websocket connection: connects, reads, reconnects, closes.

    Parsed text messages go to ``on_message``, parsed binary headers to
    ``on_binary`` (previews are not kept), and every connect/disconnect is
    reported to ``on_state`` so waiters can switch between listening and polling.
    Handlers run inside the reader task and must not block.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        ws_url: str,
        *,
        on_message: MessageHandler,
        on_state: StateHandler,
        on_binary: BinaryHandler | None = None,
        connect_timeout: float = 10.0,
        heartbeat: float | None = 20.0,
        reconnect_min: float = 0.2,
        reconnect_max: float = 5.0,
        max_msg_size: int = 64 * 1024 * 1024,
    ) -> None:
        self._session = session
        self._ws_url = ws_url
        self._on_message = on_message
        self._on_state = on_state
        self._on_binary = on_binary
        self._connect_timeout = connect_timeout
        self._heartbeat = heartbeat
        self._reconnect_min = reconnect_min
        self._reconnect_max = reconnect_max
        self._max_msg_size = max_msg_size
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._attempted = asyncio.Event()
        self._closing = False
        #: The clientId of the current connection (``None`` while disconnected).
        self.client_id: str | None = None
        #: Incremented on every successful connection; 0 before the first one.
        self.generation = 0
        #: Why the last connection attempt or connection failed (for errors/logs).
        self.last_error: str | None = None

    # ------------------------------------------------------------------ state

    @property
    def connected(self) -> bool:
        """Whether a connection is open right now."""
        return self._connected.is_set()

    async def wait_connected(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a connection; return whether there is one."""
        if self._connected.is_set():
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._connected.wait()
        except TimeoutError:
            return False
        return True

    async def wait_first_attempt(self) -> bool:
        """Wait for the outcome of the first connection attempt; return whether it
        connected. Bounded by the connect timeout of that attempt."""
        await self._attempted.wait()
        return self._connected.is_set()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the background connect/read/reconnect loop."""
        if self._task is None:
            self._closing = False
            self._task = asyncio.create_task(self._run(), name=f"comfyui-ws {self._ws_url}")

    async def close(self) -> None:
        """Stop reconnecting, close the connection and wait for the reader to end."""
        self._closing = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def drop(self) -> None:
        """Close the current connection as if the network dropped it (tests, ops).

        The loop reconnects with a fresh clientId.
        """
        if self._ws is not None:
            await self._ws.close()

    # ------------------------------------------------------------------ loop

    async def _run(self) -> None:
        delay = self._reconnect_min
        while not self._closing:
            connected = False
            try:
                connected = await self._connect_and_read()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let the reader die: it is our only ear
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("comfyui.ws.error", url=self._ws_url, error=self.last_error)
            finally:
                self._attempted.set()
            if self._closing:
                break
            # Back off exponentially only while we cannot connect; a connection that
            # was up and dropped is retried quickly (waiters poll meanwhile).
            pause = self._reconnect_min if connected else delay
            delay = self._reconnect_min if connected else min(delay * 2, self._reconnect_max)
            await asyncio.sleep(pause)

    async def _connect_and_read(self) -> bool:
        client_id = uuid.uuid4().hex
        ws: aiohttp.ClientWebSocketResponse | None = None
        try:
            async with asyncio.timeout(self._connect_timeout):
                ws = await self._session.ws_connect(
                    self._ws_url,
                    params={"clientId": client_id},
                    heartbeat=self._heartbeat,
                    max_msg_size=self._max_msg_size,
                    # No Origin header: the server's CSRF guard answers 403 when
                    # Host is loopback and Origin names another host.
                    origin=None,
                )
                sid = await self._read_hello(ws, client_id)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.info("comfyui.ws.connect_failed", url=self._ws_url, error=self.last_error)
            if ws is not None:
                with contextlib.suppress(Exception):
                    await ws.close()
            return False

        self._ws = ws
        self.client_id = sid
        self.generation += 1
        self.last_error = None
        self._connected.set()
        self._attempted.set()
        log.info("comfyui.ws.connected", url=self._ws_url, client_id=sid, gen=self.generation)
        self._on_state(True)
        try:
            await self._read(ws)
        finally:
            self._connected.clear()
            self.client_id = None
            self._ws = None
            with contextlib.suppress(Exception):
                await ws.close()
            log.info("comfyui.ws.disconnected", url=self._ws_url, client_id=sid)
            self._on_state(False)
        return True

    async def _read_hello(self, ws: aiohttp.ClientWebSocketResponse, client_id: str) -> str:
        """Read frames until the first ``status``; return the sid the server uses.

        The server registers the socket under ``sid``; it equals our clientId, but
        the protocol says to use ``sid``, so we do.
        """
        while True:
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.TEXT:
                parsed = self._parse_text(msg.data)
                if isinstance(parsed, WsStatus):
                    return parsed.data.sid or client_id
                if parsed is not None:
                    self._on_message(parsed)
            elif msg.type is aiohttp.WSMsgType.BINARY:
                self._handle_binary(msg.data)
            else:
                raise aiohttp.ClientError(f"websocket closed during handshake ({msg.type.name})")

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                parsed = self._parse_text(msg.data)
                if parsed is not None:
                    self._dispatch(parsed)
            elif msg.type is aiohttp.WSMsgType.BINARY:
                self._handle_binary(msg.data)
            elif msg.type is aiohttp.WSMsgType.ERROR:
                self.last_error = f"websocket error: {ws.exception()!r}"
                break

    def _parse_text(self, data: str) -> WsMessage | None:
        try:
            return parse_ws_text(data)
        except (ValueError, ValidationError) as exc:
            # A malformed frame must not take the socket down; the prompt's
            # outcome is re-read from /history anyway.
            log.warning("comfyui.ws.bad_frame", error=str(exc)[:300], frame=data[:200])
            return None

    def _dispatch(self, message: WsMessage) -> None:
        try:
            self._on_message(message)
        except Exception:
            log.exception("comfyui.ws.handler_failed", type=message.type)

    def _handle_binary(self, data: bytes) -> None:
        try:
            frame = parse_binary_frame(data)
        except (ValueError, UnicodeDecodeError) as exc:
            log.debug("comfyui.ws.bad_binary_frame", error=str(exc), size=len(data))
            return
        if self._on_binary is not None:
            try:
                self._on_binary(frame)
            except Exception:
                log.exception("comfyui.ws.binary_handler_failed")
