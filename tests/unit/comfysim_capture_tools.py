"""Helpers to replay real ComfyUI captures against comfysim and compare the results.

The captures (``comfysim/data/captures/*.json``, copies of
``/work/shared/comfyui-captures``) hold requests, replies and websocket
transcripts of a real ComfyUI 0.3.64. The helpers here:

* :func:`load_capture` reads one;
* :func:`assert_same_shape` compares two JSON values structurally (same key sets,
  same list lengths, same scalar types; ``int`` and ``float`` are distinct);
* :func:`normalize` renames run-specific strings (prompt ids, client ids, file
  counters) so values can be compared;
* :func:`ws_signature` reduces a websocket transcript to the facts that must match
  (event order, types, node ids, states, queue counts, binary frame kinds);
* :class:`WsRecorder` records a live comfysim websocket in the captures' format.
"""

from __future__ import annotations

import asyncio
import json
import re
import struct
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import aiohttp

import comfysim

CAPTURE_DIR = Path(comfysim.__file__).parent / "data" / "captures"
SHARED_CAPTURE_DIR = Path("/work/shared/comfyui-captures")
OBJECT_INFO_FILE = Path(comfysim.__file__).parent / "data" / "object_info.json"

#: List-valued keys whose length legitimately differs (server stack traces).
LOOSE_LIST_KEYS = frozenset({"traceback"})
_COUNTER = re.compile(r"_\d{5}_")


def load_capture(prefix: str) -> dict[str, Any]:
    """Load the capture whose file name starts with ``prefix`` (e.g. ``"01"``)."""
    matches = sorted(CAPTURE_DIR.glob(f"{prefix}*.json"))
    assert matches, f"no capture {prefix!r} in {CAPTURE_DIR}"
    data: dict[str, Any] = json.loads(matches[0].read_text(encoding="utf-8"))
    return data


def capture_files() -> list[Path]:
    """All bundled capture files."""
    return sorted(CAPTURE_DIR.glob("*.json"))


# --------------------------------------------------------------------------- structure


def type_name(value: Any) -> str:
    """JSON type of a scalar (``bool`` before ``int``: bool is an int in Python)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "dict"
    return type(value).__name__


def assert_same_shape(
    expected: Any,
    actual: Any,
    path: str = "$",
    loose_list_keys: Iterable[str] = LOOSE_LIST_KEYS,
) -> None:
    """Assert ``actual`` has the structure of ``expected`` (recursively)."""
    loose = frozenset(loose_list_keys)
    exp_t, act_t = type_name(expected), type_name(actual)
    assert exp_t == act_t, f"{path}: expected {exp_t}, got {act_t} ({actual!r:.200})"
    if isinstance(expected, dict):
        assert set(expected) == set(actual), (
            f"{path}: keys differ: missing {sorted(set(expected) - set(actual))}, "
            f"extra {sorted(set(actual) - set(expected))}"
        )
        for key in expected:
            assert_same_shape(expected[key], actual[key], f"{path}.{key}", loose)
    elif isinstance(expected, list):
        key = path.rsplit(".", 1)[-1]
        if key in loose:
            for i, item in enumerate(actual):
                if expected:
                    assert type_name(item) == type_name(expected[0]), f"{path}[{i}]"
            return
        assert len(expected) == len(actual), (
            f"{path}: expected {len(expected)} items, got {len(actual)}: {actual!r:.300}"
        )
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            assert_same_shape(e, a, f"{path}[{i}]", loose)


def normalize(value: Any, names: dict[str, str] | None = None) -> Any:
    """Rename run-specific strings (keys and values) and file counters."""
    names = names or {}

    def fix(text: str) -> str:
        text = names.get(text, text)
        for old, new in names.items():
            if old and old in text:
                text = text.replace(old, new)
        return _COUNTER.sub("_NNNNN_", text)

    if isinstance(value, dict):
        return {fix(k): normalize(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v, names) for v in value]
    if isinstance(value, str):
        return fix(value)
    return value


def strip_keys(value: Any, keys: Iterable[str]) -> Any:
    """Drop the given keys everywhere (e.g. timestamps, tracebacks) for value equality."""
    drop = frozenset(keys)
    if isinstance(value, dict):
        return {k: strip_keys(v, drop) for k, v in value.items() if k not in drop}
    if isinstance(value, list):
        return [strip_keys(v, drop) for v in value]
    return value


# --------------------------------------------------------------------------- websocket


def json_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Server->client JSON frames of a transcript (``{"type", "data"}`` objects)."""
    return [
        m["msg"]
        for m in messages
        if m.get("kind") == "json" and m.get("direction", "server->client") == "server->client"
    ]


