"""Test modules are imported by basename (rootdir import mode, no __init__.py in tests/):
two files of one name in different folders stop `make test` at collection, although
each folder passes alone."""

from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent


def test_no_two_test_files_share_a_name() -> None:
    by_name: dict[str, list[str]] = defaultdict(list)
    for p in TESTS.rglob("test_*.py"):
        by_name[p.name].append(str(p.relative_to(TESTS)))
    twice = {n: ps for n, ps in by_name.items() if len(ps) > 1}
    assert not twice, f"rename one of each: {twice}"
