"""Run a train as a locked-down container through the Docker Engine API (Docker, or Podman's compatible API).

Why each setting is there (``docs/runtimes.md`` has the full table):

* the container is created from the **image ID** (``sha256:`` of the image config), never from the tag: the
  ID is what the admin approved, and a re-tag between :meth:`DockerRuntime.check_image` and
  :meth:`DockerRuntime.run` cannot swap the image. Offline-built images (``docker build``/``docker import``
  without a registry) have no ``RepoDigest``, so the image ID is the only digest every station has;
* no network (``network_mode="none"``: only a loopback of its own), read-only root file system, uid/gid
  10001, every capability dropped, ``no-new-privileges``, no IPC with the host (``ipc_mode="none"``: no
  ``/dev/shm`` either), memory with no swap on top, CPU share, a process limit, a small ``/tmp`` tmpfs;
  the dataset, the inputs and the parameters are bind mounts marked read-only; the Docker socket is never
  mounted and the container is never privileged;
* the output folder is a **named volume backed by a size-limited tmpfs**, so a train cannot fill the
  host's disk. Docker unmounts (and so loses) a tmpfs volume as soon as the last container using it
  stops, and ``get_archive`` on the stopped train container then sees a fresh, empty tmpfs (measured on
  Docker 20.10 and Podman 4.3). A *keeper* container (the same image, ``sleep infinity``, same
  restrictions, the volume mounted read-only, tiny limits) therefore holds the volume mounted from before
  the train starts until the output has been copied out of it with ``get_archive``;
* the copied output is checked member by member before it touches the host (:mod:`.output`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import docker
import docker.errors
import requests.exceptions
from docker.models.containers import Container
from docker.types import LogConfig, Mount, Ulimit

from station import contract
from station.runtimes.base import ImageRefused, RunResult, RunSpec, RuntimeFailure
from station.runtimes.output import OutputRejected, empty_folder, extract_tar

LABEL = "pht.execution"          #: label on every container and volume of a run: its execution name
ROLE_LABEL = "pht.role"          #: ``train``, ``keeper`` or ``output``
KEEPER_COMMAND = ("sleep", "infinity")
KEEPER_MEMORY = 16 * 1024**2
OUTPUT_HEADROOM = 1024**2        #: tmpfs is this much larger than the limit, so exceeding it is *seen*
OUTPUT_INODES = 10_000           #: files + folders in the output (tmpfs inodes cost kernel memory)
NOFILE = 1024                    #: open files per process

log = logging.getLogger(__name__)

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,100}")
_API_ERRORS = (docker.errors.APIError, requests.exceptions.ConnectionError)


def check_digest(digest: str) -> None:
    """Only full image IDs: Docker also resolves ID *prefixes*, which would weaken the pin."""
    if not _DIGEST.fullmatch(digest):
        raise ImageRefused(f"{digest!r} is not an image digest of the form sha256:<64 hex digits>.")


def check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise RuntimeFailure(f"execution name {name!r} is not usable as a container name")


class _ChunkStream(io.RawIOBase):
    """A read-only file object over an iterator of byte chunks (``get_archive`` streams the tar)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size


