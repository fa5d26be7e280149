"""One interface for every container runtime, so the agent does not care which one the station uses."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


class RuntimeFailure(Exception):
    """The runtime itself cannot do what was asked (engine down, image missing, digest differs)."""


class ImageRefused(RuntimeFailure):
    """The image is missing, or its digest is not the one the train definition (and the admin) approved."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one run; the defaults suit the example trains."""

    memory_bytes: int = 512 * 1024**2
    cpus: float = 1.0
    pids: int = 128
    timeout_s: float = 600.0
    output_bytes: int = 64 * 1024**2  #: the output folder cannot grow beyond this
    log_bytes: int = 1024**2          #: logs kept (the tail) and digested
    tmp_bytes: int = 64 * 1024**2     #: size of the scratch tmpfs at ``contract.WORK_DIR`` (counts as memory)


@dataclass(frozen=True)
class RunSpec:
    """What to run and with which data. Host paths; the runtime mounts them at the contract's paths."""

    name: str                       #: unique per execution (container name), so a restarted agent finds it
    image: str                      #: image name as given by the train definition
    image_digest: str               #: ``sha256:<64 hex>``: the image ID (config digest) the run must use
    dataset_dir: Path               #: mounted read-only at ``contract.DATA_DIR``
    input_dir: Path | None          #: mounted read-only at ``contract.INPUT_DIR`` (None: empty)
    params_file: Path               #: mounted read-only at ``contract.PARAMS_FILE``
    output_dir: Path                #: host folder that receives the output after the run (created empty)
    environment: Mapping[str, str]  #: from ``contract.run_environment``
    entrypoint: list[str] | None = None
    limits: Limits = field(default_factory=Limits)


@dataclass(frozen=True)
class RunResult:
    """How a run ended. ``failure`` is None on success, else one sentence for the graph."""

    exit_code: int | None
    failure: str | None
    logs: bytes                     #: the tail of stdout+stderr (at most ``limits.log_bytes``)
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.failure is None


class Runtime(Protocol):
    """A container runtime. Implementations: docker (and podman), kubernetes (Job spec), process."""

    name: str

    def check_image(self, image: str, digest: str) -> None:
        """Raise :class:`ImageRefused` unless ``image`` exists locally with exactly ``digest``."""

    def pull(self, reference: str, auth: Mapping[str, str] | None) -> None:
        """Fetch ``reference`` (``registry/repository@sha256:<manifest digest>``) from its registry with the
        station's credentials ``auth`` (None: anonymous), so that :meth:`check_image` finds it; never by tag.
        Raise :class:`ImageRefused` with one sentence when it cannot be fetched."""

    def run(self, spec: RunSpec) -> RunResult:
        """Run to completion under the spec's limits; never raises for a train's own failure."""

    def discard(self, name: str) -> None:
        """Remove what a run called ``name`` left behind (after a crash); no error if nothing is there."""

    def close(self) -> None:
        """Release what the runtime opened itself (an engine or API connection); a client given to it stays
        open for its owner."""
