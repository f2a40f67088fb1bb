"""Network-namespace builders for tests, with guaranteed cleanup.

A Topology owns every namespace it creates and every process it starts in them; on
exit (even after a failed assertion) it ends those processes by PID and deletes the
namespaces. Names carry a per-run prefix so parallel runs and leftovers never clash.

    with Topology() as t:
        lan = t.lan()                       # a bridge in its own namespace
        a = t.host("a"); t.attach(a, lan, "eth1", "192.0.2.2/24")
        t.popen(a, ["dhcp-hotbackup", "run", ...])

Product code never imports this module (it shells out to `ip`, which the product
must not do).
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

_counter = itertools.count()


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


@dataclass
class Netns:
    name: str
    ifaces: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return self.name


class Topology:
    def __init__(self, prefix: str = "dh") -> None:
        self.prefix = f"{prefix}{os.getpid() % 100000}x{next(_counter)}"
        self.namespaces: list[Netns] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.mounts: list[Path] = []
        self.images: list[Path] = []  # loopfs() image files, removed after the unmounts
        self._veth = itertools.count()

    # -- lifecycle -------------------------------------------------------------------
    def __enter__(self) -> Topology:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for p in reversed(self.procs):
            self.stop(p)
        self.procs.clear()
        for ns in reversed(self.namespaces):
            _ip("netns", "del", ns.name, check=False)
            shutil.rmtree(Path("/etc/netns") / ns.name, ignore_errors=True)
        self.namespaces.clear()
        for path in reversed(self.mounts):
            subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)
        self.mounts.clear()
        for image in reversed(self.images):
            # `mount -o loop` set autoclear: the loop device goes with the last reference.
            image.unlink(missing_ok=True)
        self.images.clear()

    def tmpfs(self, path: Path, size_mb: int = 16) -> Path:
        """A small tmpfs at `path` (made if missing), unmounted at close(): a daemon's
        runtime tree lives on /run, a tmpfs, on the appliance."""
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs",
                        str(path)], check=True, capture_output=True)
        self.mounts.append(path)
        return path

    def loopfs(self, path: Path, size_mb: int = 32) -> Path:
        """A small ext4 file system of its own at `path` (made if missing): an image file
        beside it, mkfs'd and loop-mounted; unmounted and the image removed at close(),
        even after a failure. A disk a test can fill up (fallocate) and free again."""
        path.mkdir(parents=True, exist_ok=True)
        image = path.with_name(f".{path.name}.img")
        self.images.append(image)  # registered first: removed even if mkfs or mount fails
        with open(image, "wb") as f:
            f.truncate(size_mb << 20)
        # -m 0: no blocks reserved for root (the daemon runs as root and would use them);
        # no lazy init: no background writes by the kernel into the test's disk.
        subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", "-E",
                        "lazy_itable_init=0,lazy_journal_init=0", str(image)],
                       check=True, capture_output=True)
        subprocess.run(["mount", "-o", "loop", str(image), str(path)], check=True,
                       capture_output=True)
        self.mounts.append(path)
        # Shared: every `ip netns exec` (ours or another test's) copies the mount table,
        # and only a shared mount's copies (slaves there) see our unmount at close().
        subprocess.run(["mount", "--make-shared", str(path)], check=True,
                       capture_output=True)
        return path

    # -- building --------------------------------------------------------------------
    def host(self, name: str) -> Netns:
        ns = Netns(f"{self.prefix}-{name}")
        # `ip netns exec` binds /etc/netns/<ns>/* over /etc: a client script that rewrites
        # resolv.conf (Debian's dhclient-script does) then writes this copy, never the
        # host's own.
        etc = Path("/etc/netns") / ns.name
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text("# test namespace\n")
        _ip("netns", "add", ns.name)
        self.namespaces.append(ns)
        self.run(ns, ["ip", "link", "set", "lo", "up"])
        return ns

    def lan(self, name: str = "lan") -> Netns:
        """A namespace holding one bridge 'br0' that hosts attach to."""
        ns = self.host(name)
        self.run(ns, ["ip", "link", "add", "br0", "type", "bridge", "forward_delay", "0"])
        # No STP, no multicast snooping: VRRP and DHCP broadcasts reach every port at once.
        self.run(ns, ["ip", "link", "set", "br0", "type", "bridge", "mcast_snooping", "0"])
        self.run(ns, ["ip", "link", "set", "br0", "up"])
        return ns

    def veth(self, a: Netns, if_a: str, b: Netns, if_b: str) -> None:
        _ip("link", "add", "name", if_a, "netns", a.name, "type", "veth",
            "peer", "name", if_b, "netns", b.name)
        self.run(a, ["ip", "link", "set", if_a, "up"])
        self.run(b, ["ip", "link", "set", if_b, "up"])
        a.ifaces.append(if_a)
        b.ifaces.append(if_b)

    def attach(self, host: Netns, lan: Netns, ifname: str, cidr: str | None = None,
               mac: str | None = None) -> str:
        """Connect `host` to the bridge in `lan` with interface `ifname`; returns the
        bridge-side port name."""
        port = f"p{next(self._veth)}"
        self.veth(host, ifname, lan, port)
        self.run(lan, ["ip", "link", "set", port, "master", "br0"])
        if mac:
            self.run(host, ["ip", "link", "set", ifname, "address", mac])
        if cidr:
            self.addr(host, ifname, cidr)
        return port

    def addr(self, ns: Netns, ifname: str, cidr: str) -> None:
        self.run(ns, ["ip", "addr", "add", cidr, "dev", ifname])

    def link(self, ns: Netns, ifname: str, up: bool) -> None:
        self.run(ns, ["ip", "link", "set", ifname, "up" if up else "down"])

    # -- processes -------------------------------------------------------------------
    def run(self, ns: Netns, cmd: Sequence[str], check: bool = True, timeout: float = 60,
            **kw: object) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(["ip", "netns", "exec", ns.name, *cmd], capture_output=True,
                           text=True, timeout=timeout, **kw)  # type: ignore[call-overload]
        if check and r.returncode != 0:
            raise RuntimeError(f"in {ns}: {' '.join(cmd)} failed ({r.returncode}): "
                               f"{r.stderr.strip() or r.stdout.strip()}")
        return r

    def popen(self, ns: Netns, cmd: Sequence[str], **kw: object) -> subprocess.Popen[bytes]:
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        p = subprocess.Popen(["ip", "netns", "exec", ns.name, *cmd],
                             start_new_session=True, **kw)  # type: ignore[call-overload]
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen[bytes], sig: int = signal.SIGTERM,
             timeout: float = 5) -> int | None:
        """End a process this topology started (its whole session: `ip netns exec`
        execs the command, so the PID is the command's own)."""
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(5)
        return p.returncode

    def kill9(self, p: subprocess.Popen[bytes]) -> None:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(5)


def wait_for(pred, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):
    """Poll `pred` until it returns a truthy value; raise TimeoutError naming `what`.
    Tests wait on observable state this way instead of sleeping for a timer."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# -- entering a namespace from this process (appended for the datapath tests) --------
import contextlib  # noqa: E402 - appended section keeps the file's head unchanged
from collections.abc import Iterator  # noqa: E402

_CLONE_NEWNET = 0x40000000  # include/uapi/linux/sched.h


def _setns(fd: int) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def inside(ns: Netns | str) -> Iterator[None]:
    """Run a block with this thread in namespace `ns` (setns(2)), then return to the
    namespace it was in, even on error. Sockets, interface lookups and XDP attach
    calls made inside the block act in `ns`; sockets keep that namespace after it.

        with inside(srv):
            dp = Datapath.open("eth1", cfg)
            sock = socket.socket(...); sock.bind(("", 67))

    Only the calling thread moves, so use it from the test's own thread."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)
