"""Remove server file paths from text ComfyUI sends us (protocol trap 13).

Execution errors carry Python tracebacks and exception messages written on the
server: ``File "/home/render/ComfyUI/execution.py", line 496`` or ``cannot identify
image file '/srv/ComfyUI/input/x.png'``. Those paths reveal the backend's layout
(user names, mount points) and make otherwise identical errors look different, so
everything we surface (logs, ``job.failed`` events, exceptions) goes through
:func:`strip_paths` first.

A path is shortened to what is still useful for diagnosis: the part after
``site-packages/`` (``PIL/Image.py``) or else only the file name (``execution.py``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# A path starts with a separator, a Windows drive (``C:\``), a home ``~`` or a
# placeholder such as ``<COMFYUI_ROOT>`` (the captures replace real roots with
# those), followed by one or more ``/segment`` parts. The look-behind keeps
# fractions ("1/2"), relative names ("a/b") and URLs ("http://x/y") intact.
_PATH_RE = re.compile(
    r"""
    (?<![\w.:/\\<>])                       # not in the middle of a word, URL or path
    (?:[A-Za-z]:|~|<[A-Z_]+>)?             # optional drive, home or placeholder
    (?:[\\/][^\\/\s'"<>()\[\],:;]+)+        # one or more /segments
    """,
    re.VERBOSE,
)
_PACKAGE_DIRS = ("site-packages", "dist-packages")


def _shorten(match: re.Match[str]) -> str:
    path = match.group(0)
    parts = [p for p in re.split(r"[\\/]", path) if p]
    if len(parts) < 2 and not path.startswith(("<", "~")) and ":" not in path[:2]:
        # A single "/segment" (e.g. "/prompt" in a message) is not a file system
        # path worth hiding; leave it readable.
        return path
    for marker in _PACKAGE_DIRS:
        if marker in parts:
            tail = parts[parts.index(marker) + 1 :]
            if tail:
                return "/".join(tail)
    return parts[-1] if parts else path


def strip_paths(text: str) -> str:
    """Return ``text`` with every absolute file path reduced to its useful tail."""
    return _PATH_RE.sub(_shorten, text)


def strip_paths_all(lines: Iterable[str]) -> list[str]:
    """Apply :func:`strip_paths` to each line (tracebacks come as lists of strings)."""
    return [strip_paths(line) for line in lines]
