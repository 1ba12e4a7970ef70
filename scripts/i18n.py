"""The message catalogues of cnsx: extract the messages of the code, compile the .po files.

    python scripts/i18n.py extract   # add the code's new messages to every .po (msgstr empty),
                                     # and drop those the code no longer has
    python scripts/i18n.py compile   # write each .po's .mo beside it
    python scripts/i18n.py check     # exit 1 if a message has no translation or a .mo is stale

Messages are the first arguments of ``_("...")`` and ``ngettext("...", "...", n)`` calls in
cns_exchange/ (found by reading the code's syntax tree, so a message is one string literal).
A second catalogue, ``click.po``, holds click's own messages (its usage errors, prompts), read
the same way from the installed click's source: click marks them for gettext, and cnsx's
command line looks them up there (``cns_exchange.i18n.click_speaks``). It keeps the messages
of older click releases too, so one catalogue serves the locked click and the newest.
The compiler is a few lines of the GNU .mo format (Python ships none, and babel would be a
dependency for 60 lines); tests/test_i18n.py reads what it writes back with Python's own
gettext and checks the .po with GNU msgfmt. The .mo files are committed: they ship in the wheel.
"""

from __future__ import annotations

import ast
import re
import string
import struct
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "cns_exchange"
LOCALE = PACKAGE / "locale"
MARKERS = {"_": 1, "ngettext": 2}   # function -> how many leading string arguments are messages

HEADER = {
    "fr": ("Project-Id-Version: cnsx\n"
           "Language: fr\n"
           "MIME-Version: 1.0\n"
           "Content-Type: text/plain; charset=UTF-8\n"
           "Content-Transfer-Encoding: 8bit\n"
           "Plural-Forms: nplurals=2; plural=(n > 1);\n"),
}


@dataclass
class Entry:
    """One message: its msgid (and plural), the translations, and the files that use it."""

    msgid: str
    plural: str | None = None
    msgstr: list[str] = field(default_factory=lambda: [""])
    files: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)   # translator's comments ("# ..."), kept

    @property
    def key(self) -> tuple[str, str | None]:
        return self.msgid, self.plural

    @property
    def translated(self) -> bool:
        return all(self.msgstr) and len(self.msgstr) == (1 if self.plural is None else 2)


# ---------------------------------------------------------------------------------------------
# The code's messages


def extract(package: Path = PACKAGE, *, strict: bool = True) -> list[Entry]:
    """Every message of the code, in order of first use (file by file), with its files.
    ValueError for a marker called with something else than string literals (an f-string, a
    variable): such a message could not be in the catalogue. ``strict=False`` (another
    project's code) passes over such calls instead."""
    found: dict[tuple[str, str | None], Entry] = {}
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package.parent).as_posix()
        calls = [node for node in ast.walk(ast.parse(path.read_text("utf-8"), rel))
                 if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in MARKERS]
        for node in sorted(calls, key=lambda c: (c.lineno, c.col_offset)):
            count = MARKERS[node.func.id]
            args = node.args[:count]
            if len(args) < count or not all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in args):
                if not strict:
                    continue
                raise ValueError(f"{rel}:{node.lineno}: {node.func.id}() takes string literals, not an expression")
            msgid = args[0].value
            plural = args[1].value if count == 2 else None
            entry = found.setdefault((msgid, plural), Entry(msgid, plural, [""] * (1 if plural is None else 2)))
            if rel not in entry.files:
                entry.files.append(rel)
    return list(found.values())


def placeholders(text: str) -> set[str] | None:
    """The named placeholders of a brace-format text ({file}, {n:>3}), or None if the text
    is not one (a literal '{' in a hint that is never formatted)."""
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError:
        return None
    if not all(re.fullmatch(r"[A-Za-z_]\w*", name) for name in fields):
        return None   # '{ "123456" = "Anne" }' is TOML in a hint, not a placeholder
    return fields


# ---------------------------------------------------------------------------------------------
# .po files


_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "r": "\r"}


