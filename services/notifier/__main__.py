"""``python -m services.notifier``: run the notifier service until SIGINT/SIGTERM."""

import asyncio

from services.notifier.main import create_app

asyncio.run(create_app().run())
