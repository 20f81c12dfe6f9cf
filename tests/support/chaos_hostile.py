"""Hostile inputs, generated deterministically, and the ledger of what became of them.

Every generated input is *invalid by construction* (at least one part of it can never
be accepted), so the only right answer is a refusal with a reason. The building blocks:

* :data:`STRINGS`: path traversal (with a marker file name, so anything written
  outside the asset root can be found), oversize, bad unicode (lone surrogates, NUL,
  controls, bidi overrides), injection strings (SQL, shell, template, JNDI, HTML,
  CRLF, format strings);
* :data:`CONFUSED`: values of the wrong type;
* :data:`RAW_BODIES`: bytes that are not a JSON object at all.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import struct
import zlib
from collections import Counter
from typing import Any

from shared.events import SHOT_REQUEST_FIELDS, is_slug

#: Appears in every traversal string: no file or folder with it may exist anywhere.
MARKER = "pwned-7f3a9c"

TRAVERSAL = [
    f"../../../../tmp/{MARKER}",
    f"../{MARKER}",
    f"..\\..\\{MARKER}",
    f"/tmp/{MARKER}",
    f"%2e%2e%2f%2e%2e%2f{MARKER}",
    f"....//....//{MARKER}",
    f"a/../../{MARKER}",
    f"~/{MARKER}",
    f"file:///tmp/{MARKER}",
    f"\\\\server\\share\\{MARKER}",
    "..",
    ".",
    "/",
    "/etc/passwd",
    f"{MARKER}\x00.png",
]
OVERSIZE = ["a" * 65, "b" * 121, "c" * 201, "d" * 4001, "e" * 70_000, "-" * 64, "x" * 257]
BAD_UNICODE = [
    "\ud800",
    "abc\udfffdef",
    "\x00",
    "nul\x00byte",
    "\u202eevil\u202c",
    "zero\u200bwidth",
    "\ufeffbom",
    "\x1b[31mred",
    "line\nbreak",
    "tab\tbed",
    "\r\nX-Injected: 1",
    "\x7f\x80\x9f",
    "\uff21\uff44\uff4d\uff49\uff4e",  # fullwidth "Admin"
    "🎬💥",
    "e\u0301",
    "\uffff",
]
INJECTION = [
    "'; DROP TABLE jobs; --",
    '" OR 1=1 --',
    "' UNION SELECT password FROM api_keys --",
    "$(touch /tmp/" + MARKER + ")",
    "`id`",
    "{{7*7}}",
    "${jndi:ldap://127.0.0.1/a}",
    "<script>alert(1)</script>",
    "%s%s%s%n",
    "{0.__class__.__mro__}",
    "__proto__",
    "admin'--",
    "\\",
    "null",
    "NaN",
    "*",
    "#",
    "job.#",
    "ledger.#",
    "Kai Nakamura; DROP",
    "kai nakamura\x00",
]
STRINGS = TRAVERSAL + OVERSIZE + BAD_UNICODE + INJECTION
#: Strings that can never be a slug (project, episode … and template names).
NON_SLUGS = [s for s in STRINGS if not is_slug(s)]
CONFUSED: list[Any] = [
    0,
    -1,
    1.5,
    1e308,
    2**64,
    True,
    None,
    [],
    {},
    ["a"],
    {"$gt": ""},
    {"name": {"$ne": None}},
    [[[[[]]]]],
    "",
]

RAW_BODIES: list[bytes] = [
    b"",
    b"{",
    b"}",
    b"\xff\xfe{}",
    b"\xc0\xaf",
    b'{"a": NaN}',
    b'{"a": Infinity}',
    b'{"a": 1e999}',
    b"[" * 5000,
    b'{"a":' * 40 + b"1" + b"}" * 40,
    b"\x00" * 64,
    b"\xef\xbb\xbf{}",
    b"null",
    b"1",
    b'"a string"',
    b"[]",
    b"true",
    b'{"project": "x"',
    b"<xml/>",
    b"project=neon-skies&prompt=x",
    b'{"request_id": "\xff"}',
    b"{'single': 'quotes'}",
    b'{"a": 1,}',
    b" " * 1000,
]


def oversize_body(size: int = 300 * 1024) -> bytes:
    return b'{"prompt": "' + b"x" * size + b'"}'


# --------------------------------------------------------------------------- shots


def base_shot(n: int) -> dict[str, Any]:
    return {
        "request_id": f"hostile-{n}",
        "project": "neon-skies",
        "episode": "ep01",
        "scene": "hostile",
        "shot": "shot-001",
        "characters": [{"name": "Kai Nakamura"}],
        "prompt": f"hostile input {n}",
        "template": "model-free",
        "params": {"width": 64, "height": 64},
        "priority": 5,
    }


def _fatal(rng: random.Random, body: dict[str, Any]) -> str:
    """One change no request can survive; returns what it was."""
    choice = rng.randrange(12)
    if choice == 0:
        body["project"] = rng.choice(NON_SLUGS + CONFUSED[:-1])
        return "project"
    if choice == 1:
        body["characters"] = [{"name": rng.choice(STRINGS)}]
        return "character name"
    if choice == 2:
        body["characters"] = rng.choice([*CONFUSED, [{"name": "Kai Nakamura", "id": "x"}]])
        return "characters type"
    if choice == 3:
        body[rng.choice(["episode", "scene", "shot"])] = rng.choice(NON_SLUGS + CONFUSED[:6])
        return "location segment"
    if choice == 4:
        body["template"] = rng.choice(NON_SLUGS + CONFUSED[:6])
        return "template"
    if choice == 5:
        body["params"] = rng.choice(
            [
                {"width": rng.choice([0, -8, 63, 4097, 1e308, "five", None, [512]])},
                {"steps": rng.choice([0, 151, -1, "twenty", []])},
                {"seed": rng.choice([-1, 2**64, "x", 1.5])},
                {"checkpoint": rng.choice(STRINGS[:20])} | {"width": 7},
                "params",
                [],
            ]
        )
        return "params"
    if choice == 6:
        body["priority"] = rng.choice([-1, 10, 99, "high", None, 5.5, [5]])
        return "priority"
    if choice == 7:
        body[rng.choice(STRINGS)] = rng.choice(STRINGS + CONFUSED)
        return "unknown field"
    if choice == 8:
        body["prompt"] = rng.choice(["p" * 4001, "\x00", "a\ud800b", 42, ["x"], {"$ne": 1}])
        return "prompt"
    if choice == 9:
        body.pop(rng.choice(["project", "characters", "request_id"]))
        return "missing field"
    if choice == 10:
        body["request_id"] = rng.choice(
            ["", "has space", "x" * 201, "\x00", "é", 42, None, ["a"], "tab\tid"]
        )
        return "request_id"
    body["characters"] = [{"name": "Kai Nakamura"}] * 9
    return "too many characters"


_FATAL_KEYS = {
    "project": {"project"},
    "character name": {"characters"},
    "characters type": {"characters"},
    "location segment": {"episode", "scene", "shot"},
    "template": {"template"},
    "params": {"params"},
    "priority": {"priority"},
    "prompt": {"prompt"},
    "missing field": {"project", "characters", "request_id"},
    "request_id": {"request_id"},
    "too many characters": {"characters"},
}


def _extra(rng: random.Random, body: dict[str, Any], why: str) -> None:
    """A further change that may or may not be valid on its own (never undoing the fatal one)."""
    keys = ["prompt", "negative_prompt", "episode", "scene", "shot", "request_id"]
    key = rng.choice([k for k in keys if k not in _FATAL_KEYS.get(why, set())])
    body[key] = rng.choice(STRINGS + CONFUSED)


def hostile_shots(count: int, *, seed: int, start: int = 0) -> list[tuple[dict[str, Any], str]]:
    """``count`` distinct invalid shot requests (body, what makes it invalid)."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[tuple[dict[str, Any], str]] = []
    n = start
    while len(out) < count:
        n += 1
        body = base_shot(n)
        why = _fatal(rng, body)
        for _ in range(rng.randrange(3)):
            _extra(rng, body, why)
        if why != "missing field" or "request_id" in body:
            body.setdefault("request_id", f"hostile-{n}")
        # Distinct as ingest sees it: the request fields only (its idempotency key).
        key = json.dumps(
            {k: v for k, v in body.items() if k in SHOT_REQUEST_FIELDS}, sort_keys=True, default=str
        )
        if key in seen:
            continue
        seen.add(key)
        out.append((body, why))
    return out