def frames(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Server->client frames (JSON and binary), notes removed."""
    return [
        m
        for m in messages
        if m.get("kind") in ("json", "binary")
        and m.get("direction", "server->client") == "server->client"
    ]


def _signature(frame: dict[str, Any]) -> tuple[Any, ...]:
    if frame["kind"] == "binary":
        if frame["event_type"] == 1:
            return ("binary", 1, frame["image_format_code"])
        return ("binary", frame["event_type"], frame["metadata"].get("image_type"))
    msg = frame["msg"]
    kind = msg["type"]
    data = msg.get("data") or {}
    if kind == "status":
        return (kind, data["status"]["exec_info"]["queue_remaining"], "sid" in data)
    if kind == "execution_cached":
        return (kind, tuple(sorted(data["nodes"])))
    if kind == "executing":
        return (kind, data["node"], "prompt_id" in data)
    if kind == "progress_state":
        return (
            kind,
            tuple(
                (nid, st["state"], st["value"], st["max"], type_name(st["value"]))
                for nid, st in data["nodes"].items()
            ),
        )
    if kind == "progress":
        return (kind, data["node"], data["value"], data["max"])
    if kind == "executed":
        output = data.get("output") or {}
        return (kind, data["node"], len(output.get("images", [])))
    if kind == "execution_error":
        return (kind, data["node_id"], data["node_type"], data["exception_type"])
    if kind == "execution_interrupted":
        return (kind, data["node_id"], data["node_type"], tuple(sorted(data["executed"])))
    if kind == "feature_flags":
        return (kind, tuple(sorted(data)))
    return (kind,)


def ws_signature(messages: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The comparable essence of a transcript: one tuple per server frame."""
    return [_signature(f) for f in frames(messages)]


def assert_ws_like_capture(expected: list[dict[str, Any]], actual: list[dict[str, Any]]) -> None:
    """Same frame order/kinds/details, and every JSON frame has the captured shape."""
    exp_sig, act_sig = ws_signature(expected), ws_signature(actual)
    assert act_sig == exp_sig, "websocket transcript differs:\n" + "\n".join(
        f"{'  ' if e == a else '!!'} exp={e!r:.150}\n   act={a!r:.150}"
        for e, a in zip(
            exp_sig + [None] * len(act_sig), act_sig + [None] * len(exp_sig), strict=False
        )
        if e is not None or a is not None
    )
    for e, a in zip(frames(expected), frames(actual), strict=True):
        if e["kind"] == "json":
            assert_same_shape(e["msg"], a["msg"], f"$ws[{e['msg']['type']}]")
        elif e["event_type"] == 4:
            assert set(e["metadata"]) == set(a["metadata"])


def decode_binary(data: bytes) -> dict[str, Any]:
    """Describe a binary frame like the captures do."""
    (event_type,) = struct.unpack(">I", data[:4])
    out: dict[str, Any] = {"kind": "binary", "length": len(data), "event_type": event_type}
    if event_type == 1:
        (code,) = struct.unpack(">I", data[4:8])
        out.update(image_format_code=code, image_magic_hex=data[8:16].hex(), image=data[8:])
    elif event_type == 4:
        (meta_len,) = struct.unpack(">I", data[4:8])
        meta = json.loads(data[8 : 8 + meta_len])
        image = data[8 + meta_len :]
        out.update(
            metadata_length=meta_len,
            metadata=meta,
            image_magic_hex=image[:8].hex(),
            image=image,
        )
    return out


class WsRecorder:
    """Record a comfysim websocket in the captures' transcript format."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        ws_url: str,
        client_id: str | None = None,
        feature_flags: bool = False,
    ) -> None:
        self.session = session
        self.url = ws_url + (f"?clientId={client_id}" if client_id else "")
        self.feature_flags = feature_flags
        self.messages: list[dict[str, Any]] = []
        self.closed = asyncio.Event()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def __aenter__(self) -> WsRecorder:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the socket (and send the feature-flag handshake when asked)."""
        self.ws = await self.session.ws_connect(self.url)
        if self.feature_flags:
            flags = {"type": "feature_flags", "data": {"supports_preview_metadata": True}}
            self.messages.append({"kind": "json", "direction": "client->server", "msg": flags})
            await self.ws.send_json(flags)
        self._task = asyncio.create_task(self._read())
        await self.wait_for(lambda m: m.get("kind") == "json" and m["msg"]["type"] == "status")

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for msg in self.ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    self.messages.append({"kind": "json", "msg": json.loads(msg.data)})
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    self.messages.append(decode_binary(msg.data))
                self._changed.set()
        finally:
            self.closed.set()
            self._changed.set()

    @property
    def sid(self) -> str:
        """The ``sid`` of the first status frame."""
        return str(json_messages(self.messages)[0]["data"]["sid"])

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0
    ) -> dict[str, Any]:
        """Wait until a recorded frame satisfies ``predicate`` and return it."""
        async with asyncio.timeout(timeout):
            while True:
                for message in self.messages:
                    if predicate(message):
                        return message
                if self.closed.is_set():
                    raise ConnectionError("websocket closed while waiting")
                self._changed.clear()
                await self._changed.wait()

    async def wait_done(self, prompt_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """Wait for ``executing`` with ``node: null`` for ``prompt_id``."""
        return await self.wait_for(
            lambda m: (
                m.get("kind") == "json"
                and m["msg"]["type"] == "executing"
                and m["msg"]["data"].get("node") is None
                and m["msg"]["data"].get("prompt_id") == prompt_id
            ),
            timeout,
        )

    async def wait_event(self, event: str, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
        """Wait for a JSON frame of type ``event`` whose data has ``fields``."""
        return await self.wait_for(
            lambda m: (
                m.get("kind") == "json"
                and m.get("direction", "server->client") == "server->client"
                and m["msg"]["type"] == event
                and all(m["msg"]["data"].get(k) == v for k, v in fields.items())
            ),
            timeout,
        )

    def types(self) -> list[str]:
        """Types of the JSON frames received so far."""
        return [m["type"] for m in json_messages(self.messages)]

    async def close(self) -> None:
        """Close the socket and stop reading."""
        if self.ws is not None:
            await self.ws.close()
        if self._task is not None:
            await asyncio.wait([self._task], timeout=2)


# --------------------------------------------------------------------------- HTTP


def content_type(resp: aiohttp.ClientResponse) -> str:
    """The raw ``Content-Type`` header, ``""`` when absent (as in the captures)."""
    return resp.headers.get("Content-Type", "")


async def replay(
    session: aiohttp.ClientSession, base_url: str, request: dict[str, Any]
) -> tuple[int, str, Any]:
    """Send a captured request; returns (status, content type, JSON body or text or bytes)."""
    kwargs: dict[str, Any] = {}
    if "json_body" in request:
        kwargs["json"] = request["json_body"]
    elif "raw_body" in request:
        kwargs["data"] = request["raw_body"]
    async with session.request(request["method"], base_url + request["path"], **kwargs) as resp:
        raw = await resp.read()
        ctype = content_type(resp)
        body: Any = raw
        if ctype.startswith("application/json"):
            body = json.loads(raw)
        elif ctype.startswith("text/"):
            body = raw.decode()
        return resp.status, ctype, body
