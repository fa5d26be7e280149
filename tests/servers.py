"""Throw-away REAL SPARQL servers for tests.

Each context manager starts one server process on ``127.0.0.1`` with a free port and a
fresh temporary directory, waits until it answers a SPARQL ``ASK``, yields a small
description of its endpoints, and on exit kills the whole process group and removes the
directory, whatever happened.  If a server cannot be started, :class:`ServerStartError`
is raised with the tail of the server's log.

* :func:`oxigraph_server` -- ``oxigraph serve`` (PyPI package ``oxigraph``), endpoints
  ``/query``, ``/update``, ``/store``; no authentication.
* :func:`virtuoso_server` -- Debian's Virtuoso 7 (``virtuoso-t``); queries on ``/sparql``,
  updates on ``/sparql-auth`` with HTTP *digest* authentication as ``dba``/``dba``.
* :func:`s3_server` -- an S3 API (``moto_server``, PyPI ``moto[server]``), in memory; moto accepts any
  credentials, the ones yielded are just passed along by the client.
* :func:`prometheus_server` -- Debian's Prometheus with a given ``prometheus.yml``, data in a temp dir;
  ready when ``/-/ready`` answers.
* :func:`registry_server` -- Debian's CNCF Distribution registry (``docker-registry``), plain HTTP on loopback
  (Docker allows 127.0.0.0/8 without TLS), htpasswd (bcrypt) authentication, as TWO processes on one storage
  folder: a writable one for the researcher's account and a read-only one (``maintenance.readonly``) for the
  stations' accounts, since htpasswd authentication has no per-user permissions.
* :func:`available` -- ``None`` if a component can be started here, else the reason why not.

Client quirks worth knowing (see also shared/reference/semantic-stack.md):

* Virtuoso never answers a POST with ``Content-Type: application/sparql-query``: send
  queries as GET or form-encoded POST, updates as form-encoded POST (``update=...``).
* Virtuoso answers in ``text/html`` unless an ``Accept`` header asks for a SPARQL format.
* Virtuoso has no writable default graph: ``INSERT {...}`` without ``GRAPH`` fails with
  ``SP031``; ``DROP GRAPH`` of a graph that was only filled implicitly fails with 500
  (``DROP SILENT GRAPH`` works).  Anonymous updates on ``/sparql`` are refused (``SR186``).
* The generated ``virtuoso.ini`` sets ``DefaultIsolation = 4`` (REPEATABLE READ): with
  Virtuoso's default READ COMMITTED, concurrent ``DELETE/INSERT ... WHERE`` updates on the same
  triples all see them and all apply, so a guarded write would have several winners.

Typical use::

    with oxigraph_server() as ox:
        SPARQLWrapper(ox.query_url, updateEndpoint=ox.update_url)
"""

from __future__ import annotations

import configparser
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "COMPONENTS",
    "OxigraphServer",
    "PrometheusServer",
    "S3Server",
    "ServerStartError",
    "VirtuosoServer",
    "available",
    "oxigraph_server",
    "prometheus_server",
    "RegistryServer",
    "registry_server",
    "s3_server",
    "virtuoso_server",
]

HOST = "127.0.0.1"
COMPONENTS = ("oxigraph", "virtuoso", "s3", "docker", "podman", "bubblewrap", "chromium", "prometheus",
              "mount-namespace", "age", "node-reference", "kubectl", "registry")

#: Debian's Virtuoso configuration, used as the template for generated ``virtuoso.ini`` files.
VIRTUOSO_INI_TEMPLATES = (
    Path("/etc/virtuoso-opensource-7/virtuoso.ini"),  # written by the package's postinst
    Path("/usr/share/virtuoso-opensource-7/virtuoso.ini"),  # pristine package copy
)
VIRTUOSO_USER = "dba"
VIRTUOSO_PASSWORD = "dba"  # the default of every freshly created Virtuoso database

_ASK = "ASK {}"
_PROBE_UPDATE = "DROP SILENT GRAPH <urn:pht:test:readiness-probe>"
_INSTALL_HINT = "run scripts/install-services.sh as root"


class ServerStartError(RuntimeError):
    """A server process could not be started or did not become ready in time."""