def hostile_headers(rng: random.Random) -> dict[str, Any]:
    """AMQP headers of odd types and sizes (the body decides the verdict)."""
    return rng.choice(
        [
            {"job_id": "not-a-uuid"},
            {"job_id": rng.choice([t for t in STRINGS if "\ud800" not in t and "\udfff" not in t])},
            {"job_id": bytearray(b"\xc0\xaf\xff")},
            {"event_type": "job.accepted"},
            {"x-delivery-count": 999},
            {"x-attempt": "../../1"},
            {"x-park-reason": "forged"},
            {"nested": {"a": {"b": {"c": [1, 2, {"d": None}]}}}},
            {"big": "h" * 60_000},
            {"bytes": bytearray(b"\x00\xff" * 100)},
            {
                "decimal": __import__("decimal").Decimal("1e-30"),
                "when": __import__("datetime").datetime(1970, 1, 1),
            },
            {"list": [1, "two", 3.0, None, True]},
            {k: k for k in (f"h{i}" for i in range(200))},
            {"unicode-\u202e": "\ud7ff"},
            {},
        ]
    )


# --------------------------------------------------------------------------- other bodies


def hostile_projects(count: int, *, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        body: dict[str, Any] = {"slug": rng.choice(NON_SLUGS + CONFUSED), "name": f"P{i}"}
        if rng.random() < 0.5:
            body["name"] = rng.choice(STRINGS + CONFUSED)
        if rng.random() < 0.3:
            body[rng.choice(STRINGS)] = 1
        out.append(body)
    return out


def hostile_characters(count: int, *, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        body: dict[str, Any] = {
            "name": f"Hostile {i}",
            "project": rng.choice(NON_SLUGS + CONFUSED[:6]),
            "definition": {"appearance": "x"},
        }
        if rng.random() < 0.5:
            body["name"] = rng.choice(STRINGS + CONFUSED)
        if rng.random() < 0.4:
            body["definition"] = rng.choice(
                [
                    {"lora": {"name": rng.choice(STRINGS), "strength": 99}},
                    {"prompt_fragments": [rng.choice(STRINGS)] * 60},
                    {"default_seed": -5},
                    {"appearance": "y" * 5000},
                    "definition",
                    [],
                ]
            )
        if rng.random() < 0.3:
            body["attributes"] = {rng.choice(STRINGS): rng.choice(STRINGS + CONFUSED)}
        out.append(body)
    return out


BAD_ATTRIBUTE_KEYS = [
    s for s in STRINGS if not re.match(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,119}$", s)
]


def hostile_attributes(count: int, *, seed: int) -> list[dict[str, Any]]:
    """Bodies for PUT /attributes: each has a key or a value no attribute may have."""
    rng = random.Random(seed)
    bad_keys = BAD_ATTRIBUTE_KEYS
    return [
        {
            "attributes": rng.choice(
                [
                    {rng.choice(bad_keys): "v"},
                    {"k": rng.choice(CONFUSED[:-1])},
                    {"k": "v" * 2001},
                    {f"k{j}": "v" for j in range(101)},
                    rng.choice(CONFUSED),
                ]
            )
        }
        for _ in range(count)
    ]


# --------------------------------------------------------------------------- queries


def hostile_queries(count: int, *, seed: int) -> list[tuple[str, dict[str, str]]]:
    """(path on ingest, query) pairs each with at least one parameter that cannot fit."""
    rng = random.Random(seed)
    text = [s for s in STRINGS if "\x00" not in s and "\ud800" not in s and "\udfff" not in s]
    out = []
    for _ in range(count):
        path = rng.choice(["/v1/jobs", "/v1/characters"])
        bad = rng.choice(
            [
                {"limit": rng.choice(["0", "-1", "201", "1e9", "ten", "", "1.5", "0x10"])},
                {"cursor": rng.choice([*text, "AAAA", "eyJ4IjoxfQ", "=" * 600])},
                {"project": rng.choice([s for s in text if not is_slug(s)])},
                {rng.choice(text)[:50] or "x": "1"},
                {"order": "sideways"} if path == "/v1/jobs" else {"q": "q" * 121},
                {"status": rng.choice(text)} if path == "/v1/jobs" else {"q": "line\nbreak"},
            ]
        )
        if rng.random() < 0.4:
            bad = {**bad, rng.choice(["limit", "project", "cursor"]): rng.choice(text)[:300]}
        out.append((path, bad))
    return out


def hostile_paths(count: int, *, seed: int) -> list[tuple[str, str]]:
    """(service, path) pairs whose path parameters can never name anything."""
    rng = random.Random(seed)
    from urllib.parse import quote

    # Never a slug (a project path would then be valid, and …/events would stream).
    text = [s for s in NON_SLUGS if "\ud800" not in s and "\udfff" not in s]
    templates = [
        ("ingest", "/v1/jobs/{x}"),
        ("ingest", "/v1/jobs/{x}/cancel"),
        ("ingest", "/v1/characters/{x}"),
        ("ingest", "/v1/characters/{x}/versions/1"),
        ("ingest", "/v1/projects/{x}"),
        ("ingest", "/v1/references/{x}"),
        ("notifier", "/v1/assets/{x}"),
        ("notifier", "/v1/assets/{x}/file"),
        ("notifier", "/v1/jobs/{x}/events"),
        ("notifier", "/v1/projects/{x}/assets"),
        ("notifier", "/v1/projects/{x}/events"),
        ("notifier", "/v1/dashboard/thumbnails/{x}"),
    ]
    out = []
    for _ in range(count):
        service, template = rng.choice(templates)
        value = rng.choice(text)
        segment = quote(value, safe="") if rng.random() < 0.7 else quote(value, safe="/.")
        out.append((service, template.replace("{x}", segment or "%20")))
    return out


def hostile_asset_queries(count: int, *, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    text = [s for s in STRINGS if "\ud800" not in s and "\udfff" not in s and "\x00" not in s]
    out = []
    for _ in range(count):
        out.append(
            rng.choice(
                [
                    {"limit": rng.choice(["0", "-1", "x", "99999", ""])},
                    {"since": rng.choice(text)},
                    {"until": rng.choice(["yesterday", "2026-13-45", "0"])},
                    {"cursor": rng.choice([*text, "AAAA"])},
                    {"episode": rng.choice([s for s in text if not is_slug(s)])},
                    {"character": "c" * 121},
                ]
            )
        )
    return out


# --------------------------------------------------------------------------- websocket


_WS_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_WS_EVENTS = re.compile(r"^[a-z_#*]+(\.[a-z0-9_#*-]+)*$")


def hostile_frames(count: int, *, seed: int) -> list[str | bytes]:
    """Client frames the notifier must answer with an error (none may subscribe)."""
    rng = random.Random(seed)
    text = [s for s in STRINGS if "\ud800" not in s and "\udfff" not in s]
    bad_ids = [s for s in text if not _WS_ID.match(s)]
    bad_events = [s for s in text if not _WS_EVENTS.match(s) or len(s) > 100]
    fixed: list[str | bytes] = [
        "",
        "{",
        "null",
        "[]",
        "42",
        '"subscribe"',
        "{'action': 'subscribe'}",
        '{"action": "subscribe"}',
        '{"action": "unsubscribe"}',
        '{"action": "subscribe", "events": "job.#", "since": 3}',
        '{"action": "subscribe", "job_id": "00000000-0000-0000-0000-000000000000", '
        '"project": "neon-skies"}',
        b"\x00\x01binary",
        "x" * 5000,  # larger than the 4096-byte frame limit: the socket is closed (1009)
    ]
    out: list[str | bytes] = []
    for _ in range(count):
        if rng.random() < 0.08:
            out.append(rng.choice(fixed))
            continue
        frame: dict[str, Any] = {"action": "subscribe"}
        choice = rng.randrange(8)
        if choice == 0:
            frame["action"] = rng.choice([*text, *CONFUSED])
            frame["project"] = "neon-skies"
        elif choice == 1:
            frame["job_id"] = rng.choice(text + CONFUSED[:-1])
        elif choice == 2:
            frame["project"] = rng.choice([s for s in text if not is_slug(s)] + CONFUSED[:-1])
        elif choice == 3:
            frame["events"] = rng.choice([*bad_events, "JOB.X", "a..b", 7, None])
            if frame["events"] is None:
                frame["events"] = ""
        elif choice == 4:
            frame["project"] = "neon-skies"
            frame["since"] = rng.choice([-1, "three", 1.5, -(2**70), [], {}, "1e3"])
        elif choice == 5:
            frame["id"] = rng.choice([*bad_ids, 1, [], ""])
            frame["project"] = "neon-skies"
        elif choice == 6:
            frame[rng.choice(text)[:40] or "x"] = 1
            frame["project"] = "neon-skies"
        else:
            frame = {"action": "unsubscribe", "id": rng.choice(CONFUSED)}
        out.append(json.dumps(frame))
    return out


# --------------------------------------------------------------------------- images


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, *, idat: bytes | None = None, crc_ok: bool = True) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    raw = idat if idat is not None else zlib.compress(b"\x00" + b"\x00\x00\x00" * width)
    chunk = _png_chunk(b"IHDR", header)
    if not crc_ok:
        chunk = chunk[:-4] + b"\x00\x00\x00\x00"
    return b"\x89PNG\r\n\x1a\n" + chunk + _png_chunk(b"IDAT", raw) + _png_chunk(b"IEND", b"")


def hostile_images(count: int, *, seed: int, valid_png: bytes) -> list[tuple[str, bytes]]:
    """(name, bytes) of files that must not be accepted as a reference image."""
    rng = random.Random(seed)
    bomb = png(100_000, 100_000, idat=zlib.compress(b"\x00" * 1000))
    kinds: list[tuple[str, bytes]] = [
        ("empty", b""),
        ("random bytes", bytes(rng.randrange(256) for _ in range(512))),
        ("png header only", b"\x89PNG\r\n\x1a\n"),
        ("truncated png", valid_png[: len(valid_png) // 2]),
        ("png bad crc", png(8, 8, crc_ok=False)),
        ("png bomb 100000x100000", bomb),
        ("png 5000x1", png(5000, 1)),
        ("png zero size", png(0, 0)),
        (
            "gif",
            b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;",
        ),
        ("bmp", b"BM" + b"\x00" * 60),
        ("svg", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'),
        ("html", b"<html><script>alert(1)</script></html>"),
        ("zip polyglot", valid_png + b"PK\x03\x04" + b"\x00" * 100),
        ("jpeg truncated", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"),
        ("webp garbage", b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 16),
        ("pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"),
        ("elf", b"\x7fELF" + b"\x00" * 60),
        ("json", b'{"image": "no"}'),
        ("too large", b"\x89PNG\r\n\x1a\n" + b"\x00" * (10 * 1024 * 1024 + 10)),
    ]
    out = []
    for i in range(count):
        name, data = kinds[i % len(kinds)]
        if name == "random bytes":
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 2048)))
        out.append((name, data))
    return out


# --------------------------------------------------------------------------- bookkeeping


@dataclasses.dataclass
class Tally:
    """How many hostile inputs of each category were sent and refused."""

    sent: Counter[str] = dataclasses.field(default_factory=Counter)
    refused: Counter[str] = dataclasses.field(default_factory=Counter)
    #: Refused with a plain-text 4xx instead of the JSON errors shape.
    plain: Counter[str] = dataclasses.field(default_factory=Counter)
    plain_examples: list[str] = dataclasses.field(default_factory=list)
    failures: list[str] = dataclasses.field(default_factory=list)

    def ok(self, category: str) -> None:
        self.sent[category] += 1
        self.refused[category] += 1

    def bad(self, category: str, what: str) -> None:
        self.sent[category] += 1
        if len(self.failures) < 200:
            self.failures.append(f"[{category}] {what[:400]}")

    @property
    def total(self) -> int:
        return sum(self.sent.values())

    def table(self) -> str:
        width = max((len(c) for c in self.sent), default=8)
        lines = [
            f"{'category'.ljust(width)}  {'sent':>6}  {'refused':>7}  {'of which plain-text':>19}"
        ]
        for category in sorted(self.sent):
            lines.append(
                f"{category.ljust(width)}  {self.sent[category]:>6}  {self.refused[category]:>7}"
                f"  {self.plain[category]:>19}"
            )
        lines.append(
            f"{'TOTAL'.ljust(width)}  {self.total:>6}  {sum(self.refused.values()):>7}"
            f"  {sum(self.plain.values()):>19}"
        )
        return "\n".join(lines)


#: Every hostile test adds to this; printed at the end of the run.
TALLY = Tally()