class DockerRuntime:
    """Docker Engine API runtime; ``base_url`` may point at Podman's API socket (``podman system service``)."""

    name = "docker"

    def __init__(
        self,
        client: docker.DockerClient | None = None,
        base_url: str | None = None,
        *,
        ipc_mode: str = "none",
        ulimits: Sequence[Ulimit] | None = None,
        keeper_command: Sequence[str] = KEEPER_COMMAND,
    ) -> None:
        """``ulimits`` default: ``nofile`` 1024 and ``nproc`` 4096. They are set explicitly because Podman
        running as root otherwise raises them to its own maxima, which fails where the engine lacks
        CAP_SYS_RESOURCE (``error setting rlimit type 7: operation not permitted``). ``nproc`` counts every
        process of uid 10001 on the host, so the per-container limit is ``pids_limit``, not this."""
        if client is None:
            client = docker.DockerClient(base_url=base_url) if base_url else docker.from_env()
        self.client = client
        self.ipc_mode = ipc_mode
        self.ulimits = list(ulimits) if ulimits is not None else [
            Ulimit(name="nofile", soft=NOFILE, hard=NOFILE), Ulimit(name="nproc", soft=4096, hard=4096)]
        self.keeper_command = list(keeper_command)
        self._podman: bool | None = None

    # ------------------------------------------------------------------ images

    def check_image(self, image: str, digest: str) -> None:
        """Refuse unless the local image called ``image`` has exactly the image ID ``digest``."""
        check_digest(digest)
        try:
            local = self.client.images.get(image)
        except docker.errors.ImageNotFound:
            raise ImageRefused(f"Image {image} is not present on this station.") from None
        except _API_ERRORS as exc:
            raise RuntimeFailure(f"the container engine did not answer: {exc}") from exc
        if local.id != digest:
            raise ImageRefused(f"Image {image} here is {local.id}, not the approved {digest}.")

    def _image_by_id(self, digest: str) -> None:
        check_digest(digest)
        try:
            local = self.client.images.get(digest)
        except docker.errors.ImageNotFound:
            raise ImageRefused(f"No image with ID {digest} is present on this station.") from None
        except _API_ERRORS as exc:
            raise RuntimeFailure(f"the container engine did not answer: {exc}") from exc
        if local.id != digest:  # cannot happen for a full ID; belt and braces
            raise ImageRefused(f"Image ID {digest} resolved to {local.id}.")

    @property
    def is_podman(self) -> bool:
        """Podman's API takes the tmpfs size as ``nr_blocks`` (it claims ``size=`` for XFS quotas)."""
        if self._podman is None:
            components = self.client.version().get("Components") or []
            self._podman = any("podman" in str(c.get("Name", "")).lower() for c in components)
        return self._podman

    # ------------------------------------------------------------------ running

    def run(self, spec: RunSpec) -> RunResult:
        """Run the train to completion; train failures come back in the result, engine failures raise."""
        check_name(spec.name)
        self._image_by_id(spec.image_digest)
        self._check_host_paths(spec)
        spec.output_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        try:
            self.discard(spec.name)  # what an earlier, crashed attempt of this execution left
            volume = self._create_output_volume(spec)
            keeper = self._start_keeper(spec, volume)
            train = self._create_train(spec, volume)
            train.start()
            return self._wait_and_collect(spec, train, keeper, started)
        except docker.errors.ImageNotFound as exc:
            raise ImageRefused(f"No image with ID {spec.image_digest} is present on this station.") from exc
        except _API_ERRORS as exc:
            raise RuntimeFailure(f"the container engine failed running {spec.name}: {exc}") from exc
        finally:
            try:
                self.discard(spec.name)
            except _API_ERRORS as exc:  # do not hide the run's own exception; leftovers() will list it
                log.warning("could not remove the containers of %s: %s", spec.name, exc)

    def _check_host_paths(self, spec: RunSpec) -> None:
        for path, kind in ((spec.dataset_dir, "dataset folder"), (spec.input_dir, "input folder")):
            if path is not None and not Path(path).is_dir():
                raise RuntimeFailure(f"{kind} {path} does not exist")
        if not Path(spec.params_file).is_file():
            raise RuntimeFailure(f"parameter file {spec.params_file} does not exist")

    def _labels(self, spec: RunSpec, role: str) -> dict[str, str]:
        return {LABEL: spec.name, ROLE_LABEL: role}

    def _locked_down(self) -> dict[str, object]:
        """Settings train and keeper share."""
        return {
            "user": f"{contract.TRAIN_UID}:{contract.TRAIN_UID}",
            "network_mode": "none",
            "read_only": True,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "privileged": False,
            "ipc_mode": self.ipc_mode,
            "ulimits": self.ulimits,
            "hostname": "train",
        }

    def _create_output_volume(self, spec: RunSpec) -> str:
        size = spec.limits.output_bytes + OUTPUT_HEADROOM
        if self.is_podman:
            size_option = f"nr_blocks={math.ceil(size / os.sysconf('SC_PAGE_SIZE'))}"
        else:
            size_option = f"size={size}"
        options = (f"{size_option},nr_inodes={OUTPUT_INODES},uid={contract.TRAIN_UID},gid={contract.TRAIN_UID},"
                   "mode=0700,nosuid,nodev,noexec")
        volume = self.client.volumes.create(
            name=f"{spec.name}-output", driver="local",
            driver_opts={"type": "tmpfs", "device": "tmpfs", "o": options},
            labels=self._labels(spec, "output"))
        return str(volume.name)

    def _start_keeper(self, spec: RunSpec, volume: str) -> Container:
        keeper = self.client.containers.create(
            spec.image_digest, entrypoint=self.keeper_command, command=[], name=f"{spec.name}-keeper",
            labels=self._labels(spec, "keeper"),
            mounts=[Mount(contract.OUTPUT_DIR, volume, type="volume", read_only=True)],
            mem_limit=KEEPER_MEMORY, memswap_limit=KEEPER_MEMORY, nano_cpus=100_000_000, pids_limit=4,
            log_config=LogConfig(type="json-file", config={"max-size": "64k"}),
            **self._locked_down())
        try:
            keeper.start()
        except docker.errors.APIError as exc:
            raise RuntimeFailure(f"the output keeper ({' '.join(self.keeper_command)}) could not start in image "
                                 f"{spec.image_digest}; train images need that command: {exc}") from exc
        return keeper

    def _create_train(self, spec: RunSpec, volume: str) -> Container:
        limits = spec.limits
        mounts = [
            Mount(contract.DATA_DIR, str(Path(spec.dataset_dir).resolve()), type="bind", read_only=True),
            Mount(contract.PARAMS_FILE, str(Path(spec.params_file).resolve()), type="bind", read_only=True),
            Mount(contract.OUTPUT_DIR, volume, type="volume", read_only=False),
        ]
        tmpfs = {contract.WORK_DIR: f"rw,noexec,nosuid,nodev,size={limits.tmp_bytes},mode=1777"}
        if spec.input_dir is not None:
            mounts.append(Mount(contract.INPUT_DIR, str(Path(spec.input_dir).resolve()), type="bind", read_only=True))
        else:
            tmpfs[contract.INPUT_DIR] = "ro,noexec,nosuid,nodev,size=4k"
        log_size = max(2 * limits.log_bytes, 64 * 1024)  # json-file overhead; two files keep >= the tail we report
        return self.client.containers.create(
            spec.image_digest,
            entrypoint=list(spec.entrypoint) if spec.entrypoint else None,
            name=spec.name,
            labels=self._labels(spec, "train"),
            environment=dict(spec.environment),
            mounts=mounts,
            tmpfs=tmpfs,
            mem_limit=limits.memory_bytes,
            memswap_limit=limits.memory_bytes,  # equal: no swap on top of the memory limit
            nano_cpus=int(limits.cpus * 1e9),
            pids_limit=limits.pids,
            log_config=LogConfig(type="json-file", config={"max-size": str(log_size), "max-file": "2"}),
            **self._locked_down())

    def _wait_and_collect(self, spec: RunSpec, train: Container, keeper: Container, started: float) -> RunResult:
        limits = spec.limits
        try:
            train.wait(timeout=limits.timeout_s)
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            train.reload()
            if train.status not in ("running", "created"):
                raise  # the engine went away, not a slow train
            with contextlib.suppress(docker.errors.APIError):  # 409 if it ended just now: killed either way
                train.kill()
            train.wait(timeout=30)
            return RunResult(exit_code=None, logs=self._logs(train, limits.log_bytes),
                             failure=f"The train exceeded the time limit of {limits.timeout_s:g} s.",
                             duration_s=time.monotonic() - started)
        train.reload()
        state = train.attrs["State"]
        exit_code = int(state.get("ExitCode", -1))
        logs = self._logs(train, limits.log_bytes)
        failure: str | None = None
        memory = f"{limits.memory_bytes / 1024**2:g} MiB"
        if state.get("OOMKilled"):
            failure = f"The train ran out of memory (limit {memory})."
        elif exit_code == 128 + 9:
            # Podman 4.3 on cgroup v1 never sets OOMKilled (measured); we did not kill it, so the OOM killer did.
            failure = (f"The train was killed by SIGKILL (exit code 137): it most likely ran out of memory "
                       f"(limit {memory}); the engine did not say.")
        elif exit_code != contract.EXIT_OK:
            failure = f"The train exited with code {exit_code}."
        else:
            failure = self._collect_output(spec, keeper)
        return RunResult(exit_code=exit_code, failure=failure, logs=logs, duration_s=time.monotonic() - started)

    def _collect_output(self, spec: RunSpec, keeper: Container) -> str | None:
        """Copy the output out of the keeper; None, or the failure (then ``output_dir`` is left empty)."""
        keeper.reload()
        if keeper.status != "running":
            return ("The output could not be collected: the keeper container "
                    f"({' '.join(self.keeper_command)}) stopped; the image needs that command.")
        chunks, _ = keeper.get_archive(contract.OUTPUT_DIR)
        try:
            extract_tar(io.BufferedReader(_ChunkStream(chunks), 1024 * 1024), spec.output_dir,
                        max_bytes=spec.limits.output_bytes, strip=Path(contract.OUTPUT_DIR).name)
        except OutputRejected as exc:
            empty_folder(spec.output_dir)
            return f"The output was refused: {exc}."
        return None

    @staticmethod
    def _logs(container: Container, limit: int) -> bytes:
        try:
            return bytes(container.logs(stdout=True, stderr=True))[-limit:]
        except docker.errors.APIError:
            return b""

    # ------------------------------------------------------------------ clean-up

    def discard(self, name: str) -> None:
        """Remove every container and volume labelled with execution ``name``; silent if there are none."""
        selector = {"label": f"{LABEL}={name}"}
        # sparse: no per-container inspect, which fails when another agent removes its container meanwhile
        for container in self.client.containers.list(all=True, filters=selector, sparse=True):
            try:
                container.remove(force=True, v=False)
            except docker.errors.NotFound:
                pass
        for volume in self.client.volumes.list(filters=selector):
            try:
                volume.remove(force=True)
            except docker.errors.NotFound:
                pass

    def leftovers(self) -> list[str]:
        """Execution names that still have a container or volume (after a crash; :meth:`discard` them)."""
        selector = {"label": LABEL}
        containers = self.client.containers.list(all=True, filters=selector, sparse=True)
        names = {(c.attrs.get("Labels") or {}).get(LABEL, "") for c in containers}
        names |= {(v.attrs.get("Labels") or {}).get(LABEL, "") for v in self.client.volumes.list(filters=selector)}
        return sorted(n for n in names if n)
