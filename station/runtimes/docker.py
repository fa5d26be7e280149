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
  stops, and ``get_archive`` on a stopped container then sees a fresh, empty tmpfs (measured on Docker
  20.10 and Podman 4.3). So the output must be copied while the container still runs: **one container per
  run** whose PID 1 is the *keeper* (``sleep infinity``, from the image) and the train's own command (the
  image's ``ENTRYPOINT`` + ``CMD``, or ``RunSpec.entrypoint``) is started in it with ``exec``. An exec'd
  process is in the container's namespaces, cgroup (limits), seccomp profile and capability set, with
  ``no-new-privileges``; when it has exited the container is paused (Docker) and the output copied out
  with ``get_archive``; then the container and the volume are removed;
* the copied output is checked member by member before it touches the host (:mod:`.output`).
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
import secrets
import tarfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests.exceptions
from docker.types import LogConfig, Mount, Ulimit

from station import contract
from station.image_registry import parse_reference, pull_digest
from station.runtimes.base import ImageRefused, RunResult, RunSpec, RuntimeFailure
from station.runtimes.output import OutputRejected, empty_folder, extract_tar

LABEL = "pht.execution"          #: label on every container and volume of a run: its execution name
ROLE_LABEL = "pht.role"          #: ``train`` (the container) or ``output`` (its output volume)
KEEPER_COMMAND = ("sleep", "infinity")
OUTPUT_HEADROOM = 1024**2        #: tmpfs is this much larger than the limit, so exceeding it is *seen*
OUTPUT_INODES = 10_000           #: files + folders in the output (tmpfs inodes cost kernel memory)
NOFILE = 1024                    #: open files per process
EXIT_SIGKILL = 128 + 9

log = logging.getLogger(__name__)

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,100}")
_API_ERRORS = (docker.errors.APIError, requests.exceptions.ConnectionError)
_STREAM_ERRORS = (OSError, requests.exceptions.RequestException)
_READ_SIZE = 64 * 1024


def check_digest(digest: str) -> None:
    """Only full image IDs: Docker also resolves ID *prefixes*, which would weaken the pin."""
    if not _DIGEST.fullmatch(digest):
        raise ImageRefused(f"{digest!r} is not an image digest of the form sha256:<64 hex digits>.")


def check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise RuntimeFailure(f"execution name {name!r} is not usable as a container name")


