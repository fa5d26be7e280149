"""Podman's OCI runtime follows the host's cgroup layout: crun refuses hybrid hosts, so they get runc.

The real proof is ``tests/test_runtime_docker.py``'s ``[podman]`` cases, whose service is started with
:func:`station.runtimes.podman.service_command` on whatever host runs the suite; these tests pin the decision
on the three layouts, from mountinfo lines as each kind of host writes them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from station.runtimes.base import RuntimeFailure
from station.runtimes.podman import cgroup_layout, oci_runtime, service_command

V1 = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
"""
HYBRID = V1 + "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
V2 = "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"


@pytest.mark.parametrize("mountinfo,layout", [(V1, "v1"), (HYBRID, "hybrid"), (V2, "v2"), ("", "v1")])
def test_cgroup_layout(mountinfo: str, layout: str) -> None:
    assert cgroup_layout(mountinfo) == layout


def test_hybrid_hosts_get_runc_and_the_others_podmans_default() -> None:
    assert oci_runtime(HYBRID, which=lambda name: f"/usr/sbin/{name}") == "runc"
    assert oci_runtime(V1, which=lambda name: None) is None
    assert oci_runtime(V2, which=lambda name: None) is None


def test_a_hybrid_host_without_runc_is_refused_with_what_to_install() -> None:
    with pytest.raises(RuntimeFailure, match=r"hybrid mode.*apt-get install runc"):
        oci_runtime(HYBRID, which=lambda name: None)


def test_the_service_command_names_the_chosen_runtime() -> None:
    assert service_command("unix:///s.sock", podman="/usr/bin/podman", global_args=["--root", "/r"],
                           runtime="runc") == ["/usr/bin/podman", "--root", "/r", "--runtime", "runc", "system",
                                               "service", "--time=0", "unix:///s.sock"]
    expected = oci_runtime(Path("/proc/self/mountinfo").read_text())
    assert ("--runtime" in service_command("unix:///s.sock")) == (expected is not None)
