"""Podman on this host: which OCI runtime it must use, and the command that serves its Docker-compatible API.

The station talks to Podman through that API (``DockerRuntime(base_url=...)``). Podman's default OCI runtime on
Debian, crun, refuses hosts in cgroup *hybrid* mode (the v1 controllers plus a cgroup2 hierarchy mounted beside
them, usually at ``/sys/fs/cgroup/unified``): "crun: cgroups in hybrid mode not supported, drop all controllers
from cgroupv2". runc (which Docker uses, and Debian's ``docker.io`` depends on) runs on v1, hybrid and v2
alike. So on a hybrid host Podman gets ``--runtime runc``; on pure v1 and pure v2 hosts it keeps its default.
"""

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from .base import RuntimeFailure

CgroupLayout = Literal["v1", "hybrid", "v2"]
CGROUP_ROOT = "/sys/fs/cgroup"


def cgroup_layout(mountinfo: str) -> CgroupLayout:
    """The host's cgroup layout from ``/proc/self/mountinfo``: ``v2`` when the cgroup2 hierarchy is mounted
    at ``/sys/fs/cgroup`` itself, ``hybrid`` when it is mounted beside v1 controllers, else ``v1``."""
    v1, v2_beside = False, False
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        mount_point = fields[4]
        fstype = line.split(" - ", 1)[1].split()[0]
        if fstype == "cgroup2":
            if mount_point == CGROUP_ROOT:
                return "v2"
            v2_beside = True
        elif fstype == "cgroup":
            v1 = True
    return "hybrid" if v1 and v2_beside else "v1"


def oci_runtime(mountinfo: str | None = None, which: Callable[[str], str | None] = shutil.which) -> str | None:
    """The OCI runtime Podman needs here: ``"runc"`` on a hybrid host, ``None`` (Podman's default) elsewhere.

    Raises :class:`RuntimeFailure` on a hybrid host without runc (``apt-get install runc``)."""
    if mountinfo is None:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    if cgroup_layout(mountinfo) != "hybrid":
        return None
    if which("runc") is None:
        raise RuntimeFailure("this host mounts cgroups in hybrid mode, which Podman's default runtime crun "
                             "refuses, and runc is not installed (apt-get install runc)")
    return "runc"


def service_command(url: str, *, podman: str = "podman", global_args: Sequence[str] = (),
                    runtime: str | None = None) -> list[str]:
    """``podman [global_args] [--runtime R] system service --time=0 URL``: the API the station's Podman runtime
    talks to, with the OCI runtime :func:`oci_runtime` picks unless ``runtime`` is given."""
    chosen = runtime or oci_runtime()
    return [podman, *global_args, *(["--runtime", chosen] if chosen else []), "system", "service", "--time=0", url]


__all__ = ["CgroupLayout", "cgroup_layout", "oci_runtime", "service_command"]
