"""Run the central service: ``python -m orchestrator`` (settings from ``PHT_*`` environment variables; it
refuses to start without ``PHT_STORE_PATH`` or ``PHT_STORE_QUERY_URL`` unless ``PHT_STORE_IN_MEMORY=1``).

One process per embedded store (it holds the store's lock): uvicorn runs a single worker here.
"""

from __future__ import annotations

import os
import sys

import uvicorn

from graph_store import tune_garbage_collection

from .app import create_app
from .settings import Settings, SettingsError


def main() -> int:
    try:
        settings = Settings.from_env()
        app = create_app(settings)  # refuses to start without a store unless PHT_STORE_IN_MEMORY=1
    except SettingsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    host = os.environ.get("PHT_HOST", "127.0.0.1")
    port = int(os.environ.get("PHT_PORT", "8080"))
    tune_garbage_collection()
    uvicorn.run(app, host=host, port=port, log_level=os.environ.get("PHT_LOG_LEVEL", "warning"),
                timeout_graceful_shutdown=5)  # live web streams must not hold a shutdown up
    return 0


if __name__ == "__main__":
    sys.exit(main())