@dataclass(frozen=True)
class OxigraphServer:
    """A running ``oxigraph serve`` process."""

    base_url: str  #: ``http://127.0.0.1:PORT``
    query_url: str  #: SPARQL Protocol query endpoint (``/query``)
    update_url: str  #: SPARQL Protocol update endpoint (``/update``)
    store_url: str  #: Graph Store Protocol endpoint (``/store``)
    port: int
    location: Path  #: the RocksDB directory (inside a temporary directory)
    pid: int  #: also the process group id
    startup_seconds: float  #: from spawn until the first successful ASK


@dataclass(frozen=True)
class VirtuosoServer:
    """A running ``virtuoso-t`` process with a fresh database."""

    base_url: str  #: ``http://127.0.0.1:PORT``
    query_url: str  #: ``/sparql``: anonymous, read-only
    update_url: str  #: ``/sparql-auth``: digest auth with :attr:`user` / :attr:`password`
    user: str
    password: str
    port: int  #: HTTP port
    isql_port: int  #: SQL (ISQL/ODBC) port, also loopback only
    directory: Path  #: database files, ``virtuoso.ini`` and logs
    pid: int  #: also the process group id
    startup_seconds: float  #: from spawn until ASK and an authenticated update both work

    def isql(self, *statements: str, timeout: float = 60.0) -> str:
        """Run SQL statements (each ending with ``;``) with ``isql-vt`` as dba; return stdout.

        All statements run even if one fails; :class:`RuntimeError` is raised if any failed
        (``isql-vt`` itself exits 0 then and only prints ``*** Error ...`` on stderr).
        """
        isql = _find_isql()
        if isql is None:
            raise RuntimeError("isql-vt not found; " + _INSTALL_HINT)
        # Statements go through stdin: on the command line (EXEC=...) isql-vt mangles some
        # characters, e.g. "SELECT 40 + 2" arrives as "SELECT 40   2".
        script = "".join(s.strip().removesuffix(";") + ";\n" for s in statements)
        proc = subprocess.run(
            [
                isql,
                f"{HOST}:{self.isql_port}",
                self.user,
                self.password,
                "VERBOSE=OFF",
                "BANNER=OFF",
                "PROMPT=OFF",
                "ECHO=OFF",
            ],
            input=script,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0 or "*** Error" in proc.stderr:
            raise RuntimeError(f"isql-vt failed (exit {proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout


# --------------------------------------------------------------------------- discovery


def _find_oxigraph() -> str | None:
    beside_python = Path(sys.executable).parent / "oxigraph"  # the venv's bin/, unresolved
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    return shutil.which("oxigraph")


def find_kubectl() -> str | None:
    """The kubectl to render kustomizations with (PATH first, then /usr/bin)."""
    return shutil.which("kubectl") or _executable("/usr/bin/kubectl")


def _find_tool(name: str) -> str | None:
    return shutil.which(name) or _executable(f"/usr/bin/{name}")


def _find_virtuoso() -> str | None:
    return shutil.which("virtuoso-t") or _executable("/usr/bin/virtuoso-t")


def _find_isql() -> str | None:
    return shutil.which("isql-vt") or _executable("/usr/bin/isql-vt")


def _virtuoso_ini_template() -> Path | None:
    return next((p for p in VIRTUOSO_INI_TEMPLATES if p.is_file()), None)


def _executable(path: str) -> str | None:
    return path if os.path.isfile(path) and os.access(path, os.X_OK) else None


def available(name: str) -> str | None:
    """Return ``None`` if component *name* (one of :data:`COMPONENTS`) can be started here,
    else a human-readable reason why not (suitable for ``pytest.skip``)."""
    if name == "oxigraph":
        if _find_oxigraph() is None:
            return (
                "oxigraph server binary not found next to "
                f"{sys.executable} nor on PATH; pip install 'oxigraph>=0.5,<0.6' (test extra)"
            )
        return None
    if name == "virtuoso":
        if _find_virtuoso() is None:
            return f"virtuoso-t not found on PATH nor in /usr/bin; {_INSTALL_HINT}"
        if _find_isql() is None:
            return f"isql-vt not found on PATH nor in /usr/bin; {_INSTALL_HINT}"
        if _virtuoso_ini_template() is None:
            templates = ", ".join(map(str, VIRTUOSO_INI_TEMPLATES))
            return f"no Virtuoso ini template ({templates}); {_INSTALL_HINT}"
        return None
    if name == "s3":
        return _moto_unavailable()
    if name == "docker":
        return _docker_unavailable()
    if name == "podman":
        return _podman_unavailable()
    if name == "bubblewrap":
        return None if shutil.which("bwrap") else "bwrap not found on PATH; apt-get install bubblewrap"
    if name == "chromium":  # headless browser tests of the web view (selenium + Debian's chromedriver)
        missing = [p for p in ("/usr/bin/chromium", "/usr/bin/chromedriver") if not os.access(p, os.X_OK)]
        if missing:
            return f"{', '.join(missing)} not found; {_INSTALL_HINT} (Debian packages chromium, chromium-driver)"
        try:
            import selenium  # noqa: F401
        except ImportError:
            return "the selenium package is missing; pip install -e '.[test]'"
        return None
    if name == "prometheus":  # the dashboards' proof scrapes the real metrics (Debian package prometheus)
        if _find_prometheus() is None:
            return f"prometheus not found on PATH nor in /usr/bin; {_INSTALL_HINT} (Debian package prometheus)"
        return None
    if name == "registry":  # train images pushed and pulled by digest (Debian's docker-registry, htpasswd)
        missing = [tool for tool in ("docker-registry", "htpasswd") if _find_tool(tool) is None]
        return (f"{', '.join(missing)} not found; {_INSTALL_HINT} (Debian packages docker-registry, apache2-utils)"
                if missing else None)
    if name == "age":  # the reference age tool (Go), against which trust/sealing.py is checked
        missing = [tool for tool in ("age", "age-keygen") if shutil.which(tool) is None]
        return f"{', '.join(missing)} not on PATH; {_INSTALL_HINT} (Debian package age)" if missing else None
    if name == "node-reference":  # the JavaScript reference implementations of Data Integrity and RDFC-1.0
        if shutil.which("node") is None:
            return f"node is not installed; {_INSTALL_HINT} (Debian package nodejs)"
        packages = Path(__file__).resolve().parent / "interop" / "node_modules" / "@digitalbazaar"
        if not (packages / "eddsa-rdfc-2022-cryptosuite").is_dir():
            return "the npm packages are not installed: run scripts/install-node-reference.sh"
        return None
    if name == "mount-namespace":  # hiding installed programs from one test (the bare-machine demo)
        if os.geteuid() != 0:
            return "hiding installed programs needs root (bind mounts in a private mount namespace)"
        try:
            done = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True,
                                  text=True, timeout=30, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            return f"unshare --mount failed: {exc}"
        return None if done.returncode == 0 else f"unshare --mount failed: {done.stderr.strip()[-300:]}"
    if name == "kubectl":  # renders deploy/kubernetes offline (kubectl kustomize); Debian's kubernetes-client is too old
        if find_kubectl() is None:
            return ("kubectl not found on PATH nor in /usr/bin; install kubectl >= 1.27 (kustomize v5) from the "
                    "Kubernetes package repository (pkgs.k8s.io) or the Google Cloud SDK")
        return None
    raise ValueError(f"unknown component {name!r}; known: {', '.join(COMPONENTS)}")


# --------------------------------------------------------------------------- process helpers


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<no log: {exc}>"
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else "<empty log>"


def _stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the process group, SIGKILL it after *grace* seconds, reap the leader."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; make sure no child of it survives either.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return


@contextlib.contextmanager
def _process(argv: Sequence[str], cwd: Path, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run *argv* in its own session (so its whole group can be killed), output to *log_path*."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        _stop(proc)


def _http_error(
    url: str,
    *,
    data: bytes | None = None,
    auth: tuple[str, str] | None = None,
    timeout: float = 2.0,
) -> str | None:
    """``None`` if *url* answers 2xx, else a short description of what went wrong."""
    handlers: list[urllib.request.BaseHandler] = []
    if auth is not None:
        mgr = urllib.request.HTTPPasswordMgrWithDefaultRealm()
        mgr.add_password(None, url, *auth)
        handlers.append(urllib.request.HTTPDigestAuthHandler(mgr))
    opener = urllib.request.build_opener(*handlers)
    headers = {"Accept": "application/sparql-results+json"}
    if data is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with opener.open(request, timeout=timeout) as response:
            response.read()
            return None
    except urllib.error.HTTPError as exc:
        with exc:
            body = exc.read(500).decode(errors="replace").strip()
        return f"HTTP {exc.code} {exc.reason}: {body}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        # OSError covers resets and timeouts; http.client errors such as
        # RemoteDisconnected are OSError subclasses too.
        return f"{type(exc).__name__}: {exc}"


def _wait_ready(
    name: str,
    proc: subprocess.Popen[bytes],
    log_path: Path,
    probes: Sequence[tuple[str, bytes | None, tuple[str, str] | None]],
    timeout: float,
    later_probe_timeout: float = 15.0,
) -> None:
    """Poll until every probe ``(url, form_body, digest_auth)`` answers 2xx, in order.

    The first probe gets *timeout* seconds (start-up); each later one, run once the
    server already answers, gets *later_probe_timeout* seconds.
    """
    deadline = time.monotonic() + timeout
    for index, (url, data, auth) in enumerate(probes):
        if index:
            deadline = time.monotonic() + later_probe_timeout
        while True:
            if proc.poll() is not None:
                raise ServerStartError(
                    f"{name} exited with code {proc.returncode} during start-up; "
                    f"log tail ({log_path}):\n{_log_tail(log_path)}"
                )
            error = _http_error(url, data=data, auth=auth)
            if error is None:
                break
            if time.monotonic() > deadline:
                what = "POST (form, digest auth) to" if auth else "POST to" if data else "GET"
                raise ServerStartError(
                    f"{name} did not answer {what} {url} within the time allowed; last error: {error}\n"
                    f"log tail ({log_path}):\n{_log_tail(log_path)}"
                )
            time.sleep(0.1)


def _ask_url(query_url: str) -> str:
    return f"{query_url}?{urllib.parse.urlencode({'query': _ASK})}"


def _update_body() -> bytes:
    return urllib.parse.urlencode({"update": _PROBE_UPDATE}).encode()


# --------------------------------------------------------------------------- Oxigraph


Probe = tuple[str, bytes | None, tuple[str, str] | None]  #: URL, POST body, digest credentials (see _wait_ready)


@dataclass
class _Launched:
    directory: Path  #: the server's fresh temp dir (removed when the context ends)
    proc: subprocess.Popen[bytes]
    started: float  #: time.monotonic() at spawn
    detail: Any  #: what ``prepare`` returned beside the command (ports, paths)


@contextlib.contextmanager
def _launch(name: str, prepare: Callable[[Path], tuple[list[str], list[Probe], Any]], *, startup_timeout: float,
            attempts: int) -> Iterator[_Launched]:
    """Run the server ``prepare(temp dir)`` describes (command, readiness probes, detail) until it answers.

    Retries (up to *attempts*, each in a fresh temp dir) when the process dies at once, e.g. because the free
    port picked was taken in the meantime; a process that is alive but does not answer fails at once.
    """
    last_error: ServerStartError | None = None
    for _ in range(attempts):
        tmp = Path(tempfile.mkdtemp(prefix=f"pht-{name}-"))
        try:
            argv, probes, detail = prepare(tmp)
            log_path = tmp / f"{name}.log"
            started = time.monotonic()
            with _process(argv, tmp, log_path) as proc:
                try:
                    _wait_ready(name, proc, log_path, probes, startup_timeout)
                except ServerStartError as exc:
                    if proc.poll() is None:  # alive but not answering: no point in retrying
                        raise
                    last_error = exc
                    continue
                yield _Launched(tmp, proc, started, detail)
                return
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    assert last_error is not None
    raise last_error


@contextlib.contextmanager
def oxigraph_server(*, startup_timeout: float = 30.0, attempts: int = 3) -> Iterator[OxigraphServer]:
    """Start ``oxigraph serve`` on a free loopback port with an on-disk store in a temp dir.

    Retries (up to *attempts*) when the process dies at once, e.g. because the port
    picked was taken in the meantime.
    """
    binary = _find_oxigraph()
    if binary is None:
        raise ServerStartError(available("oxigraph") or "oxigraph not found")
    def prepare(tmp: Path) -> tuple[list[str], list[Probe], Any]:
        port = free_port()
        argv = [binary, "serve", "--location", str(tmp / "store"), "--bind", f"{HOST}:{port}"]
        return argv, [(_ask_url(f"http://{HOST}:{port}/query"), None, None)], port

    with _launch("oxigraph", prepare, startup_timeout=startup_timeout, attempts=attempts) as run:
        base = f"http://{HOST}:{run.detail}"
        yield OxigraphServer(
            base_url=base,
            query_url=f"{base}/query",
            update_url=f"{base}/update",
            store_url=f"{base}/store",
            port=run.detail,
            location=run.directory / "store",
            pid=run.proc.pid,
            startup_seconds=time.monotonic() - run.started,
        )


# --------------------------------------------------------------------------- Virtuoso


def write_virtuoso_ini(directory: Path, http_port: int, isql_port: int, template: Path) -> Path:
    """Write ``directory/virtuoso.ini``: Debian's defaults, adapted to a throw-away instance.

    Database, log, lock and transaction files live in *directory*; both listeners are
    bound to 127.0.0.1; small buffers; no VAD auto-install (no Conductor: saves ~3.5 s of
    start-up), no hosting plugins, no Zero Config (mDNS) announcement.
    """
    cp = configparser.RawConfigParser(
        strict=False,  # Debian's file repeats PrefixResultNames and IndexTreeMaps
        comment_prefixes=(";", "#"),
        inline_comment_prefixes=(";",),
        interpolation=None,
    )
    cp.optionxform = str  # type: ignore[assignment,method-assign]  # keep key case
    cp.read(template)

    def section(name: str) -> configparser.SectionProxy:
        if not cp.has_section(name):
            cp.add_section(name)
        return cp[name]

    d = directory
    vad = d / "vad"
    vsp = d / "vsp"
    vad.mkdir()
    vsp.mkdir()
    section("Database").update(
        DatabaseFile=str(d / "virtuoso.db"),
        ErrorLogFile=str(d / "virtuoso.log"),
        LockFile=str(d / "virtuoso.lck"),
        TransactionFile=str(d / "virtuoso.trx"),
        xa_persistent_file=str(d / "virtuoso.pxa"),
        Striping="0",
    )
    section("TempDatabase").update(
        DatabaseFile=str(d / "virtuoso-temp.db"),
        TransactionFile=str(d / "virtuoso-temp.trx"),
        Striping="0",
    )
    section("Parameters").update(
        ServerPort=f"{HOST}:{isql_port}",
        DisableUnixSocket="1",
        NumberOfBuffers="2000",  # x 8 KiB pages = 16 MiB
        MaxDirtyBuffers="1500",
        MaxQueryMem="256M",
        DirsAllowed=f"., {d}",
        VADInstallDir=f"{vad}/",  # empty: nothing is auto-installed into the fresh db
        # REPEATABLE READ, as graph_store requires of a Virtuoso (see graph_store/_remote.py): under the
        # default READ COMMITTED, concurrent guarded DELETE/INSERT ... WHERE updates all match and all apply.
        DefaultIsolation="4",
    )
    section("HTTPServer").update(
        ServerPort=f"{HOST}:{http_port}",
        ServerRoot=str(vsp),
    )
    section("URIQA")["DefaultHost"] = f"{HOST}:{http_port}"
    # 0 turns off Virtuoso's refusal by cost *estimate* (400 s in Debian's file). Its estimate for
    # queries with several OPTIONALs over a tiny store swings between 500 and 60,000 s from run to run,
    # so the same named query was refused intermittently before it ran; the platform bounds queries by
    # its own deadlines, and MaxQueryExecutionTime still bounds what really runs.
    section("SPARQL")["MaxQueryCostEstimationTime"] = "0"
    for unwanted in ("Plugins", "Zero Config", "Striping", "Mono"):
        cp.remove_section(unwanted)

    ini = d / "virtuoso.ini"
    with open(ini, "w") as fh:
        cp.write(fh)
    return ini


@contextlib.contextmanager
def virtuoso_server(*, startup_timeout: float = 90.0, attempts: int = 3) -> Iterator[VirtuosoServer]:
    """Start ``virtuoso-t +foreground`` with a fresh database in a temp dir.

    Ready means: an anonymous ``ASK`` on ``/sparql`` answers and an update on
    ``/sparql-auth`` with digest auth (``dba``/``dba``) succeeds.  On a fresh database the
    ``dba`` user may update over ``/sparql-auth`` without any extra grant.
    """
    binary = _find_virtuoso()
    template = _virtuoso_ini_template()
    reason = available("virtuoso")
    if binary is None or template is None or reason is not None:
        raise ServerStartError(reason or "virtuoso not available")
    def prepare(tmp: Path) -> tuple[list[str], list[Probe], Any]:
        http_port = free_port()
        isql_port = free_port()
        while isql_port == http_port:
            isql_port = free_port()
        ini = write_virtuoso_ini(tmp, http_port, isql_port, template)
        base = f"http://{HOST}:{http_port}"
        probes: list[Probe] = [(_ask_url(f"{base}/sparql"), None, None),
                               (f"{base}/sparql-auth", _update_body(), (VIRTUOSO_USER, VIRTUOSO_PASSWORD))]
        return [binary, "+foreground", "+configfile", str(ini)], probes, (http_port, isql_port)

    with _launch("virtuoso", prepare, startup_timeout=startup_timeout, attempts=attempts) as run:
        http_port, isql_port = run.detail
        base = f"http://{HOST}:{http_port}"
        yield VirtuosoServer(
            base_url=base,
            query_url=f"{base}/sparql",
            update_url=f"{base}/sparql-auth",
            user=VIRTUOSO_USER,
            password=VIRTUOSO_PASSWORD,
            port=http_port,
            isql_port=isql_port,
            directory=run.directory,
            pid=run.proc.pid,
            startup_seconds=time.monotonic() - run.started,
        )


# --------------------------------------------------------------------------- S3 (moto)

S3_ACCESS_KEY = "pht-test-access"
S3_SECRET_KEY = "pht-test-secret-key"  # moto does not check credentials; any pair is accepted


@dataclass(frozen=True)
class S3Server:
    """A running ``moto_server`` (S3 API, objects in memory)."""

    endpoint: str  #: ``127.0.0.1:PORT``, as the ``minio`` client wants it (plain HTTP)
    base_url: str  #: ``http://127.0.0.1:PORT``
    access_key: str
    secret_key: str
    port: int
    pid: int  #: also the process group id
    startup_seconds: float  #: from spawn until ``GET /`` (ListBuckets) answered


def _find_moto() -> str | None:
    beside_python = Path(sys.executable).parent / "moto_server"
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    return shutil.which("moto_server")


def _moto_unavailable() -> str | None:
    import importlib.util

    if _find_moto() is None:
        return f"moto_server not found next to {sys.executable} nor on PATH; pip install 'moto[server]>=5' (test extra)"
    if importlib.util.find_spec("flask") is None:
        return "moto_server needs flask; pip install 'moto[server]>=5' (test extra)"
    return None


@contextlib.contextmanager
def s3_server(*, startup_timeout: float = 30.0, attempts: int = 3) -> Iterator[S3Server]:
    """Start ``moto_server`` on a free loopback port; ready when an unsigned ``GET /`` answers 200.

    Retries (up to *attempts*) when the process dies at once, e.g. because the port was taken meanwhile.
    """
    binary = _find_moto()
    reason = _moto_unavailable()
    if binary is None or reason is not None:
        raise ServerStartError(reason or "moto_server not available")
    def prepare(tmp: Path) -> tuple[list[str], list[Probe], Any]:
        port = free_port()
        return [binary, "-H", HOST, "-p", str(port)], [(f"http://{HOST}:{port}/", None, None)], port

    with _launch("moto", prepare, startup_timeout=startup_timeout, attempts=attempts) as run:
        yield S3Server(
            endpoint=f"{HOST}:{run.detail}",
            base_url=f"http://{HOST}:{run.detail}",
            access_key=S3_ACCESS_KEY,
            secret_key=S3_SECRET_KEY,
            port=run.detail,
            pid=run.proc.pid,
            startup_seconds=time.monotonic() - run.started,
        )


# --------------------------------------------------------------------------- container engines (Docker, Podman)


def _docker_unavailable() -> str | None:
    """The Docker engine answers a ping through the default socket (``DOCKER_HOST`` respected)."""
    try:
        import docker
    except ImportError:
        return "the docker Python package is missing; pip install -e . (it is a dependency)"
    try:
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        if host.startswith("unix://"):  # asked first: the docker package leaves a refused socket open (a warning)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.settimeout(10)
                probe.connect(host.removeprefix("unix://"))
        client = docker.from_env(timeout=10)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - any failure means "no engine here"
        return f"no Docker engine answers ({exc}); start dockerd, e.g. (dockerd > /tmp/dockerd.log 2>&1 &)"
    return None


def _podman_unavailable() -> str | None:
    """``podman`` is installed and ``podman info`` works (the tests start their own API service)."""
    podman = shutil.which("podman")
    if podman is None:
        return "podman not found on PATH; apt-get install podman"
    try:
        proc = subprocess.run([podman, "info"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"podman info failed: {exc}"
    if proc.returncode != 0:
        return f"podman info failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}"
    return None


# --------------------------------------------------------------------------- Prometheus


@dataclass(frozen=True)
class PrometheusServer:
    """A running ``prometheus`` with a generated configuration and a throw-away TSDB."""

    base_url: str  #: ``http://127.0.0.1:PORT``; the HTTP API is under ``/api/v1``
    port: int
    directory: Path  #: ``prometheus.yml``, ``data/`` and ``prometheus.log``
    pid: int  #: also the process group id
    startup_seconds: float  #: from spawn until ``/-/ready`` answered


def _find_prometheus() -> str | None:
    return shutil.which("prometheus") or _executable("/usr/bin/prometheus")


@contextlib.contextmanager
def prometheus_server(config: str, *, startup_timeout: float = 30.0, attempts: int = 3) -> Iterator[PrometheusServer]:
    """Start ``prometheus`` on a free loopback port with *config* (the text of a ``prometheus.yml``).

    The TSDB lives in a temp dir removed on exit. Retries (up to *attempts*) when the process dies at once,
    e.g. because the port picked was taken in the meantime.
    """
    binary = _find_prometheus()
    if binary is None:
        raise ServerStartError(available("prometheus") or "prometheus not found")
    def prepare(tmp: Path) -> tuple[list[str], list[Probe], Any]:
        port = free_port()
        (tmp / "prometheus.yml").write_text(config)
        argv = [binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address={HOST}:{port}", "--storage.tsdb.retention.time=1d"]
        return argv, [(f"http://{HOST}:{port}/-/ready", None, None)], port

    with _launch("prometheus", prepare, startup_timeout=startup_timeout, attempts=attempts) as run:
        yield PrometheusServer(base_url=f"http://{HOST}:{run.detail}", port=run.detail, directory=run.directory,
                               pid=run.proc.pid, startup_seconds=time.monotonic() - run.started)


# --------------------------------------------------------------------------- OCI registry (CNCF Distribution)

REGISTRY_RESEARCHER = ("researcher", "researcher-registry-password")
REGISTRY_STATIONS = {"station-a": "station-a-registry-password", "station-b": "station-b-registry-password"}


@dataclass(frozen=True)
class RegistryServer:
    """Two ``docker-registry serve`` processes on one storage folder, both plain HTTP on loopback.

    Pushes go to :attr:`push_host` (htpasswd: the researcher only); stations pull from :attr:`pull_host`
    (htpasswd: the stations only), which runs in the registry's read-only maintenance mode, so a station's
    credentials cannot write anything anywhere: the writable instance does not know them, the read-only one
    refuses every write. (Harbor gives the same with robot accounts that may only pull.)
    """

    push_host: str  #: ``127.0.0.1:PORT`` of the writable instance
    pull_host: str  #: ``127.0.0.1:PORT`` of the read-only instance
    researcher: tuple[str, str]  #: (user, password) on the writable instance
    stations: dict[str, str]  #: station account -> password on the read-only instance
    storage: Path  #: the registry's storage folder (shared by both instances)
    pids: tuple[int, int]  #: process group ids (writable, read-only)

    def station_auth(self, station: str) -> dict[str, str]:
        """A station's credentials as the engine wants them (``auth_config``)."""
        return {"username": station, "password": self.stations[station]}

    def researcher_auth(self) -> dict[str, str]:
        return {"username": self.researcher[0], "password": self.researcher[1]}


def _htpasswd(path: Path, accounts: dict[str, str]) -> None:
    """A bcrypt htpasswd file (the only hash the Distribution registry accepts), written by Apache's htpasswd."""
    tool = _find_tool("htpasswd")
    assert tool is not None
    lines = []
    for user, password in accounts.items():
        done = subprocess.run([tool, "-Bbn", user, password], capture_output=True, text=True, timeout=60,
                              check=True)
        lines.append(done.stdout.strip())
    path.write_text("\n".join(lines) + "\n")


def _registry_config(tmp: Path, storage: Path, port: int, htpasswd: Path, *, readonly: bool) -> Path:
    """The registry's config.yml (JSON is YAML): loopback, filesystem storage, no blob cache (two instances share
    the folder), htpasswd, and the read-only maintenance mode if asked."""
    import json

    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "formatter": "text"},
        "storage": {"filesystem": {"rootdirectory": str(storage)},
                    "maintenance": {"uploadpurging": {"enabled": False}, "readonly": {"enabled": readonly}}},
        "http": {"addr": f"{HOST}:{port}", "secret": "pht-test-registry-secret"},
        "auth": {"htpasswd": {"realm": "pht-test-registry", "path": str(htpasswd)}},
    }
    path = tmp / "config.yml"
    path.write_text(json.dumps(config))
    return path


@contextlib.contextmanager
def registry_server(*, startup_timeout: float = 30.0, attempts: int = 3,
                    stations: Mapping[str, str] | None = None) -> Iterator[RegistryServer]:
    """Start the writable and the read-only ``docker-registry`` on free loopback ports; ready when ``GET /``
    answers on both (``/v2/`` answers 401 without credentials). ``stations``: the read-only instance's accounts
    (station -> password; default ``REGISTRY_STATIONS``)."""
    accounts = dict(stations if stations is not None else REGISTRY_STATIONS)
    binary = _find_tool("docker-registry")
    reason = available("registry")
    if binary is None or reason is not None:
        raise ServerStartError(reason or "docker-registry not found")
    storage_root = Path(tempfile.mkdtemp(prefix="pht-registry-storage-"))
    try:
        def prepare(readonly: bool) -> Callable[[Path], tuple[list[str], list[Probe], Any]]:
            def prepare_in(tmp: Path) -> tuple[list[str], list[Probe], Any]:
                port = free_port()
                htpasswd = tmp / "htpasswd"
                _htpasswd(htpasswd, accounts if readonly else dict([REGISTRY_RESEARCHER]))
                config = _registry_config(tmp, storage_root, port, htpasswd, readonly=readonly)
                return [binary, "serve", str(config)], [(f"http://{HOST}:{port}/", None, None)], port
            return prepare_in

        with _launch("registry", prepare(False), startup_timeout=startup_timeout, attempts=attempts) as rw, \
                _launch("registry-readonly", prepare(True), startup_timeout=startup_timeout,
                        attempts=attempts) as ro:
            yield RegistryServer(push_host=f"{HOST}:{rw.detail}", pull_host=f"{HOST}:{ro.detail}",
                                 researcher=REGISTRY_RESEARCHER, stations=accounts,
                                 storage=storage_root, pids=(rw.proc.pid, ro.proc.pid))
    finally:
        shutil.rmtree(storage_root, ignore_errors=True)
