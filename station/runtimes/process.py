"""Run a train folder as a local process: for development and the no-Docker demo, never for real patient data.

Here an "image" is a **train folder**: the same folder ``docker build`` turns into the train image (a
``Dockerfile`` plus the train's files). Its digest is :func:`folder_digest`. The command is the
Dockerfile's exec-form ``ENTRYPOINT`` + ``CMD`` (or ``RunSpec.entrypoint``), run in a copy of the folder that
is mounted read-only at the Dockerfile's ``WORKDIR``.

With bubblewrap (``bwrap``) the process gets the contract's view: only ``/usr`` (and the ``/bin``, ``/lib*``
links), the dataset, inputs and parameters read-only, the output folder writable, a small ``/tmp``, new
network/IPC/PID/UTS namespaces (no network: only its own loopback), no capabilities, uid 10001, a clean
environment, killed with its parent. Limits are rlimits (address space, file size, CPU seconds, processes,
open files), a wall-clock timeout that kills the process group, and a watchdog on the output folder's size.
Without bwrap the train runs with the same rlimits but **no isolation**, and the runtime says so loudly. It
then runs on the host as the station's own software would: arguments naming the Dockerfile's ``WORKDIR`` point
at the host copy of the folder, the contract's path variables at host folders, and the station's Python
environment comes first on ``PATH`` (so a Python train finds numpy, a dependency of the station software, on a
machine without a system numpy). As root it drops to uid 10001 when that user can run this Python, else it
runs as the station's user and says so.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import re
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath

from station import contract
from station.runtimes.base import ImageRefused, RunResult, RunSpec, RuntimeFailure
from station.runtimes.output import OutputRejected, copy_tree, empty_folder, tree_size

log = logging.getLogger(__name__)

NO_ISOLATION = ("bubblewrap (bwrap) not found: the process runtime runs trains with rlimits only and NO "
                "ISOLATION (network, files and other processes are reachable); use it for development only, "
                "and install bubblewrap (apt-get install bubblewrap) to sandbox trains")
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: read-only extras the dynamic loader and Debian's alternatives (libblas for numpy) need
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/alternatives")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
POLL_S = 0.05
NOFILE = 1024

_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,100}")


class IsolationWarning(UserWarning):
    """The process runtime cannot isolate trains here (no bubblewrap)."""


# ---------------------------------------------------------------------------- train folders


class _HashWriter(io.RawIOBase):
    def __init__(self) -> None:
        self.hash = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]  # only fed bytes (hashing an archive)
        self.hash.update(data)
        return len(data)


def folder_digest(folder: Path) -> str:
    """``sha256:`` of a deterministic tar of the folder: what the admin approves for the process runtime.

    The tar (PAX format) holds every entry below ``folder`` sorted by relative path, with mtime 0, uid/gid 0,
    no owner names, mode 0755 for folders and executable files and 0644 for the others: content, names and
    the executable bit count, timestamps and owners do not. Symlinks and special files are refused
    (:class:`ImageRefused`), so the digest covers exactly what runs.
    """
    if not folder.is_dir():
        raise ImageRefused(f"Train folder {folder} does not exist.")
    entries: list[tuple[str, Path, os.stat_result]] = []
    for current, dirs, files in os.walk(folder, followlinks=False):
        for name in dirs + files:
            path = Path(current) / name
            info = path.lstat()
            if not (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)):
                raise ImageRefused(f"Train folder {folder} contains {path.relative_to(folder)}, "
                                   "which is neither a file nor a folder.")
            entries.append((path.relative_to(folder).as_posix(), path, info))
    sink = _HashWriter()
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as archive:
        for relative, path, info in sorted(entries, key=lambda e: e[0]):
            member = tarfile.TarInfo(relative)
            member.mtime = 0
            member.uid = member.gid = 0
            member.uname = member.gname = ""
            if stat.S_ISDIR(info.st_mode):
                member.type, member.mode = tarfile.DIRTYPE, 0o755
                archive.addfile(member)
            else:
                member.mode = 0o755 if info.st_mode & 0o111 else 0o644
                member.size = info.st_size
                with open(path, "rb") as content:
                    archive.addfile(member, content)
    return "sha256:" + sink.hash.hexdigest()


@dataclass(frozen=True)
class TrainCommand:
    """What a train folder runs: argv, in ``workdir`` (where the folder is mounted)."""

    workdir: str
    argv: list[str]


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the final stage, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in dockerfile.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    if pending:
        logical.append(pending)
    result: list[tuple[str, str]] = []
    for line in logical:
        keyword, _, rest = line.strip().partition(" ")
        if not keyword:
            continue
        if keyword.upper() == "FROM":
            result = []
        result.append((keyword.upper(), rest.strip()))
    return result


def train_command(folder: Path) -> TrainCommand:
    """Read WORKDIR and the exec-form (JSON) ENTRYPOINT/CMD of the folder's Dockerfile."""
    dockerfile = folder / "Dockerfile"
    if not dockerfile.is_file():
        raise ImageRefused(f"Train folder {folder} has no Dockerfile.")
    workdir = "/"
    entrypoint: list[str] = []
    cmd: list[str] = []
    for keyword, args in _instructions(dockerfile):
        if keyword == "WORKDIR":
            workdir = str(PurePosixPath(workdir) / args)
        elif keyword in ("ENTRYPOINT", "CMD"):
            try:
                value = json.loads(args)
            except json.JSONDecodeError:
                value = None
            if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                raise ImageRefused(f"{dockerfile}: {keyword} must be in exec form (a JSON list of strings).")
            entrypoint, cmd = (value, cmd) if keyword == "ENTRYPOINT" else (entrypoint, value)
    argv = entrypoint + cmd
    if not argv:
        raise ImageRefused(f"{dockerfile} has neither ENTRYPOINT nor CMD.")
    reserved = ("/pht", "/usr", "/proc", "/dev", "/tmp")
    if workdir == "/" or any(workdir == r or workdir.startswith(r + "/") for r in reserved):
        raise ImageRefused(f"{dockerfile}: WORKDIR {workdir} cannot hold the train folder.")
    return TrainCommand(workdir=workdir, argv=argv)


