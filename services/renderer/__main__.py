"""``python -m services.renderer``: run the renderer service until SIGINT/SIGTERM."""

import asyncio

from services.renderer.main import create_app

asyncio.run(create_app().run())
