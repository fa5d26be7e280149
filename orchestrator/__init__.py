"""The central service: lifecycle engine, registry, JWT roles, REST API, SPARQL endpoints, web view.

Never imports the station software or the MPU (they run at the hospitals and talk to it over HTTP); only
``local_platform`` and ``pht_cli`` use them together. See ``docs/architecture.md``. These names are what the
rest of the platform uses; the modules hold more.
"""

from .app import create_app
from .auth import issue_token
from .principal import Principal, Role
from .settings import DEMO_SECRET, STATION_TOKEN_TTL_S, Settings, SettingsError

__all__ = ["DEMO_SECRET", "Principal", "Role", "STATION_TOKEN_TTL_S", "Settings", "SettingsError", "create_app",
           "issue_token"]