# ---------------------------------------------------------------------------- limits


def _set_limit(kind: int, value: int) -> None:
    """Lower a limit (soft = hard); never try to raise it above the current hard limit."""
    _, hard = resource.getrlimit(kind)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(kind, (value, value))


def _preexec(spec: RunSpec, *, limit_nproc: bool, drop_to_train_uid: bool) -> Callable[[], None]:
    limits = spec.limits
    cpu_seconds = math.ceil(limits.timeout_s * max(limits.cpus, 1.0)) + 1

    def apply() -> None:  # runs in the child between fork and exec: no logging, no locks
        _set_limit(resource.RLIMIT_AS, limits.memory_bytes)
        _set_limit(resource.RLIMIT_FSIZE, limits.output_bytes + 1)  # one byte more: exceeding shows
        _set_limit(resource.RLIMIT_CPU, cpu_seconds)
        _set_limit(resource.RLIMIT_NOFILE, NOFILE)
        _set_limit(resource.RLIMIT_CORE, 0)
        if limit_nproc:  # per *user*: only meaningful for the dedicated train uid
            _set_limit(resource.RLIMIT_NPROC, limits.pids)
        if drop_to_train_uid:
            os.setgroups([])
            os.setgid(contract.TRAIN_UID)
            os.setuid(contract.TRAIN_UID)

    return apply


class _TailReader(threading.Thread):
    """Drain the train's stdout+stderr, keeping only the last ``limit`` bytes (logs cannot fill memory)."""

    def __init__(self, stream: io.BufferedReader, limit: int) -> None:
        super().__init__(daemon=True)
        self.stream, self.limit, self.buffer = stream, limit, bytearray()

    def run(self) -> None:
        while chunk := self.stream.read1(65536):
            self.buffer += chunk
            if len(self.buffer) > 2 * self.limit:
                del self.buffer[: len(self.buffer) - self.limit]

    def tail(self) -> bytes:
        return bytes(self.buffer[-self.limit:]) if self.limit else b""


# ---------------------------------------------------------------------------- unisolated trains


def default_unisolated_path() -> str:
    """``PATH`` of an unisolated train: this station's Python environment first, then the host's ``PATH``."""
    return f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', DEFAULT_PATH)}"