def train_command(spec: RunSpec, config: Mapping[str, Any]) -> list[str]:
    """What ``docker run`` would run: ``spec.entrypoint`` (which, like ``--entrypoint``, drops the image's
    ``CMD``), else the image's ``ENTRYPOINT`` + ``CMD``."""
    if spec.entrypoint:
        return list(spec.entrypoint)
    command = [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
    if not command:
        raise ImageRefused(f"Image {spec.image_digest} has no command (neither ENTRYPOINT nor CMD) and the train "
                           "definition gives no entrypoint.")
    return command


class _ChunkStream(io.RawIOBase):
    """A read-only file object over an iterator of byte chunks (``get_archive`` streams the tar)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]  # io's readers pass these
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size


class _Tail:
    """Keeps the last ``limit`` bytes of everything appended (amortised: trims once it holds twice that)."""

    def __init__(self, limit: int) -> None:
        self.limit = max(limit, 0)
        self._data = bytearray()

    def append(self, data: bytes | memoryview) -> None:
        self._data += data
        if len(self._data) > 2 * self.limit:
            del self._data[:len(self._data) - self.limit]

    def value(self) -> bytes:
        return bytes(self._data[len(self._data) - self.limit:]) if len(self._data) > self.limit else bytes(self._data)


class _Demux:
    """Docker's multiplexed stream of a non-TTY exec: frames of an 8-byte header (stream, 0, 0, 0, payload
    size as big-endian uint32) and the payload. stdout and stderr go to one sink, in arrival order."""

    def __init__(self, sink: _Tail) -> None:
        self._sink = sink
        self._header = bytearray()
        self._left = 0  # payload bytes of the current frame still to come

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        pos = 0
        while pos < len(view):
            if self._left == 0:
                part = view[pos:pos + 8 - len(self._header)]
                self._header += part
                pos += len(part)
                if len(self._header) == 8:
                    self._left = int.from_bytes(self._header[4:8], "big")
                    self._header.clear()
                continue
            part = view[pos:pos + self._left]
            self._sink.append(part)
            pos += len(part)
            self._left -= len(part)


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
        process of uid 10001 on the host, so the per-container limit is ``pids_limit``, not this.
        ``keeper_command`` is the container's PID 1 (from the image), which holds the output volume mounted."""
        self._owns_client = client is None
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

    def pull(self, reference: str, auth: Mapping[str, str] | None) -> None:
        """Pull exactly this digest reference (``station/image_registry.py``); :meth:`check_image` then compares
        the pulled image's ID with the approved one."""
        parsed = parse_reference(reference)
        if parsed is None:
            raise ImageRefused(f"Image {reference} names no registry digest, and stations never pull by tag.")
        pull_digest(self.client, parsed, auth)

    def _image_config(self, digest: str) -> dict[str, Any]:
        """The ``Config`` of the image with exactly this ID (its command, working folder)."""
        check_digest(digest)
        try:
            attrs = self.client.api.inspect_image(digest)
        except docker.errors.ImageNotFound:
            raise ImageRefused(f"No image with ID {digest} is present on this station.") from None
        except _API_ERRORS as exc:
            raise RuntimeFailure(f"the container engine did not answer: {exc}") from exc
        if attrs.get("Id") != digest:  # cannot happen for a full ID; belt and braces
            raise ImageRefused(f"Image ID {digest} resolved to {attrs.get('Id')}.")
        return dict(attrs.get("Config") or {})

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
        config = self._image_config(spec.image_digest)
        command = train_command(spec, config)
        self._check_host_paths(spec)
        spec.output_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        container: str | None = None
        volume: str | None = None
        try:
            volume = self._create_output_volume(spec)
            try:
                container = self._create_container(spec, volume)
            except docker.errors.ImageNotFound:
                raise
            except docker.errors.APIError:
                # most likely the name is taken by what an earlier, crashed attempt of this execution left
                # (Docker says 409, Podman 500). The agent discards before each run, other callers may not:
                # discard once (that removes the volume just made as well: same label) and try again.
                self.discard(spec.name)
                volume = None
                volume = self._create_output_volume(spec)
                container = self._create_container(spec, volume)
            self._start(spec, container)
            return self._run_train(spec, container, command, config, started)
        except docker.errors.ImageNotFound as exc:
            raise ImageRefused(f"No image with ID {spec.image_digest} is present on this station.") from exc
        except _API_ERRORS as exc:
            raise RuntimeFailure(f"the container engine failed running {spec.name}: {exc}") from exc
        finally:
            self._remove(spec.name, container, volume)

    def _check_host_paths(self, spec: RunSpec) -> None:
        for path, kind in ((spec.dataset_dir, "dataset folder"), (spec.input_dir, "input folder")):
            if path is not None and not Path(path).is_dir():
                raise RuntimeFailure(f"{kind} {path} does not exist")
        if not Path(spec.params_file).is_file():
            raise RuntimeFailure(f"parameter file {spec.params_file} does not exist")

    def _labels(self, spec: RunSpec, role: str) -> dict[str, str]:
        return {LABEL: spec.name, ROLE_LABEL: role}

    def _create_output_volume(self, spec: RunSpec) -> str:
        """A fresh tmpfs volume; its name is new for every attempt, so a leftover can never be reused."""
        size = spec.limits.output_bytes + OUTPUT_HEADROOM
        if self.is_podman:
            size_option = f"nr_blocks={math.ceil(size / os.sysconf('SC_PAGE_SIZE'))}"
        else:
            size_option = f"size={size}"
        options = (f"{size_option},nr_inodes={OUTPUT_INODES},uid={contract.TRAIN_UID},gid={contract.TRAIN_UID},"
                   "mode=0700,nosuid,nodev,noexec")
        volume = self.client.api.create_volume(
            name=f"{spec.name}-output-{secrets.token_hex(4)}", driver="local",
            driver_opts={"type": "tmpfs", "device": "tmpfs", "o": options}, labels=self._labels(spec, "output"))
        return str(volume["Name"])

    def _create_container(self, spec: RunSpec, volume: str) -> str:
        """The run's one container: PID 1 is the keeper; the train is exec'd into it (:meth:`_run_train`)."""
        api = self.client.api
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
        host_config = api.create_host_config(
            mounts=mounts,
            tmpfs=tmpfs,
            network_mode="none",
            read_only=True,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            privileged=False,
            ipc_mode=self.ipc_mode,
            ulimits=self.ulimits,
            mem_limit=limits.memory_bytes,
            memswap_limit=limits.memory_bytes,  # equal: no swap on top of the memory limit
            nano_cpus=int(limits.cpus * 1e9),
            pids_limit=limits.pids + 1 if limits.pids > 0 else limits.pids,  # + the keeper
            log_config=LogConfig(type="none"),  # PID 1 prints nothing; the train's output is read from its exec
        )
        created = api.create_container(
            spec.image_digest,
            entrypoint=self.keeper_command,
            command=[],
            name=spec.name,
            user=f"{contract.TRAIN_UID}:{contract.TRAIN_UID}",
            hostname="train",
            environment=dict(spec.environment),
            labels=self._labels(spec, "train"),
            host_config=host_config,
            use_config_proxy=False,  # no proxy variables from the station's ~/.docker/config.json
        )
        return str(created["Id"])

    def _keeper_stopped(self) -> str:
        return (f"The output could not be collected: the container's keeper process ({' '.join(self.keeper_command)}, "
                "PID 1) stopped before the output was copied; the image needs that command.")

    def _start(self, spec: RunSpec, container: str) -> None:
        try:
            self.client.api.start(container)
        except docker.errors.APIError as exc:
            raise RuntimeFailure(f"the run's container could not start its keeper ({' '.join(self.keeper_command)}) "
                                 f"in image {spec.image_digest}; train images need that command: {exc}") from exc

    def _run_train(self, spec: RunSpec, container: str, command: list[str], config: Mapping[str, Any],
                   started: float) -> RunResult:
        api = self.client.api
        limits = spec.limits
        since = time.time() - 1  # for the engine's events (whole seconds may be rounded down)
        try:
            exec_id = str(api.exec_create(
                container, command, stdout=True, stderr=True, stdin=False, tty=False, privileged=False,
                user=f"{contract.TRAIN_UID}:{contract.TRAIN_UID}", environment=dict(spec.environment),
                workdir=config.get("WorkingDir") or None)["Id"])
        except docker.errors.APIError as exc:
            if not self._running(container):  # Docker says 409, Podman 500
                raise RuntimeFailure(f"the keeper ({' '.join(self.keeper_command)}) of the run's container stopped "
                                     f"at once in image {spec.image_digest}; train images need that command: "
                                     f"{exc}") from exc
            raise
        deadline = time.monotonic() + limits.timeout_s
        logs, ended = self._stream_exec(exec_id, deadline, limits.log_bytes)
        exit_code = self._exit_code(exec_id, deadline) if ended else None
        if exit_code is None:  # the container (so every process of the train) is killed by the removal
            return RunResult(exit_code=None, logs=logs,
                             failure=f"The train exceeded the time limit of {limits.timeout_s:g} s.",
                             duration_s=time.monotonic() - started)
        if exit_code == EXIT_SIGKILL:
            failure: str | None = self._sigkill_failure(spec, container, since)
        elif exit_code != contract.EXIT_OK:
            failure = f"The train exited with code {exit_code}."
        else:
            failure = self._collect_output(spec, container)
        return RunResult(exit_code=exit_code, failure=failure, logs=logs, duration_s=time.monotonic() - started)

    def _running(self, container: str) -> bool:
        return bool(self.client.api.inspect_container(container)["State"].get("Running"))

    def _stream_exec(self, exec_id: str, deadline: float, limit: int) -> tuple[bytes, bool]:
        """Start the exec and read its stdout and stderr until they end or the deadline passes; returns the
        tail of the output (at most ``limit`` bytes) and whether it ended before the deadline.

        Like docker-py's ``exec_start(socket=True)``, but read through the connection's *buffered* reader: the
        first output may already be buffered with the response headers, and reading the bare socket (as
        docker-py does) would lose it. The socket's timeout is the time left, so a silent train does not hit
        the client's read timeout and a train that runs too long is noticed on time."""
        api = self.client.api
        response = api._post_json(api._url("/exec/{0}/start", exec_id), data={"Tty": False, "Detach": False},
                                  headers={"Connection": "Upgrade", "Upgrade": "tcp"}, stream=True)
        tail = _Tail(limit)
        demux = _Demux(tail)
        try:
            api._raise_for_status(response)
            try:
                reader = response.raw._fp.fp  # http.client's buffered reader of the (hijacked) connection
                sock = reader.raw._sock
            except AttributeError as exc:  # e.g. ssh:// or a named pipe
                raise RuntimeFailure(f"the engine connection ({api.base_url}) gives no socket to read the train's "
                                     "output from; use a unix:// or tcp:// engine address") from exc
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return tail.value(), False
                sock.settimeout(remaining)
                try:
                    data = reader.read1(_READ_SIZE)
                except TimeoutError:
                    return tail.value(), False
                if not data:
                    return tail.value(), True
                demux.feed(data)
        except _STREAM_ERRORS as exc:
            if isinstance(exc, docker.errors.APIError):
                raise
            raise RuntimeFailure(f"the train's output stream from the engine broke off: {exc}") from exc
        finally:
            response.close()

    def _exit_code(self, exec_id: str, deadline: float) -> int | None:
        """The exec's exit code once the engine reports it ended (its output can end a little earlier, or much
        earlier if the train closed stdout and stderr); None if it still runs at the deadline."""
        delay = 0.005
        while True:
            info = self.client.api.exec_inspect(exec_id)
            if not info.get("Running"):
                if info.get("ExitCode") is None:
                    raise RuntimeFailure(f"the engine reported no exit code for the train: {info}")
                return int(info["ExitCode"])
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            time.sleep(min(delay, remaining))
            delay = min(2 * delay, 0.5)

    def _sigkill_failure(self, spec: RunSpec, container: str, since: float) -> str:
        """The train was SIGKILLed, and not by us (the time limit is handled before): the OOM killer, most
        likely. A container's ``State.OOMKilled`` says nothing about an exec'd process (it stays false while
        PID 1 runs, measured on Docker 20.10 and Podman 4.3); Docker emits an ``oom`` event for the
        container, Podman 4.3 on cgroup v1 does not."""
        memory = f"{spec.limits.memory_bytes / 1024**2:g} MiB"
        if not self.is_podman:
            try:
                events = self.client.api.events(since=f"{since:.9f}", until=f"{time.time():.9f}",
                                                filters={"container": container, "event": "oom"}, decode=True)
                try:
                    if any(True for _ in events):
                        return f"The train ran out of memory (limit {memory})."
                finally:
                    events.close()
            except _API_ERRORS as exc:  # the run's result does not depend on this detail
                log.warning("could not read the engine's events for %s: %s", spec.name, exc)
        return (f"The train was killed by SIGKILL (exit code 137): it most likely ran out of memory "
                f"(limit {memory}); the engine did not say.")

    def _collect_output(self, spec: RunSpec, container: str) -> str | None:
        """Copy the output out of the running container; None, or the failure (then ``output_dir`` is empty).

        Docker: the container is paused first (cgroup freezer), so whatever the train left running cannot
        change the output while it is copied, nor stop the keeper; a container that is not running cannot
        be paused (409). Podman 4.3 copies a *paused* container's volume with names that lost their folder
        (``/d/a`` instead of ``output/d/a``), so there the container keeps running and the keeper is checked
        after the copy instead."""
        api = self.client.api
        if not self.is_podman:
            try:
                api.pause(container)
            except docker.errors.APIError as exc:
                if exc.status_code == 409:
                    return self._keeper_stopped()
                raise
        chunks, _ = api.get_archive(container, contract.OUTPUT_DIR)
        try:
            extract_tar(io.BufferedReader(_ChunkStream(chunks), 1024 * 1024), spec.output_dir,
                        max_bytes=spec.limits.output_bytes, strip=Path(contract.OUTPUT_DIR).name)
        except OutputRejected as exc:
            empty_folder(spec.output_dir)
            return f"The output was refused: {exc}."
        except (tarfile.TarError, EOFError, *_STREAM_ERRORS) as exc:
            empty_folder(spec.output_dir)
            if isinstance(exc, docker.errors.APIError):
                raise
            raise RuntimeFailure(f"the output archive from the engine broke off: {exc}") from exc
        if self.is_podman and not self._running(container):
            empty_folder(spec.output_dir)  # the keeper stopped: the copy may have seen a fresh, empty volume
            return self._keeper_stopped()
        return None

    # ------------------------------------------------------------------ clean-up

    def _remove(self, name: str, container: str | None, volume: str | None) -> None:
        """Remove what this run created (the container is killed if it still runs); never raises."""
        try:
            if container is not None:
                try:
                    self.client.api.remove_container(container, force=True, v=True)
                except docker.errors.NotFound:
                    pass
            if volume is not None:
                try:
                    self.client.api.remove_volume(volume, force=True)
                except docker.errors.NotFound:
                    pass
        except _API_ERRORS as exc:  # do not hide the run's own exception; leftovers() will list it
            log.warning("could not remove the container or volume of %s: %s", name, exc)

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

    def close(self) -> None:
        """Close the engine client if this runtime opened it (an unclosed one leaks its socket)."""
        if self._owns_client:
            self.client.close()

    def leftovers(self) -> list[str]:
        """Execution names that still have a container or volume (after a crash; :meth:`discard` them)."""
        selector = {"label": LABEL}
        containers = self.client.containers.list(all=True, filters=selector, sparse=True)
        names = {(c.attrs.get("Labels") or {}).get(LABEL, "") for c in containers}
        names |= {(v.attrs.get("Labels") or {}).get(LABEL, "") for v in self.client.volumes.list(filters=selector)}
        return sorted(n for n in names if n)
