"""``python -m dataspace``: one participant's connector, configured by ``PHT_DSP_*`` (``_settings.py``);
``python -m dataspace identity ...``: the credential issuer's commands (``_identity_cli.py``); ``python -m dataspace
obtain ...``: a consumer obtaining one dataset (``_obtain_cli.py``)."""

from __future__ import annotations

import sys

import uvicorn

from graph_store import EmbeddedStore, tune_garbage_collection

from . import Connector, connector_app
from ._admin import admin_router
from ._identity_cli import identity_main
from ._obtain_cli import obtain_main
from ._settings import ServiceSettings


def main() -> None:
    """Read the settings (exit 1 with one sentence if they are wrong), open the store, serve."""
    try:
        settings = ServiceSettings.from_env()
    except ValueError as e:
        print(f"dataspace connector: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    store = EmbeddedStore(settings.store_path)
    store.load_vocabulary()
    token_file = settings.identity_token_file
    connector = Connector(settings.connector, store, trusted=settings.trusted,
                          identity_token=lambda: token_file.read_text(encoding="utf-8").strip())
    app = connector_app(connector)
    app.include_router(admin_router(connector, settings.admin_token))
    tune_garbage_collection()
    try:
        uvicorn.run(app, host="0.0.0.0", port=settings.port)
    finally:
        connector.close()
        store.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["identity"]:
        raise SystemExit(identity_main(sys.argv[2:]))
    if sys.argv[1:2] == ["obtain"]:
        raise SystemExit(obtain_main(sys.argv[2:]))
    main()
