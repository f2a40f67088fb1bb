"""Every log ID the code logs is in the table of the doc its family belongs to, and
every ID the docs name is logged by the code.

Which doc documents which IDs is itself a table, in docs/architecture.md ("Log IDs:
where each one is documented"); this test reads it, so a new family is one row there.
An operator reading a log line looks its ID up in that doc's table, with what to do.

In the code, an ID is a string constant that starts with one (`"D040 sync %s ..."`,
`ratelog.warning(now, "D041", ...)`, the sync session's `Log("SYNC007", ...)`). Every
log call at info level and above must start its message with an ID; debug lines are
for developers and need none.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PRODUCT = REPO / "appliance"
ARCHITECTURE = REPO / "docs" / "architecture.md"
FAMILY_SECTION = "## Log IDs: where each one is documented"
# Docs an operator reads; every ID they mention must exist.
DOCS = [*sorted((REPO / "docs").glob("*.md")), REPO / "README.md", REPO / "bpf" / "README.md",
        *sorted((REPO / "packaging" / "doc").iterdir())]
LEVELS = {"info", "warning", "error", "exception", "critical"}
# What looks like a log ID at the start of a message: D040, SYNC007, VRRP_LINK, ...
ID_LIKE = re.compile(r"^([A-Z]{1,8}[0-9]{3}|[A-Z]{2,}_[A-Z][A-Z0-9_]*)(?![A-Za-z0-9_])")


@dataclass(frozen=True)
class Family:
    prefix: str  # "D", "SYNC", "VRRP_"
    lo: int | None  # None: a name family (VRRP_*), any suffix
    hi: int | None
    doc: Path

    def holds(self, ident: str) -> bool:
        if self.lo is None:
            return ident.startswith(self.prefix)
        m = re.fullmatch(rf"{re.escape(self.prefix)}([0-9]{{3}})", ident)
        return bool(m) and self.lo <= int(m.group(1)) <= self.hi  # type: ignore[operator]


def families() -> list[Family]:
    text = ARCHITECTURE.read_text()
    assert FAMILY_SECTION in text, f"{ARCHITECTURE.name} lost its section {FAMILY_SECTION!r}"
    section = text.split(FAMILY_SECTION, 1)[1].split("\n## ", 1)[0]
    out = []
    for row in section.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        doc = REPO / re.search(r"docs/[\w-]+\.md", cells[-1]).group(0)  # type: ignore[union-attr]
        for token in re.findall(r"`([^`]+)`(?:\s*[\u2013-]\s*`([^`]+)`)?", cells[0]):
            first, last = token
            if first.endswith("*"):
                out.append(Family(first[:-1], None, None, doc))
                continue
            m1 = re.fullmatch(r"([A-Z]+)([0-9]{3})", first)
            m2 = re.fullmatch(r"([A-Z]+)([0-9]{3})", last or first)
            assert m1 and m2 and m1.group(1) == m2.group(1), f"bad family cell: {cells[0]}"
            out.append(Family(m1.group(1), int(m1.group(2)), int(m2.group(2)), doc))
    assert out, f"no families in {ARCHITECTURE.name}'s {FAMILY_SECTION!r}"
    return out


def family_of(ident: str, fams: list[Family]) -> Family | None:
    return next((f for f in fams if f.holds(ident)), None)


# -- the code ----------------------------------------------------------------------------
def _strings(node: ast.AST) -> str | None:
    """The literal text a message argument starts with (a plain or f-string)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values and \
            isinstance(node.values[0], ast.Constant):
        return str(node.values[0].value)
    return None


def _source_files() -> list[Path]:
    return [p for p in sorted(PRODUCT.rglob("*.py")) if "testing" not in
            p.relative_to(PRODUCT).parts]


def code_ids(fams: list[Family]) -> dict[str, list[str]]:
    """ID of a known family -> where it appears ("appliance/daemon.py:140")."""
    found: dict[str, list[str]] = defaultdict(list)
    for p in _source_files():
        for node in ast.walk(ast.parse(p.read_text())):
            text = _strings(node) if isinstance(node, ast.Constant | ast.JoinedStr) else None
            m = ID_LIKE.match(text) if text is not None else None
            if m and family_of(m.group(1), fams):
                found[m.group(1)].append(f"{p.relative_to(REPO)}:{node.lineno}")
    return found


def _messages() -> list[tuple[str, ast.Call, str | None]]:
    """(where, call, message text) for every log call at info and above, and every
    `Log(...)` action the sync session returns for the transport to log."""
    out = []
    for p in _source_files():
        for node in ast.walk(ast.parse(p.read_text())):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            is_log = isinstance(node.func, ast.Attribute) and node.func.attr in LEVELS
            is_action = isinstance(node.func, ast.Name) and node.func.id == "Log"
            if not (is_log or is_action):
                continue
            texts = [t for t in (_strings(a) for a in node.args[:2]) if t is not None]
            out.append((f"{p.relative_to(REPO)}:{node.lineno}", node,
                        texts[0] if texts else None))
    return out


