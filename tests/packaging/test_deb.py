"""The Debian package, built, checked, installed and run under real systemd.

    make deb ─> dist/dhcp-hotbackup_<version>_all.deb ─> lintian (no errors)
        └─> a fresh Debian 12 root (debootstrap, cached) booted with
            `systemd-nspawn --boot` in a network namespace of ours:

    client netns (udhcpc) eth0 ══ veth ══ eth1 192.0.2.2/24  container netns
                                                           systemd + dhcp-hotbackup.service

`apt-get install ./dhcp-hotbackup_*.deb` inside the container; then the unit is driven
with `nsenter -t <leader> -a systemctl ...`: start (READY), reload (a new pool is
served), a hung daemon (SIGSTOP) restarted by the watchdog, stop, an upgrade in place
and a purge.

The root is debootstrapped once (minbase + systemd + the package's Depends, read from
packaging/debian/control; about 1.5 minutes) and kept as a tarball under
/var/cache/dhcp-hotbackup-test/, keyed by that package list, so later runs unpack it in
seconds. The container has no route out: the Depends are installed into the root while
it is built from Debian's archive, and apt in the container resolves the .deb against
them offline (a missing or unsatisfiable Depends fails the install).

Everything runs as root; the container, the namespaces and the unpacked root are
removed even when a test fails.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.testing.netns import Netns, Topology, wait_for
from appliance.testing.require import missing, require_root, require_tools

pytestmark = [pytest.mark.slow, pytest.mark.netns]

REPO = Path(__file__).resolve().parents[2]
CONTROL = REPO / "packaging" / "debian" / "control"
CHANGELOG = REPO / "packaging" / "debian" / "changelog"
CACHE = Path(os.environ.get("DHB_TEST_CACHE", "/var/cache/dhcp-hotbackup-test"))
SUITE = "bookworm"
MIRROR = os.environ.get("DHB_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# systemd to boot; man-db because `systemd-analyze verify` checks Documentation=man:.
BASE_PACKAGES = ("systemd", "systemd-sysv", "man-db")
# debootstrap resolves real dependencies only: a Depends that needs a virtual package
# gets its provider named here (python3-cryptography needs python3-cffi-backend-api-*,
# which python3-cffi-backend provides), or the root fails to configure.
PROVIDERS = {"python3-cryptography": ("python3-cffi-backend",)}
# What the unit's hardening leaves the daemon is checked inside the unit; the
# container itself must grant what a host would: XDP needs CAP_NET_ADMIN, CAP_BPF and
# CAP_PERFMON, and nspawn's own seccomp filter blocks bpf(2) unless it is allowed.
NSPAWN_CAPS = "CAP_NET_ADMIN,CAP_BPF,CAP_PERFMON"
UNIT = "dhcp-hotbackup.service"
TREE = "etc/dhcp-hotbackup"
SERVER_CIDR = "192.0.2.2/24"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _run(cmd: list[str], timeout: float = 600, check: bool = True, **kw: object
         ) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       **kw)  # type: ignore[call-overload]
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {r.returncode}:\n"
                             f"{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    return r


def _version() -> str:
    m = re.match(r"dhcp-hotbackup \(([^)]+)\)", CHANGELOG.read_text())
    assert m, "packaging/debian/changelog has no version on its first line"
    return m.group(1)


# -- the package ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def deb() -> Path:
    require_root("building a Debian root, booting it with systemd-nspawn in a network "
                 "namespace and running a DHCP client")
    require_tools("dpkg-buildpackage", "dh", "help2man", "lintian")
    t0 = time.monotonic()
    _run(["make", "-C", str(REPO), "deb"], timeout=900)
    print(f"make deb: {time.monotonic() - t0:.1f}s")
    path = REPO / "dist" / f"dhcp-hotbackup_{_version()}_all.deb"
    assert path.is_file(), f"make deb did not leave {path}"
    return path


def test_make_deb_builds_outside_the_tree(deb: Path) -> None:
    # Nothing that a build generates may be left in the checkout (dist/ is ignored).
    for leftover in ("debian", "build", ".pybuild", "packaging/debian/.debhelper",
                     "packaging/debian/files", "packaging/debian/dhcp-hotbackup",
                     "packaging/debian/debhelper-build-stamp", "packaging/debian/dhcp-hotbackup.8"):
        assert not (REPO / leftover).exists(), f"the build left {leftover} in the checkout"
    dirty = _run(["git", "-C", str(REPO), "status", "--porcelain", "--ignored",
                  "--", "packaging"]).stdout
    assert "!!" not in dirty, f"ignored files generated under packaging/:\n{dirty}"
    info = _run(["dpkg-deb", "--field", str(deb), "Package", "Version", "Architecture"]).stdout
    assert f"Version: {_version()}" in info and "Architecture: all" in info, info


def test_lintian_reports_no_errors(deb: Path) -> None:
    r = _run(["lintian", "--show-overrides", "--tag-display-limit", "0", str(deb)], check=False)
    tags = [ln for ln in r.stdout.splitlines() if re.match(r"^[EWIXOP]: ", ln)]
    errors = [ln for ln in tags if ln.startswith("E: ")]
    print("lintian:\n  " + "\n  ".join(tags or ["(no tags)"]))
    assert not errors, "lintian errors:\n" + "\n".join(errors)


def test_package_contents_and_metadata(deb: Path) -> None:
    # perms owner size date time ./name[ -> target]
    files = {ln.split(None, 5)[5].split(" -> ")[0].lstrip(".").rstrip("/")
             for ln in _run(["dpkg-deb", "-c", str(deb)]).stdout.splitlines()}
    for need in ("/usr/bin/dhcp-hotbackup",
                 "/lib/systemd/system/dhcp-hotbackup.service",
                 "/usr/share/dhcp-hotbackup/bpf/dhcp_steer.bpf.c",
                 "/usr/share/dhcp-hotbackup/bpf/dhcp_steer.h",
                 "/usr/share/man/man8/dhcp-hotbackup.8.gz",
                 "/usr/share/doc/dhcp-hotbackup/README.md",
                 "/usr/share/doc/dhcp-hotbackup/README.config-tree",
                 "/usr/share/doc/dhcp-hotbackup/docs/packaging.md",
                 "/usr/share/doc/dhcp-hotbackup/copyright",
                 "/var/lib/dhcp-hotbackup",
                 "/usr/lib/python3/dist-packages/appliance/daemon.py",
                 "/etc/dhcp-hotbackup/client/interface",
                 "/etc/dhcp-hotbackup/pools/lan/subnet"):
        assert need in files, f"{need} not in the package"
    assert not any("/appliance/testing" in f for f in files), "test support is shipped"
    assert "/etc/dhcp-hotbackup/sync/key" not in files, "a secret is shipped"

    ctl = _run(["dpkg-deb", "--field", str(deb), "Depends"]).stdout
    for dep in ("python3-bpfcc", "python3-sdnotify", "python3-cryptography", "libbpf1",
                "procps"):
        assert dep in ctl, f"Depends lacks {dep}: {ctl}"
    for test_only in ("scapy", "pyroute2"):
        assert test_only not in ctl, f"the product does not import {test_only}; only tests do"

    with tempfile.TemporaryDirectory() as d:
        _run(["dpkg-deb", "--control", str(deb), d])
        conffiles = Path(d, "conffiles").read_text().split()
        assert conffiles and all(c.startswith("/etc/dhcp-hotbackup/") for c in conffiles)
        assert "/etc/dhcp-hotbackup/node/name" in conffiles
        for script in ("postinst", "postrm", "prerm"):
            _run(["sh", "-n", str(Path(d, script))])


# -- the Debian root --------------------------------------------------------------------
def control_depends() -> list[str]:
    """The binary package's Depends, first alternative, without versions or substvars."""
    text = CONTROL.read_text()
    stanza = text.split("\nPackage: ", 1)[1]
    m = re.search(r"^Depends:(.*?)(?=^\S)", stanza, re.M | re.S)
    assert m, "no Depends in packaging/debian/control"
    names = []
    for item in m.group(1).split(","):
        item = item.strip()
        if not item or item.startswith("${"):
            continue
        names.append(re.split(r"[\s(:|]", item.split("|")[0].strip())[0])
    return names


