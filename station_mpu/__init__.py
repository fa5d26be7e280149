"""The station's metadata processing unit (MPU): what a station tells the central graph, and nothing more.

The station agent posts its events (lifecycle steps, rejections, errors, log digests) to the MPU; the MPU
samples the running train containers (Docker stats), turns everything into triples of the project vocabulary
validated by the shapes, applies the station admin's filter policy (RDF, reloaded when it changes), and pushes
what may leave -- in signed batches, through an on-disk outbox -- to the station's own named graph in the
central store. See ``docs/mpu.md``.

Never imports the station software or the orchestrator (they run elsewhere); shared code is in ``graph_store``.
"""

from ._events import (
    DatasetDescription,
    Event,
    EventAdapter,
    EventTriples,
    StationDescription,
    VariableDescription,
    description_triples,
    event_kinds,
    event_triples,
    log_digest,
)
from ._mpu import IngestResult, InvalidEvents, Mpu, apply_policy, validated
from ._naming import Naming
from ._outbox import Outbox, OutboxError, OutboxFull
from ._policy import Filtered, Policy, PolicyError, Rule, TripleDecision, coarsen, load_policy, read_policy
from ._push import BatchSequence, Pusher, PushResult, load_private_key
from ._sampler import EXECUTION_LABEL, DockerSampler, UsageReading
from ._secret import SecretError, StationSecret
from ._settings import DEFAULT_POLICY, MpuSettings, MpuSettingsError
from .app import create_mpu_app

__all__ = [
    "BatchSequence",
    "DEFAULT_POLICY",
    "DatasetDescription",
    "DockerSampler",
    "EXECUTION_LABEL",
    "Event",
    "EventAdapter",
    "EventTriples",
    "Filtered",
    "IngestResult",
    "InvalidEvents",
    "Mpu",
    "MpuSettings",
    "MpuSettingsError",
    "Naming",
    "Outbox",
    "OutboxError",
    "OutboxFull",
    "Policy",
    "PolicyError",
    "PushResult",
    "Pusher",
    "Rule",
    "SecretError",
    "StationDescription",
    "StationSecret",
    "TripleDecision",
    "UsageReading",
    "VariableDescription",
    "apply_policy",
    "coarsen",
    "create_mpu_app",
    "description_triples",
    "event_kinds",
    "event_triples",
    "load_policy",
    "load_private_key",
    "log_digest",
    "read_policy",
    "validated",
]