def unknown_families(fams: list[Family]) -> list[str]:
    out = []
    for where, _call, msg in _messages():
        m = ID_LIKE.match(msg) if msg else None
        if m and family_of(m.group(1), fams) is None:
            out.append(f"{m.group(1)} ({where})")
    return out


def log_calls_without_id() -> list[str]:
    bad = []
    for where, call, msg in _messages():
        if msg is None or ID_LIKE.match(msg):
            continue  # no literal: the message is built elsewhere (ratelog.py passes it on)
        rest = [ast.unparse(a) for a in call.args if _strings(a) is None]
        if msg.startswith("%s") and any("msg_id" in a for a in rest):
            continue  # passes on the ID an action carries (the sync session's Log)
        bad.append(f"{where}: {ast.unparse(call)[:90]}")
    return bad


# -- the docs ----------------------------------------------------------------------------
def _doc_text(doc: Path) -> str:
    text = doc.read_text()
    if doc == ARCHITECTURE:  # the family table names ranges, not IDs
        head, _, rest = text.partition(FAMILY_SECTION)
        text = head + (("\n## " + rest.split("\n## ", 1)[1]) if "\n## " in rest else "")
    return text


def documented(doc: Path) -> dict[str, int]:
    """IDs in the first cell of a table row of `doc` -> line number."""
    out = {}
    for n, row in enumerate(_doc_text(doc).splitlines(), 1):
        if not row.startswith("|"):
            continue
        first = row.strip("|").split("|")[0].replace("`", "")
        for ident in re.findall(r"[A-Z][A-Z0-9_]*", first):
            if ID_LIKE.fullmatch(ident):
                out[ident] = n
    return out


def mentioned(doc: Path, fams: list[Family]) -> dict[str, int]:
    """Every token in `doc` that is an ID of a known family -> first line."""
    out: dict[str, int] = {}
    for n, line in enumerate(_doc_text(doc).splitlines(), 1):
        for ident in re.findall(r"\b[A-Z][A-Z0-9_]*[A-Z0-9]\b", line):
            if ID_LIKE.fullmatch(ident) and family_of(ident, fams):
                out.setdefault(ident, n)
    return out


# -- the tests ---------------------------------------------------------------------------
def test_every_logged_id_is_in_its_familys_table():
    fams = families()
    problems = [f"{x} belongs to no family: add a row for its family to the table under "
                f"{FAMILY_SECTION!r} in docs/architecture.md" for x in unknown_families(fams)]
    for ident, where in sorted(code_ids(fams).items()):
        fam = family_of(ident, fams)
        assert fam is not None
        if ident not in documented(fam.doc):
            problems.append(f"{ident} ({where[0]}) is not in {fam.doc.relative_to(REPO)}'s "
                            f"log table: add `| {ident} | level | what it means, what to do |`")
    assert not problems, "\n".join(problems)


def test_every_documented_id_is_logged_and_in_the_right_doc():
    fams = families()
    logged = code_ids(fams)
    problems = []
    for doc in DOCS:
        rel = doc.relative_to(REPO)
        table = documented(doc)
        for ident, line in sorted(mentioned(doc, fams).items()):
            if ident not in logged:
                problems.append(f"{rel}:{line}: {ident} is documented but nothing logs it")
            elif ident in table and family_of(ident, fams).doc != doc:  # type: ignore[union-attr]
                problems.append(f"{rel}:{line}: {ident} has a row here, but its family's "
                                f"table is in {family_of(ident, fams).doc.relative_to(REPO)}")  # type: ignore[union-attr]
    assert not problems, "\n".join(problems)


def test_every_log_line_at_info_and_above_carries_an_id():
    bad = log_calls_without_id()
    assert not bad, ("log lines without a stable ID (docs/architecture.md, 'Log IDs'):\n"
                     + "\n".join(bad))


def test_the_checks_see_ids_in_the_code_and_the_docs():
    # Guards the scanners themselves: if a refactor hid every ID from them, the two
    # tests above would pass on nothing.
    fams = families()
    logged = code_ids(fams)
    for ident in ("D040", "D041", "J001", "DP003", "SYNC007", "SYNC023", "VRRP_TRANSITION"):
        assert ident in logged, ident
    assert family_of("D041", fams).doc.name == "failover.md"  # type: ignore[union-attr]
    assert family_of("D020", fams).doc.name == "operations.md"  # type: ignore[union-attr]
    assert "SYNC007" in documented(REPO / "docs" / "sync-protocol.md")