def root_tarball() -> Path:
    """A debootstrapped Debian 12 root as a tarball, built once per package list."""
    depends = control_depends()
    packages = sorted({*BASE_PACKAGES, *depends,
                       *(p for d in depends for p in PROVIDERS.get(d, ()))})
    spec = json.dumps({"suite": SUITE, "mirror": MIRROR, "variant": "minbase",
                       "include": packages}, sort_keys=True)
    key = hashlib.sha256(spec.encode()).hexdigest()[:16]
    tarball = CACHE / f"{SUITE}-{key}.tar"
    if tarball.exists():
        return tarball
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if tarball.exists():
            return tarball
        work = Path(tempfile.mkdtemp(prefix="build-", dir=CACHE))
        try:
            t0 = time.monotonic()
            root = work / "root"
            _run(["debootstrap", "--variant=minbase", f"--include={','.join(packages)}",
                  SUITE, str(root), MIRROR], timeout=1800)
            _run(["chroot", str(root), "apt-get", "clean"])
            (root / "etc/hostname").write_text("dhb-pkg-test\n")
            (root / "etc/spec.json").write_text(spec + "\n")
            _run(["tar", "-C", str(root), "-cf", str(work / "root.tar"), "."])
            os.replace(work / "root.tar", tarball)
            print(f"debootstrapped {tarball.name} in {time.monotonic() - t0:.0f}s: {spec}")
        finally:
            _remove_tree(work)
    return tarball


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve())
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mnt = line.split()[4].replace("\\040", " ")
        if mnt == prefix or mnt.startswith(prefix + "/"):
            out.append(mnt)
    return sorted(out, key=len, reverse=True)