def _unquote(text: str, where: str) -> str:
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        raise ValueError(f"{where}: expected a quoted string")
    body, out, i = text[1:-1], [], 0
    while i < len(body):
        c = body[i]
        if c == "\\":
            if i + 1 >= len(body) or body[i + 1] not in _ESCAPES:
                raise ValueError(f"{where}: unknown escape in {text}")
            out.append(_ESCAPES[body[i + 1]])
            i += 2
        elif c == '"':
            raise ValueError(f"{where}: unescaped quote in {text}")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def parse_po(text: str, name: str = "<po>") -> tuple[dict[str, str], list[Entry]]:
    """Read a .po file: its header (as a dict) and its entries. ValueError naming the line
    for anything this small reader does not know (contexts, obsolete entries are refused)."""
    entries: list[Entry] = []
    header: dict[str, str] = {}
    current: Entry | None = None
    target: tuple[str, int] | None = None   # which string continuation lines extend
    pending_files: list[str] = []
    pending_comments: list[str] = []

    def finish() -> None:
        nonlocal current
        if current is None:
            return
        if current.msgid == "":
            for line in current.msgstr[0].splitlines():
                key, _, value = line.partition(":")
                header[key.strip()] = value.strip()
        else:
            entries.append(current)
        current = None

    for number, raw in enumerate(text.splitlines(), 1):
        where = f"{name}:{number}"
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#:"):
            pending_files += line[2:].split()
            continue
        if line.startswith("#~"):
            raise ValueError(f"{where}: obsolete entries are not kept (python scripts/i18n.py extract drops them)")
        if line.startswith("# ") or line == "#":
            pending_comments.append(line[2:])
            continue
        if line.startswith("#"):
            continue   # flags (#, python-brace-format) and extracted comments: written again by extract
        keyword, _, rest = line.partition(" ")
        if line.startswith('"'):
            if target is None or current is None:
                raise ValueError(f"{where}: a string with no keyword before it")
            value = _unquote(line, where)
            kind, index = target
            if kind == "msgid":
                current.msgid += value
            elif kind == "msgid_plural":
                current.plural = (current.plural or "") + value
            else:
                current.msgstr[index] += value
            continue
        if keyword == "msgid":
            finish()
            current = Entry(_unquote(rest.strip(), where), files=pending_files, comments=pending_comments)
            current.msgstr = []
            pending_files, pending_comments = [], []
            target = ("msgid", 0)
        elif keyword == "msgid_plural" and current is not None:
            current.plural = _unquote(rest.strip(), where)
            target = ("msgid_plural", 0)
        elif current is not None and (m := re.fullmatch(r"msgstr(?:\[(\d)\])?", keyword)):
            index = int(m.group(1) or 0)
            if index != len(current.msgstr):
                raise ValueError(f"{where}: msgstr[{index}] out of order")
            current.msgstr.append(_unquote(rest.strip(), where))
            target = ("msgstr", index)
        else:
            raise ValueError(f"{where}: cannot read {line[:40]!r}")
    finish()
    return header, entries


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t").replace("\r", "\\r")
    lines = escaped.split("\n")
    if len(lines) == 1:
        return f'"{escaped}"'
    parts = [line + "\\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
    return '""\n' + "\n".join(f'"{p}"' for p in parts)


def write_po(header: str, entries: list[Entry], domain: str = "cnsx") -> str:
    """The text of a .po file: the header, then each entry with its files and flags."""
    whose = "cnsx" if domain == "cnsx" else f"{domain}, as cnsx shows them"
    out = [f"# French messages of {whose}. Edit the msgstr lines; python scripts/i18n.py extract adds",
           "# the code's new messages, python scripts/i18n.py compile writes the .mo.",
           'msgid ""', f"msgstr {_quote(header)}", ""]
    for e in entries:
        out += [f"# {c}".rstrip() for c in e.comments]
        out.append("#: " + " ".join(e.files))
        if placeholders(e.msgid) or placeholders(e.plural or ""):
            out.append("#, python-brace-format")
        out.append(f"msgid {_quote(e.msgid)}")
        if e.plural is None:
            out.append(f"msgstr {_quote(e.msgstr[0] if e.msgstr else '')}")
        else:
            out.append(f"msgid_plural {_quote(e.plural)}")
            for i in range(2):
                out.append(f"msgstr[{i}] {_quote(e.msgstr[i] if i < len(e.msgstr) else '')}")
        out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# .mo files (GNU format: https://www.gnu.org/software/gettext/manual/html_node/MO-Files.html)


def compile_mo(header: str, entries: list[Entry]) -> bytes:
    """The .mo bytes of a catalogue: untranslated entries are left out (gettext then shows
    the English), keys sorted as the format asks, no hash table (readers search)."""
    pairs = {"": header}
    for e in entries:
        if not e.translated:
            continue
        key = e.msgid if e.plural is None else e.msgid + "\0" + e.plural
        pairs[key] = "\0".join(e.msgstr)
    keys = sorted(pairs, key=lambda k: k.encode("utf-8"))
    ids = [k.encode("utf-8") for k in keys]
    strs = [pairs[k].encode("utf-8") for k in keys]
    n = len(keys)
    start = 7 * 4 + 16 * n   # the header, then both tables of (length, offset)
    table_ids, table_strs, data = [], [], b""
    for blob, table in [*((b, table_ids) for b in ids), *((b, table_strs) for b in strs)]:
        table.append((len(blob), start + len(data)))
        data += blob + b"\0"
    head = struct.pack("<7I", 0x950412DE, 0, n, 7 * 4, 7 * 4 + 8 * n, 0, 0)
    tables = b"".join(struct.pack("<2I", *pair) for pair in table_ids + table_strs)
    return head + tables + data


def catalogues() -> list[Path]:
    """The .po files: one per language and domain (cnsx, click)."""
    return sorted(po for po in LOCALE.glob("*/LC_MESSAGES/*.po") if po.stem in DOMAINS)


@lru_cache(maxsize=None)
def messages(domain: str) -> list[Entry]:
    """The messages of a domain's code: cnsx's own, or the installed click's."""
    if domain == "click":
        import click

        return extract(Path(click.__file__).parent, strict=False)
    return extract()


#: The catalogues' domains; click's keeps the messages of older click releases (see above).
DOMAINS = ("cnsx", "click")


def compiled(po: Path) -> bytes:
    header, entries = parse_po(po.read_text("utf-8"), str(po))
    return compile_mo("".join(f"{k}: {v}\n" for k, v in header.items()), entries)


# ---------------------------------------------------------------------------------------------


def _merge(po: Path, code: list[Entry]) -> tuple[int, int]:
    language, domain = po.parent.parent.name, po.stem
    if po.exists():
        header, old = parse_po(po.read_text("utf-8"), str(po))
        header_text = "".join(f"{k}: {v}\n" for k, v in header.items())
    else:
        old, header_text = [], HEADER[language]
    known = {e.key: e for e in old}
    merged = []
    for e in code:
        previous = known.get(e.key)
        merged.append(Entry(e.msgid, e.plural, previous.msgstr if previous else list(e.msgstr), e.files,
                            previous.comments if previous else []))
    current = {e.key for e in code}
    dropped = [e for e in old if e.key not in current]
    if domain == "click":   # another click release's messages: kept, not dropped
        merged += dropped
        dropped = []
    po.parent.mkdir(parents=True, exist_ok=True)
    po.write_text(write_po(header_text, merged, domain), "utf-8")
    return sum(1 for e in merged if e.key not in known), len(dropped)


def main(argv: list[str]) -> int:
    if argv not in (["extract"], ["compile"], ["check"]):
        print(__doc__, file=sys.stderr)
        return 2
    if argv == ["extract"]:
        known = catalogues()
        defaults = [LOCALE / "fr" / "LC_MESSAGES" / f"{d}.po" for d in DOMAINS]
        for po in known + [po for po in defaults if po not in known]:
            code = messages(po.stem)
            added, dropped = _merge(po, code)
            print(f"{po.relative_to(ROOT)}: {len(code)} messages, {added} new, {dropped} dropped", file=sys.stderr)
        return 0
    status = 0
    for po in catalogues():
        mo = po.with_suffix(".mo")
        data = compiled(po)
        if argv == ["compile"]:
            mo.write_bytes(data)
            print(f"{mo.relative_to(ROOT)} written", file=sys.stderr)
            continue
        _, entries = parse_po(po.read_text("utf-8"), str(po))
        missing = [e.msgid for e in entries if not e.translated]
        known = {e.key for e in entries}
        absent = [e.msgid for e in messages(po.stem) if e.key not in known]
        for msgid in missing:
            print(f"{po.relative_to(ROOT)}: no translation: {msgid!r}", file=sys.stderr)
        for msgid in absent:
            print(f"{po.relative_to(ROOT)}: not in the catalogue (run extract): {msgid!r}", file=sys.stderr)
        if not mo.exists() or mo.read_bytes() != data:
            print(f"{mo.relative_to(ROOT)} is not the compiled {po.name} (run compile)", file=sys.stderr)
            status = 1
        status = status or int(bool(missing or absent))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
