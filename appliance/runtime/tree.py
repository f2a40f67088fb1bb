"""Publishes the runtime tree under node/run_dir: one value per file, like sysfs.

Each file is written to a temporary name and renamed, so a reader never sees half a
value; a file is rewritten only when its value changed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path


class RuntimeTree:
    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.root = Path(run_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self._base = str(self.root)
        self._last: dict[str, str] = {}
        self._dirs: set[str] = {""}

    def set(self, rel: str, value: object) -> None:
        # Plain os calls and a cache of the directories made: this runs on the event
        # loop, also right after a takeover (pathlib cost about 3x as much per file).
        text = str(value)
        if self._last.get(rel) == text:
            return
        head, _, name = rel.rpartition("/")
        if head not in self._dirs:
            os.makedirs(f"{self._base}/{head}", exist_ok=True)
            self._dirs.add(head)
        path = f"{self._base}/{rel}"
        tmp = f"{self._base}/{head}/.{name}.tmp" if head else f"{self._base}/.{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, (text + "\n").encode())
        finally:
            os.close(fd)
        os.rename(tmp, path)
        self._last[rel] = text

    def update(self, values: dict[str, object]) -> None:
        for rel, v in values.items():
            self.set(rel, v)

    def set_json(self, rel: str, value: object) -> None:
        self.set(rel, json.dumps(value, sort_keys=True))

    def remove(self, folder: str) -> None:
        """Delete a folder of the tree (an interface or a group a reload removed), so
        no reader finds its last values as if they were current."""
        prefix = folder.rstrip("/") + "/"
        for rel in [r for r in self._last if r.startswith(prefix)]:
            del self._last[rel]
        self._dirs = {d for d in self._dirs if d != folder and not d.startswith(prefix)}
        shutil.rmtree(f"{self._base}/{folder}", ignore_errors=True)


def read_tree(run_dir: str | os.PathLike[str]) -> dict[str, str]:
    """Every value under the runtime tree as {relative path: value}."""
    root = Path(run_dir)
    out: dict[str, str] = {}
    if not root.is_dir():
        return out
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.name.startswith("."):
            try:
                out[str(p.relative_to(root))] = p.read_text().strip()
            except OSError:
                continue
    return out
