"""``python -m services.archiver``: run the archiver service until SIGINT/SIGTERM."""

import asyncio

from services.archiver.main import create_app

asyncio.run(create_app().run())
