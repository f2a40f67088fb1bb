"""The BPF compiler: bcc (clang/LLVM) builds bpf/ and loads it, in a short-lived child.

The only module that imports bcc. `load` runs this module as a child process
(`python -m appliance.datapath.compiler`): the child compiles the program with the
-D flags, loads it (BPF_PROG_LOAD, the verifier runs there) with its maps, and hands
the program's and every map's file descriptor to the parent over a Unix socket
(SCM_RIGHTS); then it exits. The kernel objects live on through the parent's
descriptors; the loader (appliance/datapath/loader.py) drives them with libbpf.

Why a child and not bcc in the daemon (measured, docs/benchmarks.md):
- LLVM and the compile's heap stay out of the daemon: its RSS with XDP fell from
  136 MB (218 MB before malloc_trim) to that of mode "off".
- kill -9 of a daemon that had LLVM mapped took about 20 ms to tear the address
  space down before the kernel closed its sockets, so the peer learnt of the death
  (the sync connection's reset) 20 ms late.

`compile_in_process` keeps the bcc object, for the test that checks layout.py's
ctypes mirrors against the types bcc built from the C.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.datapath import DatapathError, layout

# Generous: bcc takes about 2 s here, far more on a busy or slow box.
LOAD_TIMEOUT_S = 300.0
_MAX_MESSAGE = 1 << 16


def default_bpf_dir() -> Path:
    """bpf/ beside the package in a checkout; the .deb's copy otherwise."""
    here = Path(__file__).resolve().parents[2] / "bpf"
    if (here / layout.SOURCE_FILE).is_file():
        return here
    return Path("/usr/share/dhcp-hotbackup/bpf")


@dataclass(frozen=True, slots=True)
class Loaded:
    """What the child handed over: descriptors the caller now owns."""

    prog_fd: int
    map_fds: dict[str, int]  # layout.MAP_* name -> fd


def compile_in_process(cflags: Sequence[str] = (), bpf_dir: Path | None = None
                       ) -> tuple[Any, Any]:
    """(bcc.BPF, its loaded XDP function) in this process. Raises DatapathError."""
    from bcc import BPF

    src = (bpf_dir or default_bpf_dir()).resolve()
    # bcc reads the file into memory, so includes resolve through -I only.
    flags = [f"-I{src}", *cflags]
    try:
        bpf = BPF(src_file=str(src / layout.SOURCE_FILE).encode(), cflags=flags)
        fn = bpf.load_func(layout.PROG_NAME.encode(), BPF.XDP)
    except Exception as e:  # bcc raises bare Exception
        raise DatapathError(f"cannot load {src / layout.SOURCE_FILE}: {e}") from e
    return bpf, fn


def load(cflags: Sequence[str] = (), bpf_dir: Path | None = None,
         timeout: float = LOAD_TIMEOUT_S) -> Loaded:
    """Compile and load bpf/ in a child process; returns the descriptors. Raises
    DatapathError with the compiler's message (or the child's stderr) on failure."""
    src = (bpf_dir or default_bpf_dir()).resolve()
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    env = dict(os.environ)
    # The child imports this package from wherever the parent did (checkout or .deb).
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    # stderr to a file, not a pipe: clang may say more than a pipe holds, and nobody
    # reads it until the child has sent its answer.
    errfile = tempfile.TemporaryFile()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "appliance.datapath.compiler", "--fd",
             str(child.fileno()), "--bpf-dir", str(src), "--", *cflags],
            pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=errfile, env=env)
    except OSError as e:
        parent.close()
        child.close()
        errfile.close()
        raise DatapathError(f"cannot start the BPF compiler ({sys.executable}): {e}") from e
    child.close()  # only the child holds its end now: EOF if it dies
    fds: list[int] = []
    try:
        parent.settimeout(timeout)
        try:
            msg, fds, _flags, _addr = socket.recv_fds(parent, _MAX_MESSAGE, 1 + len(layout.MAPS))
        except TimeoutError:
            proc.kill()
            raise DatapathError(f"compiling {src / layout.SOURCE_FILE} took more than "
                                f"{timeout:.0f} s") from None
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        errfile.seek(0)
        err = errfile.read()
        try:
            reply = json.loads(msg) if msg else {}
        except ValueError:
            reply = {}
        if "error" in reply:
            raise DatapathError(reply["error"])
        names = reply.get("maps")
        if not msg or names is None or len(fds) != 1 + len(names):
            tail = err.decode(errors="replace").strip().splitlines()[-5:]
            raise DatapathError(f"the BPF compiler exited ({proc.returncode}) without a "
                                f"program: {' | '.join(tail) or 'no message'}")
        loaded = Loaded(fds[0], dict(zip(names, fds[1:], strict=True)))
        fds = []  # the caller owns them now
        return loaded
    finally:
        for fd in fds:
            os.close(fd)
        parent.close()
        errfile.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _child(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m appliance.datapath.compiler",
                                description="Compile and load bpf/, hand the file "
                                "descriptors to the parent (SCM_RIGHTS on --fd).")
    p.add_argument("--fd", type=int, required=True, help="a SOCK_SEQPACKET Unix socket")
    p.add_argument("--bpf-dir", type=Path, required=True)
    p.add_argument("cflags", nargs="*")
    a = p.parse_args(argv)
    sock = socket.socket(fileno=a.fd)
    try:
        bpf, fn = compile_in_process(a.cflags, a.bpf_dir)
    except DatapathError as e:
        text = str(e)
        if len(text) > _MAX_MESSAGE // 4:  # clang can be long-winded; the start says most
            text = text[: _MAX_MESSAGE // 4] + " [...]"
        sock.send(json.dumps({"error": text}).encode())
        return 1
    names = [spec.name for spec in layout.MAPS]
    fds = [fn.fd, *(bpf[n.encode()].map_fd for n in names)]
    socket.send_fds(sock, [json.dumps({"maps": names}).encode()], fds)
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
