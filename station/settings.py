"""Settings of one station: who it is, where the central service and its data are, what it may run."""

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dataspace import ConsumerSettings

from .runtimes.base import Limits


class StationSettingsError(ValueError):
    """A setting is missing or malformed; ``str(e)`` names it."""


@dataclass(frozen=True)
class StationSettings:
    """Everything the agent needs. ``datasets`` maps a registered dataset id to its folder on this host."""

    station_id: str
    central_url: str
    token: str
    datasets: Mapping[str, Path]
    state_dir: Path
    objects_url: str
    runtime: str = "docker"
    policy_file: Path | None = None
    poll_interval_s: float = 1.0
    limits: Limits = field(default_factory=Limits)
    max_attempts: int = 2          #: runs interrupted by an agent crash are retried this often, then failed
    mpu_url: str | None = None     #: the station's metadata processing unit (events are posted there)
    mpu_ingest_token: str | None = None  #: the MPU's ingest token (``PHT_MPU_INGEST_TOKEN``), sent with every event
    lease_s: float = 30.0          #: the station's lease lasts this long unless renewed (one agent per station)
    podman_url: str | None = None  #: runtime "podman": its Docker-compatible API (default its root socket)
    kubernetes_namespace: str | None = None  #: runtime "kubernetes": where the train Jobs run
    kubernetes_image_refs: Path | None = None  #: runtime "kubernetes": JSON file, image ID -> registry reference
    kubeconfig: Path | None = None  #: runtime "kubernetes" outside a cluster: its configuration file (KUBECONFIG)
    token_file: Path | None = None  #: where ``token`` came from (``PHT_STATION_TOKEN_FILE``); renewed tokens go there
    #: the station's own key directory (``PHT_STATION_KEYS_DIR``: ``signing.pem``, ``encryption.pem``, as
    #: ``pht station enroll`` wrote them): it opens the inputs encrypted to it and signs what it did
    keys_dir: Path | None = None
    #: ``PHT_STATION_REGISTRY_AUTH``: a Docker ``config.json`` with this station's (read-only) credentials per
    #: registry host, used to pull train images by digest (``station/image_registry.py``); None: the agent user's
    #: own ``docker login``, if any, else anonymous
    registry_auth_file: Path | None = None
    #: ``PHT_STATION_DSP_*``: this station's data-space identity (participant id, callback URL, trusted issuer and
    #: its key, identity token file, listen address), used to obtain a data-space train's inputs
    #: (``station/dataspace_inputs.py``); None: the station runs no data-space train
    dataspace: ConsumerSettings | None = None
    #: ``PHT_STATION_DESCRIPTION``: the admin's description of the datasets (JSON, the MPU's ``POST /description``
    #: form: variables with units and code systems); None: described from the CSV headers (``input_check.py``)
    description_file: Path | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "StationSettings":
        """Read ``PHT_STATION_*`` variables (see docs/station.md); datasets as ``id=/path,id2=/path2``."""
        def need(name: str) -> str:
            value = environ.get(name, "").strip()
            if not value:
                raise StationSettingsError(f"{name} is not set")
            return value

        datasets: dict[str, Path] = {}
        for pair in need("PHT_STATION_DATASETS").split(","):
            did, sep, folder = pair.partition("=")
            if not sep or not did.strip() or not folder.strip():
                raise StationSettingsError(f"PHT_STATION_DATASETS: {pair!r} is not id=/path")
            datasets[did.strip()] = Path(folder.strip())
        policy = environ.get("PHT_STATION_POLICY", "").strip()

        def seconds(name: str, default: str) -> float:
            try:
                return float(environ.get(name, default))
            except ValueError:
                raise StationSettingsError(f"{name} is not a number of seconds") from None

        interval = seconds("PHT_STATION_POLL_INTERVAL", "1.0")
        token_file = Path(tf) if (tf := environ.get("PHT_STATION_TOKEN_FILE", "").strip()) else None
        if token_file is not None and not environ.get("PHT_STATION_TOKEN", "").strip():
            try:
                token = token_file.read_text().strip()
            except OSError as e:
                raise StationSettingsError(f"PHT_STATION_TOKEN_FILE: cannot read {token_file}: {e.strerror}") from None
            if not token:
                raise StationSettingsError(f"PHT_STATION_TOKEN_FILE: {token_file} is empty; write a station token "
                                           "into it (pht token issue --role station)")
        else:
            token = need("PHT_STATION_TOKEN")
        state_dir = Path(need("PHT_STATION_STATE_DIR"))
        try:
            dataspace = ConsumerSettings.from_env(environ, "PHT_STATION_DSP_", state_dir / "dataspace-connector")
        except ValueError as e:
            raise StationSettingsError(str(e)) from None
        return cls(station_id=need("PHT_STATION_ID"), central_url=need("PHT_CENTRAL_URL"),
                   token=token, token_file=token_file, datasets=datasets, state_dir=state_dir, dataspace=dataspace,
                   objects_url=need("PHT_OBJECTS_URL"), runtime=environ.get("PHT_STATION_RUNTIME", "docker"),
                   policy_file=Path(policy) if policy else None, poll_interval_s=interval,
                   mpu_url=environ.get("PHT_MPU_URL") or None,
                   mpu_ingest_token=environ.get("PHT_MPU_INGEST_TOKEN") or None,
                   description_file=Path(d) if (d := environ.get("PHT_STATION_DESCRIPTION", "").strip()) else None,
                   lease_s=seconds("PHT_STATION_LEASE_S", "30"),
                   podman_url=environ.get("PHT_PODMAN_URL") or None,
                   kubernetes_namespace=environ.get("PHT_K8S_NAMESPACE") or None,
                   kubernetes_image_refs=Path(refs) if (refs := environ.get("PHT_K8S_IMAGE_REFS")) else None,
                   kubeconfig=Path(kube) if (kube := environ.get("KUBECONFIG")) else None,
                   keys_dir=Path(kd) if (kd := environ.get("PHT_STATION_KEYS_DIR", "").strip()) else None,
                   registry_auth_file=Path(ra) if (ra := environ.get("PHT_STATION_REGISTRY_AUTH", "").strip())
                   else None)

    def check(self) -> None:
        """Refuse settings that cannot work, before the agent touches anything."""
        if not self.datasets:
            raise StationSettingsError("the station holds no dataset")
        for did, folder in self.datasets.items():
            if not folder.is_dir():
                raise StationSettingsError(f"dataset {did}: {folder} is not a folder")
        if self.registry_auth_file is not None and not self.registry_auth_file.is_file():
            raise StationSettingsError(f"PHT_STATION_REGISTRY_AUTH: {self.registry_auth_file} is not a file")
        if self.policy_file is not None and not self.policy_file.is_file():
            raise StationSettingsError(f"station policy {self.policy_file} is not a file")
        if not 1 <= self.lease_s <= 3600:
            raise StationSettingsError(f"PHT_STATION_LEASE_S must be 1 to 3600 seconds, not {self.lease_s:g}")
