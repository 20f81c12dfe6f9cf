"""``python -m services.ingest``: run the ingest service until SIGINT/SIGTERM."""

import asyncio

from services.ingest.main import create_app

asyncio.run(create_app().run())
