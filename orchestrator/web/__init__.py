"""The built-in web view of the central service (``/ui``): server-rendered pages, live train pages.

``web_router(services)`` is included by ``orchestrator.app.create_app``; see ``routes.py``.
"""

from .routes import web_router

__all__ = ["web_router"]
