"""Hosts as Linux network namespaces, joined by veth links to one bridge, for system tests
that need separate machines on one box (the chaos suite, ``tests/test_chaos.py``).

Each :class:`Host` is a network namespace with its own loopback and one link (``eth0``)
to a bridge in the root namespace; the root namespace holds the bridge's address, so a
test process can reach every host as a client would. A host's processes are started with
``ip netns exec``, each in a process group of its own; :meth:`Host.kill_all` kills every
process that lives in the namespace (what a power cut does to a machine), and
:meth:`Host.link_down` cuts its cable. Needs root and iproute2.

Names carry the creating process's id, so that :func:`remove_leftovers` can delete what a
killed test run left behind without touching a run that is still going.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import signal
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "cptn"
"""Start of every namespace and link name made here (``cptn<pid>...``)."""

IP = "ip"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([IP, *args], capture_output=True, text=True, check=check, timeout=30)


def available() -> str | None:
    """None when namespaces, veth pairs and bridges can be made here; else the reason."""
    probe = f"{PREFIX}{os.getpid()}p{uuid.uuid4().hex[:4]}"
    try:
        _ip("netns", "add", probe)
    except FileNotFoundError:
        return "iproute2 (`ip`) is not installed"
    except subprocess.CalledProcessError as exc:
        return f"the kernel refused a network namespace: {exc.stderr.strip()}"
    try:
        link = f"{PREFIX}{os.getpid() % 100000}t"
        made = _ip("link", "add", link, "type", "veth", "peer", "name", link + "x", check=False)
        if made.returncode != 0:
            return f"no veth pairs: {made.stderr.strip()}"
        _ip("link", "del", link, check=False)
        bridge = _ip("link", "add", link, "type", "bridge", check=False)
        if bridge.returncode != 0:
            return f"no bridges: {bridge.stderr.strip()}"
        _ip("link", "del", link, check=False)
        return None
    finally:
        _ip("netns", "del", probe, check=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers() -> None:
    """Delete namespaces and links of earlier runs whose process is gone (a killed test)."""
    owner = re.compile(rf"^{PREFIX}(\d+)-")
    names = _ip("netns", "list", check=False).stdout.split()
    for name in names:
        found = owner.match(name)
        if found and not _alive(int(found.group(1))):
            for pid in _ip("netns", "pids", name, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            _ip("netns", "del", name, check=False)
    for line in _ip("-o", "link", "show", check=False).stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        found = owner.match(name)
        if found and not _alive(int(found.group(1))):
            _ip("link", "del", name, check=False)


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.200.0.0/13 that no route of the root namespace overlaps."""
    used = []
    for line in _ip("-4", "route", "show", "table", "all", check=False).stdout.splitlines():
        word = line.split()[0] if line.split() else ""
        if word in ("local", "broadcast"):
            word = line.split()[1]
        with contextlib.suppress(ValueError):
            used.append(ipaddress.ip_network(word, strict=False))
    start = os.getpid() % 2048
    for step in range(2048):
        index = (start + step) % 2048
        candidate = ipaddress.ip_network(f"10.{200 + index // 256}.{index % 256}.0/24")
        if not any(candidate.overlaps(net) for net in used if net.prefixlen > 0):
            return candidate
    raise RuntimeError("no free /24 in 10.200.0.0/13")


@dataclass
class Host:
    """One namespace: its name, its address on the bridge, and the root side of its link."""

    network: Network
    role: str
    namespace: str
    address: str
    link: str
    processes: list[subprocess.Popen] = field(default_factory=list)

    def popen(self, argv: list[str], log_path: Path, env: dict, cwd: Path | None = None) -> subprocess.Popen:
        """Start ``argv`` inside this host, in a process group of its own, output to ``log_path``."""
        log = open(log_path, "ab")  # noqa: SIM115 - the child keeps it; closed in close()
        process = subprocess.Popen(
            [IP, "netns", "exec", self.namespace, *argv],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        process.log = log  # type: ignore[attr-defined]
        self.processes.append(process)
        return process

    def run(self, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a command inside this host to its end."""
        return subprocess.run(
            [IP, "netns", "exec", self.namespace, *argv], capture_output=True, text=True, timeout=timeout
        )

    def pids(self) -> list[int]:
        """Every process living in this namespace (whoever started it)."""
        return [int(p) for p in _ip("netns", "pids", self.namespace, check=False).stdout.split()]

    def kill_all(self, sig: int = signal.SIGKILL) -> list[int]:
        """Send ``sig`` to every process of the host; with SIGKILL, reap the ones started here."""
        pids = self.pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        if sig == signal.SIGKILL:
            for process in self.processes:
                if process.pid in pids:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        process.wait(timeout=10)
        return pids

    def link_down(self) -> None:
        """Cut the host's cable: nothing goes in or out until :meth:`link_up`."""
        _ip("link", "set", self.link, "down")

    def link_up(self) -> None:
        _ip("link", "set", self.link, "up")

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
        self.kill_all(signal.SIGKILL)
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
            process.log.close()


class Network:
    """A bridge in the root namespace and the hosts linked to it; :meth:`close` removes all."""

    def __init__(self):
        remove_leftovers()
        self.tag = f"{PREFIX}{os.getpid()}-{uuid.uuid4().hex[0]}"
        self.bridge = f"{self.tag}b"
        self.subnet = _free_subnet()
        addresses = self.subnet.hosts()
        self.gateway = str(next(addresses))
        self._addresses = addresses
        self.hosts: list[Host] = []
        self._closed = False
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def add_host(self, role: str) -> Host:
        """A new namespace with ``eth0`` on the bridge (and ``lo`` up); its address is the next free one."""
        index = len(self.hosts)
        namespace = f"{self.tag}-{role}"
        link = f"{self.tag}{index}"  # at most 15 with its peer's p: cptn + 7-digit pid + -x + index
        peer = f"{link}p"
        address = str(next(self._addresses))
        _ip("netns", "add", namespace)
        host = Host(self, role, namespace, address, link)
        self.hosts.append(host)
        _ip("link", "add", link, "type", "veth", "peer", "name", peer)
        _ip("link", "set", peer, "netns", namespace)
        _ip("link", "set", link, "master", self.bridge)
        _ip("link", "set", link, "up")
        inside = ["netns", "exec", namespace, IP]
        _ip(*inside, "link", "set", "lo", "up")
        _ip(*inside, "link", "set", peer, "name", "eth0")
        _ip(*inside, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", "eth0")
        _ip(*inside, "link", "set", "eth0", "up")
        return host

    def close(self) -> None:
        """Kill every process of every host, delete the namespaces (their links go with them), the bridge."""
        if self._closed:
            return
        self._closed = True
        for host in self.hosts:
            with contextlib.suppress(Exception):
                host.close()
            _ip("netns", "del", host.namespace, check=False)
            _ip("link", "del", host.link, check=False)
        _ip("link", "del", self.bridge, check=False)
