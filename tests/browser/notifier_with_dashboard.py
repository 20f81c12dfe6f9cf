"""The notifier with the ops dashboard registered, for the browser test.

``register_dashboard`` is idempotent, so this works both before and after
``services/notifier/main.py`` wires the dashboard in itself: every notifier runtime built
in this process gets it as soon as it is constructed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from shared import runtime as runtime_module

_original_init = runtime_module.ServiceRuntime.__init__


def _init_with_dashboard(self: runtime_module.ServiceRuntime, name: str, *a: Any, **k: Any) -> None:
    _original_init(self, name, *a, **k)
    if name == "notifier":
        from services.notifier.dashboard import register_dashboard

        register_dashboard(self)


runtime_module.ServiceRuntime.__init__ = _init_with_dashboard  # type: ignore[method-assign]

if __name__ == "__main__":
    from services.notifier.main import create_app

    asyncio.run(create_app().run())