@cache
def train_uid_can_run_python(path: str) -> bool:
    """Does uid 10001 get the same ``python3`` from ``path`` as the station's user? (Not when the station's lives
    under a closed home such as pyenv's ``/root``: the lookup then falls through to another ``python3`` on
    ``path``, one without the station's packages.) Checked once per ``path`` by running it as both users."""
    def drop() -> None:
        os.setgroups([])
        os.setgid(contract.TRAIN_UID)
        os.setuid(contract.TRAIN_UID)

    def prefix(preexec: Callable[[], None] | None) -> str | None:
        try:
            proc = subprocess.run(["python3", "-c", "import sys; print(sys.prefix)"], env={"PATH": path},
                                  preexec_fn=preexec, cwd="/", capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    mine = prefix(None)
    return mine is not None and prefix(drop) == mine


def unisolated_train_user(path: str) -> str:
    """Who unisolated trains with ``PATH`` ``path`` run as here: ``uid 10001``, or the station's own user when
    10001 does not get the same ``python3`` (the reason is in the sentence)."""
    if os.geteuid() != 0:
        return f"the station's user (uid {os.geteuid()})"
    if train_uid_can_run_python(path):
        return f"uid {contract.TRAIN_UID}"
    return (f"root, because uid {contract.TRAIN_UID} cannot run the python3 on their PATH ({path}); "
            "install bubblewrap or use Docker to run them isolated and unprivileged")


@cache
def _log_once(message: str) -> None:
    """A warning logged once per process, however many stations' runtimes there are (``pht demo`` has four)."""
    log.warning(message)


def host_argv(argv: list[str], workdir: str, folder: Path) -> list[str]:
    """Unisolated, the folder is not mounted at ``WORKDIR``: arguments naming it or a path below it name the
    host copy instead (``python3 /train/train.py`` → ``python3 <copy>/train.py``); the others are unchanged."""
    prefix = workdir.rstrip("/") + "/"
    return [str(folder) if arg == workdir else str(folder / arg[len(prefix):]) if arg.startswith(prefix) else arg
            for arg in argv]


# ---------------------------------------------------------------------------- the runtime


class ProcessRuntime:
    """Train folders as sandboxed local processes (bubblewrap), or unisolated with a loud warning."""

    name = "process"

    def __init__(self, *, bwrap: str | None = "auto", work_root: Path | None = None,
                 unisolated_path: str | None = None) -> None:
        """``bwrap="auto"`` finds it on PATH; ``None`` forces the unisolated mode (tests, demo without bwrap).
        ``unisolated_path``: the ``PATH`` unisolated trains get (default :func:`default_unisolated_path`)."""
        self.bwrap = shutil.which("bwrap") if bwrap == "auto" else bwrap
        self.work_root = work_root or Path(tempfile.gettempdir()) / "pht-process-runtime"
        self.as_root = os.geteuid() == 0
        self.setpriv: str | None = None
        #: unisolated only: the trains' PATH, and whether root drops to uid 10001 for them
        self.host_path = unisolated_path or default_unisolated_path()
        self.drop_to_train_uid = False
        if self.bwrap is None:
            warnings.warn(NO_ISOLATION, IsolationWarning, stacklevel=2)
            self.drop_to_train_uid = self.as_root and train_uid_can_run_python(self.host_path)
            _log_once(f"{NO_ISOLATION}; they run as {unisolated_train_user(self.host_path)}")
        elif self.as_root:
            # As root, bwrap's user namespace would map the train's uid to host root; instead bwrap builds
            # the sandbox without one and setpriv drops to uid 10001 inside it.
            self.setpriv = shutil.which("setpriv")
            if self.setpriv is None or not self.setpriv.startswith("/usr/"):
                raise RuntimeFailure("setpriv (util-linux) under /usr is needed to run trains as uid 10001")

    @staticmethod
    def can_isolate() -> bool:
        """True if bubblewrap is on PATH (what ``bwrap="auto"`` would use)."""
        return shutil.which("bwrap") is not None

    @property
    def isolated(self) -> bool:
        return self.bwrap is not None

    def pull(self, reference: str, auth: Mapping[str, str] | None) -> None:
        """Refuse: this runtime runs train folders, and a registry holds container images."""
        raise ImageRefused(f"The process runtime runs train folders and cannot pull the container image {reference}.")

    def check_image(self, image: str, digest: str) -> None:
        """Refuse unless the train folder ``image`` has exactly :func:`folder_digest` ``digest``."""
        actual = folder_digest(Path(image))
        if actual != digest:
            raise ImageRefused(f"Train folder {image} has digest {actual}, not the approved {digest}.")

    def run(self, spec: RunSpec) -> RunResult:
        """Copy the folder, check the copy's digest, run the copy: a change after the check cannot run."""
        if not _NAME.fullmatch(spec.name):
            raise RuntimeFailure(f"execution name {spec.name!r} is not usable as a folder name")
        for path, kind in ((spec.dataset_dir, "dataset folder"), (spec.input_dir, "input folder")):
            if path is not None and not Path(path).is_dir():
                raise RuntimeFailure(f"{kind} {path} does not exist")
        if not Path(spec.params_file).is_file():
            raise RuntimeFailure(f"parameter file {spec.params_file} does not exist")
        spec.output_dir.mkdir(parents=True, exist_ok=True)
        self.discard(spec.name)
        work = self.work_root / spec.name
        self.work_root.mkdir(mode=0o711, parents=True, exist_ok=True)
        work.mkdir(mode=0o711)
        try:
            train = work / "train"
            shutil.copytree(Path(spec.image), train, symlinks=True)
            actual = folder_digest(train)
            if actual != spec.image_digest:
                raise ImageRefused(f"Train folder {spec.image} has digest {actual}, not the approved "
                                   f"{spec.image_digest}.")
            command = train_command(train)
            argv = list(spec.entrypoint) if spec.entrypoint else command.argv
            staging = work / "output"
            staging.mkdir(mode=0o700)
            if self.as_root:
                os.chown(staging, contract.TRAIN_UID, contract.TRAIN_UID)
            return self._execute(spec, work, train, staging, command.workdir, argv)
        finally:
            self.discard(spec.name)

    # ------------------------------------------------------------------ command lines

    def _bwrap_argv(self, spec: RunSpec, train: Path, staging: Path, workdir: str, argv: list[str]) -> list[str]:
        assert self.bwrap is not None
        args = [self.bwrap, "--die-with-parent", "--new-session"]
        if self.as_root:
            args += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
        else:
            uid = str(contract.TRAIN_UID)
            args += ["--unshare-all", "--unshare-user", "--uid", uid, "--gid", uid, "--disable-userns"]
        for directory in SYSTEM_DIRS:
            if os.path.islink(directory):
                args += ["--symlink", os.readlink(directory), directory]
            elif os.path.isdir(directory):
                args += ["--ro-bind", directory, directory]
        args += ["--proc", "/proc", "--dev", "/dev", "--perms", "0755", "--dir", "/etc"]
        for path in SYSTEM_FILES:
            if os.path.exists(path):
                args += ["--ro-bind", path, path]
        args += ["--perms", "0755", "--dir", "/pht",
                 "--ro-bind", str(Path(spec.dataset_dir).resolve()), contract.DATA_DIR,
                 "--ro-bind", str(Path(spec.params_file).resolve()), contract.PARAMS_FILE,
                 "--bind", str(staging), contract.OUTPUT_DIR]
        if spec.input_dir is not None:
            args += ["--ro-bind", str(Path(spec.input_dir).resolve()), contract.INPUT_DIR]
        else:
            args += ["--perms", "0555", "--dir", contract.INPUT_DIR]
        for parent in reversed(PurePosixPath(workdir).parents[:-1]):
            args += ["--perms", "0755", "--dir", str(parent)]
        args += ["--ro-bind", str(train), workdir,
                 "--perms", "1777", "--size", str(spec.limits.tmp_bytes), "--tmpfs", contract.WORK_DIR,
                 "--remount-ro", "/", "--chdir", workdir, "--hostname", "train", "--cap-drop", "ALL"]
        if self.as_root:
            args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP"]
        args.append("--clearenv")
        for key, value in self._sandbox_env(spec).items():
            args += ["--setenv", key, value]
        args.append("--")
        if self.as_root:
            assert self.setpriv is not None
            uid = str(contract.TRAIN_UID)
            args += [self.setpriv, "--reuid", uid, "--regid", uid, "--clear-groups", "--bounding-set", "-all",
                     "--inh-caps", "-all", "--no-new-privs", "--"]
        return args + argv

    @staticmethod
    def _sandbox_env(spec: RunSpec) -> dict[str, str]:
        env = {"PATH": DEFAULT_PATH, "PYTHONDONTWRITEBYTECODE": "1"}
        env.update(spec.environment)
        return env

    def _host_env(self, spec: RunSpec, work: Path, staging: Path) -> dict[str, str]:
        """Unisolated: the contract paths do not exist, so the path variables point at the host folders."""
        scratch = work / "tmp"
        scratch.mkdir()
        scratch.chmod(0o1777)
        empty_input = work / "input"
        empty_input.mkdir(mode=0o555)
        params = work / "params.json"  # a copy: the original's parent folders may be closed to uid 10001
        shutil.copyfile(spec.params_file, params)
        params.chmod(0o444)
        host = {contract.DATA_DIR: str(Path(spec.dataset_dir).resolve()),
                contract.INPUT_DIR: str(Path(spec.input_dir).resolve()) if spec.input_dir else str(empty_input),
                contract.PARAMS_FILE: str(params), contract.OUTPUT_DIR: str(staging), contract.WORK_DIR: str(scratch)}
        env = {"PATH": self.host_path, "PYTHONDONTWRITEBYTECODE": "1"}
        env.update({key: host.get(value, value) for key, value in spec.environment.items()})
        return env

    # ------------------------------------------------------------------ running

    def _execute(self, spec: RunSpec, work: Path, train: Path, staging: Path, workdir: str,
                 argv: list[str]) -> RunResult:
        limits = spec.limits
        if self.bwrap is not None:
            command = self._bwrap_argv(spec, train, staging, workdir, argv)
            env: Mapping[str, str] = {"PATH": DEFAULT_PATH}
            cwd = work
            preexec = _preexec(spec, limit_nproc=self.as_root, drop_to_train_uid=False)
        else:
            log.info("running %s WITHOUT ISOLATION (no bubblewrap)", spec.name)
            command, env, cwd = host_argv(argv, workdir, train), self._host_env(spec, work, staging), train
            preexec = _preexec(spec, limit_nproc=self.drop_to_train_uid, drop_to_train_uid=self.drop_to_train_uid)
        started = time.monotonic()
        try:
            proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, cwd=cwd, env=dict(env), start_new_session=True,
                                    preexec_fn=preexec, close_fds=True)
        except OSError as exc:
            raise RuntimeFailure(f"cannot start {command[0]}: {exc}") from exc
        assert isinstance(proc.stdout, io.BufferedReader)  # stdout=PIPE with the default buffering
        reader = _TailReader(proc.stdout, limits.log_bytes)
        reader.start()
        failure: str | None = None
        try:
            while not _exited(proc):
                time.sleep(POLL_S)
                if tree_size(staging) > limits.output_bytes:
                    failure = f"The output is larger than the limit of {limits.output_bytes} bytes."
                    break
                if time.monotonic() - started > limits.timeout_s:
                    failure = f"The train exceeded the time limit of {limits.timeout_s:g} s."
                    break
        finally:
            _kill_group(proc)
            reader.join(timeout=5)
            proc.stdout.close()
        exit_code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
        if self.bwrap is not None and exit_code == 1 and reader.tail().startswith(b"bwrap: "):
            # bubblewrap reports its own set-up errors this way, before the train has printed anything
            message = reader.tail()[:500].decode(errors="replace").strip()
            raise RuntimeFailure(f"bubblewrap could not build the sandbox: {message}")
        if failure is not None:
            exit_code_out: int | None = None if "time limit" in failure else exit_code
            return RunResult(exit_code=exit_code_out, failure=failure, logs=reader.tail(),
                             duration_s=time.monotonic() - started)
        if tree_size(staging) > limits.output_bytes or exit_code == 128 + signal.SIGXFSZ:
            failure = f"The output is larger than the limit of {limits.output_bytes} bytes."
        elif exit_code == 128 + signal.SIGXCPU:
            failure = "The train exceeded its CPU time limit."
        elif exit_code != contract.EXIT_OK:
            failure = f"The train exited with code {exit_code}."
        else:
            try:
                copy_tree(staging, spec.output_dir, max_bytes=limits.output_bytes)
            except OutputRejected as exc:
                empty_folder(spec.output_dir)
                failure = f"The output was refused: {exc}."
        return RunResult(exit_code=exit_code, failure=failure, logs=reader.tail(),
                         duration_s=time.monotonic() - started)

    # ------------------------------------------------------------------ clean-up

    def discard(self, name: str) -> None:
        """Remove the work folder of execution ``name`` (its processes died with their parent)."""
        if _NAME.fullmatch(name):
            shutil.rmtree(self.work_root / name, ignore_errors=True)

    def close(self) -> None:
        """Nothing to release: each run's processes end with it."""

    def leftovers(self) -> list[str]:
        """Execution names whose work folder is still there."""
        if not self.work_root.is_dir():
            return []
        return sorted(p.name for p in self.work_root.iterdir() if p.is_dir())


def _exited(proc: subprocess.Popen[bytes]) -> bool:
    """Has the leader exited? Without reaping it: its zombie keeps the group ID from being reused."""
    return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group, then reap the leader (bwrap's sandbox dies with bwrap: --die-with-parent
    and its PID namespace; unisolated, a train that left the group with setsid survives: no isolation)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
