"""Station software: the agent that runs trains at a data-holding station under its administrator's control.

A top-level package of its own (not in ``orchestrator/`` or ``station_mpu/``) because it runs at the
hospital, next to the data, and must not import the central service. See ``docs/architecture.md``.

These names are what the rest of the platform (``local_platform``, ``pht_cli``) uses; the modules hold more.
"""

from .agent import Holding, LeaseLost, LeaseRefused, StationAgent, quiet_request_logs, release
from .approvals import ApprovalLedger, ApprovedCode, differences
from .archive import ArchiveError, extract
from .consent_ledger import SpentRow, open_consent_ledger
from .encryption import READER_KEYS_FILE, EncryptionRefused, SignedReaders, fetch_opened, readers_for, signed_readers
from .images import build_train_image
from .objects import LocalObjectStore, ObjectStoreError, fetch_unpacked, object_store_from_url
from .policy import PolicyError, StationPolicy, load_policy
from .records import RecordSigner, SignerUnavailable
from .runtimes.base import Limits, Runtime, RuntimeFailure
from .runtimes.factory import CONTAINER_ENGINES, make_runtime
from .runtimes.process import DEFAULT_PATH, ProcessRuntime, default_unisolated_path, folder_digest
from .settings import StationSettings, StationSettingsError
from .signed_requests import KeyPins, RequestRefused, SignedRequest, verify_work

__all__ = [
    "ApprovalLedger",
    "ApprovedCode",
    "ArchiveError",
    "CONTAINER_ENGINES",
    "DEFAULT_PATH",
    "EncryptionRefused",
    "Holding",
    "KeyPins",
    "LeaseLost",
    "LeaseRefused",
    "Limits",
    "LocalObjectStore",
    "ObjectStoreError",
    "PolicyError",
    "ProcessRuntime",
    "READER_KEYS_FILE",
    "RecordSigner",
    "RequestRefused",
    "Runtime",
    "RuntimeFailure",
    "SignedReaders",
    "SignedRequest",
    "SignerUnavailable",
    "SpentRow",
    "StationAgent",
    "StationPolicy",
    "StationSettings",
    "StationSettingsError",
    "build_train_image",
    "default_unisolated_path",
    "differences",
    "extract",
    "fetch_opened",
    "fetch_unpacked",
    "folder_digest",
    "load_policy",
    "make_runtime",
    "object_store_from_url",
    "open_consent_ledger",
    "quiet_request_logs",
    "readers_for",
    "release",
    "signed_readers",
    "verify_work",
]