def _remove_tree(path: Path) -> None:
    """rm -rf that never follows a mount out of `path` (debootstrap mounts /proc)."""
    for mnt in _mounts_under(path):
        subprocess.run(["umount", "-l", mnt], check=False)
    if _mounts_under(path):
        raise RuntimeError(f"mounts still under {path}; not removing it")
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False)


# -- the container ----------------------------------------------------------------------
class Container:
    """A Debian root booted with systemd-nspawn in network namespace `netns`."""

    def __init__(self, root: Path, netns: str, name: str, log: Path) -> None:
        self.root = root
        self.netns = netns
        self.name = name
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.leader = 0
        self.install_output = ""
        self.lease_ip: str | None = None

    def boot(self) -> None:
        kver = os.uname().release
        cmd = ["systemd-nspawn", "--boot", "--register=no", "--keep-unit",
               f"--machine={self.name}", f"--directory={self.root}",
               f"--network-namespace-path=/run/netns/{self.netns}",
               f"--capability={NSPAWN_CAPS}", "--system-call-filter=bpf",
               "--console=passive",
               # bcc compiles against the running kernel's headers: the host's.
               "--bind-ro=/usr/src", f"--bind-ro=/lib/modules/{kver}"]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        self.leader = wait_for(self._find_leader, 30, 0.1, "the container's init")
        wait_for(self._booted, 90, 0.5, "systemd in the container to finish booting")

    def _find_leader(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"systemd-nspawn exited {self.proc.returncode}:\n"
                                 f"{self.log.read_text()[-3000:]}")
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            kids = (task / "children").read_text().split()
            if kids:
                return int(kids[0])
        return 0

    def _booted(self) -> bool:
        r = self.sh("systemctl", "is-system-running", check=False)
        state = r.stdout.strip()
        if state == "degraded":
            failed = self.sh("systemctl", "--failed", "--no-legend", check=False).stdout
            print(f"container booted degraded; failed units:\n{failed}")
        return state in ("running", "degraded")

    def sh(self, *cmd: str, check: bool = True, timeout: float = 120
           ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the container (all its namespaces), clean environment."""
        return _run(["nsenter", "-t", str(self.leader), "-a", "env", "-i", PATH_ENV,
                     "LANG=C.UTF-8", *cmd], timeout=timeout, check=check)

    def show(self, *props: str) -> dict[str, str]:
        out = self.sh("systemctl", "show", UNIT, *(f"--property={p}" for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self) -> str:
        return self.sh("journalctl", "--unit", UNIT, "--output", "cat", "--no-pager",
                       check=False).stdout

    def path(self, rel: str) -> Path:
        return self.root / rel

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        if self.leader:
            self.sh("systemctl", "poweroff", check=False, timeout=30)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            # nspawn turns SIGTERM into a clean poweroff of the container; then SIGKILL.
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.kill(self.proc.pid, sig)
                    self.proc.wait(15)
                    break
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    continue
        try:
            Path(f"/run/systemd/nspawn/propagate/{self.name}").rmdir()
        except OSError:
            pass


@dataclass
class Box:
    ct: Container
    topo: Topology
    srv: Netns  # the container's network namespace
    cli: Netns  # the DHCP client's


@pytest.fixture(scope="module")
def box(deb: Path) -> Iterator[Box]:
    """The booted container with the package installed, and a client namespace."""
    require_tools("debootstrap", "systemd-nspawn", "nsenter", "udhcpc", "ip")
    kbuild = Path(f"/lib/modules/{os.uname().release}/build")
    if not (kbuild / "include").exists():
        missing(f"no kernel headers at {kbuild} for bcc")
    t0 = time.monotonic()
    tarball = root_tarball()
    print(f"root tarball {tarball} ready in {time.monotonic() - t0:.1f}s")
    work = Path(tempfile.mkdtemp(prefix="dhb-pkg-", dir="/var/tmp"))
    topo = Topology(prefix="dhp")
    ct: Container | None = None
    try:
        root = work / "root"
        root.mkdir()
        _run(["tar", "-C", str(root), "-xf", str(tarball)])
        srv = topo.host("srv")
        cli = topo.host("cli")
        topo.veth(srv, "eth1", cli, "eth0")
        topo.addr(srv, "eth1", SERVER_CIDR)
        ct = Container(root, srv.name, f"dhbpkg{os.getpid() % 100000}", work / "nspawn.log")
        t1 = time.monotonic()
        ct.boot()
        print(f"container booted in {time.monotonic() - t1:.1f}s")
        shutil.copy(deb, root / "root" / deb.name)
        r = ct.sh("env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y",
                  "--no-install-recommends", f"/root/{deb.name}", check=False, timeout=300)
        assert r.returncode == 0, (
            "apt-get install of the .deb failed in the fresh root (a Depends missing from "
            f"Debian 12 or from the cached root?):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        ct.install_output = r.stdout
        yield Box(ct, topo, srv, cli)
    finally:
        if ct is not None:
            ct.stop()
        topo.close()
        _remove_tree(work)


def test_installs_into_a_fresh_debian_root(box: Box) -> None:
    ct = box.ct
    out = ct.install_output
    assert "Setting up dhcp-hotbackup" in out, out
    # Every Depends was already in the root: apt installed our package and nothing else.
    assert re.search(r"0 upgraded, 1 newly installed", out), out
    # The files the unit names, where it names them.
    unit = ct.path("lib/systemd/system/dhcp-hotbackup.service").read_text()
    for path in re.findall(r"^Exec\w+=(/\S+)", unit, re.M):
        assert os.access(ct.path(path.lstrip("/")), os.X_OK), f"{path} (from the unit) missing"
    assert ct.path("usr/share/dhcp-hotbackup/bpf/dhcp_steer.bpf.c").is_file()
    assert ct.path("var/lib/dhcp-hotbackup").is_dir()
    # sync/key: generated by the postinst, 0600, not a conffile.
    key = ct.path(f"{TREE}/sync/key")
    assert key.is_file() and (key.stat().st_mode & 0o777) == 0o600
    assert len(key.read_text().strip()) == 64
    # The example tree validates as shipped (with its generated key).
    ok = ct.sh("dhcp-hotbackup", "check-config").stdout
    assert "ok" in ok and "VRRP vrid 10" in ok, ok
    # Not enabled, not started: the example addresses are not for a real LAN.
    assert ct.show("ActiveState", "UnitFileState") == {"ActiveState": "inactive",
                                                       "UnitFileState": "disabled"}
    # The product's runtime imports resolve with Debian's packages alone.
    ct.sh("python3", "-c", "import appliance.daemon, appliance.datapath.loader, sdnotify")
    r = ct.sh("systemd-analyze", "verify", UNIT, check=False)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), \
        f"systemd-analyze verify:\n{r.stdout}{r.stderr}"
    assert "dhcp-hotbackup" in ct.sh("man", "-w", "dhcp-hotbackup").stdout


def _write(ct: Container, rel: str, value: str) -> None:
    p = ct.path(f"{TREE}/{rel}")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(value + "\n")


def _udhcpc(box: Box, tries: int = 6) -> str | None:
    """One udhcpc run in the client namespace; the address it was offered and acked."""
    cmd = ["udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", str(tries), "-T", "1",
           "-s", "/bin/true"]
    r = box.topo.run(box.cli, cmd, check=False, timeout=30)
    m = re.search(r"lease of (\S+) obtained", r.stdout + r.stderr)
    return m.group(1) if m else None


def _xdp_on_eth1(box: Box) -> bool:
    return " xdp" in box.topo.run(box.srv, ["ip", "link", "show", "eth1"]).stdout


def test_start_ready_reload_and_a_client_lease(box: Box) -> None:
    ct = box.ct
    # The operator's tree: a standalone server on eth1, a pool for another subnet only.
    shutil.rmtree(ct.path(f"{TREE}/vrrp"))
    shutil.rmtree(ct.path(f"{TREE}/sync"))
    shutil.rmtree(ct.path(f"{TREE}/pools/lan"))
    _write(ct, "node/name", "box1")
    _write(ct, "pools/far/subnet", "198.18.0.0/24")
    _write(ct, "pools/far/range", "198.18.0.100-198.18.0.199")
    ct.sh("dhcp-hotbackup", "check-config")

    t0 = time.monotonic()
    ct.sh("systemctl", "start", UNIT, timeout=120)  # Type=notify: returns after READY=1
    st = ct.show("ActiveState", "SubState", "StatusText", "MainPID", "WatchdogUSec")
    print(f"start -> READY in {time.monotonic() - t0:.1f}s: {st}")
    assert st["ActiveState"] == "active" and st["SubState"] == "running", st
    assert st["StatusText"].startswith("active"), st
    assert st["WatchdogUSec"] == "10s", st
    # /run is the container's own tmpfs: look from inside.
    assert ct.sh("test", "-d", "/run/dhcp-hotbackup", check=False).returncode == 0
    wait_for(lambda: ct.sh("cat", "/run/dhcp-hotbackup/role", check=False).stdout.strip()
             == "active", 10, 0.2, "runtime tree role=active")
    attach = ct.sh("cat", "/run/dhcp-hotbackup/datapath/attach_mode").stdout.strip()
    assert attach in ("native", "generic"), attach
    assert _xdp_on_eth1(box), "no XDP program on eth1"

    # No pool for the client's subnet yet: no lease.
    assert _udhcpc(box, tries=2) is None

    # A new pool and `systemctl reload`: the daemon applies it and serves it.
    _write(ct, "pools/lan/subnet", "192.0.2.0/24")
    _write(ct, "pools/lan/range", "192.0.2.100-192.0.2.199")
    _write(ct, "pools/lan/router", "192.0.2.1")
    pid = st["MainPID"]
    ct.sh("systemctl", "reload", UNIT)
    # "D022 reload: applying pools/lan ..." (the daemon names what it applied).
    d022 = re.compile(r"D022 reload\b.*pools/lan")
    try:
        wait_for(lambda: d022.search(ct.journal()), 15, 0.2, "D022 naming pools/lan")
    except TimeoutError:
        raise AssertionError("no D022 for pools/lan after systemctl reload:\n"
                             + ct.journal()[-3000:]) from None
    assert ct.show("MainPID")["MainPID"] == pid, "reload restarted the daemon"

    ip = _udhcpc(box)
    assert ip is not None and ip.startswith("192.0.2."), "no lease after the reload"
    leases = json.loads(ct.sh("dhcp-hotbackup", "leases", "--json").stdout)
    assert [x["ip"] for x in leases] == [ip], leases
    ct.lease_ip = ip


def test_watchdog_restarts_a_hung_daemon(box: Box) -> None:
    ct = box.ct
    before = ct.show("MainPID", "NRestarts")
    assert int(before["MainPID"]) > 0, before
    t0 = time.monotonic()
    ct.sh("kill", "-STOP", before["MainPID"])

    def restarted() -> dict[str, str] | None:
        s = ct.show("MainPID", "NRestarts", "ActiveState", "SubState")
        ok = (int(s["NRestarts"]) > int(before["NRestarts"]) and s["MainPID"] not in
              ("0", before["MainPID"]) and s["SubState"] == "running")
        return s if ok else None

    after = wait_for(restarted, 60, 0.5, "the watchdog to restart the stopped daemon")
    print(f"SIGSTOP -> restarted and READY in {time.monotonic() - t0:.1f}s: {after}")
    journal = ct.journal()
    assert "Failed with result 'watchdog'" in journal
    assert "Fatal Python error: Aborted" in journal, "no Python stack from faulthandler"
    assert re.search(r"DP011 removed XDP program|xdp program .* detached", journal), \
        "ExecStopPost cleanup did not run after the watchdog kill"
    # The lease survived the kill.
    leases = json.loads(ct.sh("dhcp-hotbackup", "leases", "--json").stdout)
    assert [x["ip"] for x in leases] == [ct.lease_ip], leases


def test_stop_leaves_the_lan_clean(box: Box) -> None:
    ct = box.ct
    ct.sh("systemctl", "stop", UNIT, timeout=60)
    st = ct.show("ActiveState", "Result")
    assert st == {"ActiveState": "inactive", "Result": "success"}, st
    assert "D003 stopping" in ct.journal()
    assert ct.sh("test", "-e", "/run/dhcp-hotbackup", check=False).returncode != 0, \
        "RuntimeDirectory left behind"
    assert not _xdp_on_eth1(box), "XDP program left on eth1 after stop"


def test_upgrade_keeps_tree_and_leases_and_purge_removes_them(box: Box, deb: Path) -> None:
    ct = box.ct
    ct.sh("systemctl", "start", UNIT, timeout=120)
    pid = ct.show("MainPID")["MainPID"]
    # Reinstalling runs the upgrade path (preinst upgrade, postinst configure <old>).
    ct.sh("env", "DEBIAN_FRONTEND=noninteractive", "dpkg", "-i", f"/root/{deb.name}")
    tree = ct.path(TREE)
    assert (tree / "node/name").read_text().strip() == "box1", "an edited conffile was reset"
    assert (tree / "pools/lan/subnet").is_file() and (tree / "pools/far").is_dir()
    # Removed conffiles stay removed; dpkg's re-created empty folders are tidied away.
    assert not (tree / "vrrp").exists() and not (tree / "sync").exists()
    assert not list(tree.rglob("*.dpkg-*")), list(tree.rglob("*.dpkg-*"))
    ct.sh("dhcp-hotbackup", "check-config")
    # A running service is restarted on the new code.
    st = ct.show("MainPID", "ActiveState", "SubState")
    assert st["ActiveState"] == "active" and st["MainPID"] not in ("0", pid), st
    leases = json.loads(ct.sh("dhcp-hotbackup", "leases", "--json").stdout)
    assert [x["ip"] for x in leases] == [ct.lease_ip], leases

    # remove: the service stops, the tree and the leases stay.
    ct.sh("env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "remove", "-y", "dhcp-hotbackup")
    assert not ct.path("usr/bin/dhcp-hotbackup").exists()
    assert (tree / "node/name").is_file()
    assert list(ct.path("var/lib/dhcp-hotbackup").glob("leases.*"))
    # purge: both gone.
    ct.sh("env", "DEBIAN_FRONTEND=noninteractive", "dpkg", "--purge", "dhcp-hotbackup")
    assert not tree.exists() and not ct.path("var/lib/dhcp-hotbackup").exists()
