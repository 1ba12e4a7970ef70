"""Versioned schema sets: one folder per version, bundled or dropped into the config folder.

A schema set folder holds a ``manifest.json`` naming its version, validity period and, per
document kind, the XSD file and its root element. Several sets coexist: a document names its
version in ``EnTete/VersionSchema``, and a new document takes the set in force on its date.
Dropping the official XSDs in is a new folder with its manifest: no code changes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import Iterable

from cns_exchange.errors import ConfigError
from cns_exchange.i18n import _, reason

KINDS = ("request", "billing", "ack", "answers", "payment")
#: Each kind as a sentence names it ('valid (request v1, 3 items)', 'imported (payment)'): the
#: kind itself in --json and the database, translated on the terminal.
_KIND_WORDS = {"request": _("request"), "billing": _("billing"), "ack": _("ack"), "answers": _("answers"),
               "payment": _("payment")}


def kind_word(kind: str) -> str:
    """``kind`` as a message shows it, in the user's language at display (a kind of a
    drop-in schema set that cnsx does not know stays as it is)."""
    return _KIND_WORDS.get(kind, kind)


def bundled_dir() -> Path:
    """Return the bundled ``schemas`` folder: inside the installed package, or the checkout's."""
    package = Path(__file__).resolve().parent.parent          # cns_exchange/
    for candidate in (package / "schemas", package.parent / "schemas"):
        if candidate.is_dir():
            return candidate
    raise ConfigError(_("the bundled schema sets are missing from this installation"), _("reinstall cnsx"))


@dataclass(frozen=True)
class DocumentSpec:
    kind: str
    root: str
    xsd: Path


@dataclass
class SchemaSet:
    """One version of the schema set."""

    version: str
    valid_from: date
    valid_until: date | None
    folder: Path
    documents: dict[str, DocumentSpec]

    def in_force(self, day: date) -> bool:
        return self.valid_from <= day and (self.valid_until is None or day <= self.valid_until)

    @cached_property
    def _compiled(self) -> dict:
        return {}

    def schema(self, kind: str):
        """Return the compiled lxml XMLSchema of ``kind`` (compiled once per run)."""
        compiled = self._compiled.get(kind)
        if compiled is None:
            from lxml import etree

            from cns_exchange.documents.safe import PARSER_OPTIONS

            spec = self.documents[kind]
            try:
                parser = etree.XMLParser(**PARSER_OPTIONS)
                compiled = etree.XMLSchema(etree.parse(str(spec.xsd), parser))
            except (OSError, etree.XMLSyntaxError, etree.XMLSchemaParseError) as exc:
                raise ConfigError(_("{file}: cannot load the XSD ({error})").format(file=spec.xsd, error=exc),
                                  _("fix or remove this schema set")) from None
            self._compiled[kind] = compiled
        return compiled


def _load_manifest(folder: Path) -> SchemaSet:
    path = folder / "manifest.json"
    try:
        raw = json.loads(path.read_text("utf-8"))
        version = str(raw["version"])
        valid_from = date.fromisoformat(raw["valid_from"])
        valid_until = date.fromisoformat(raw["valid_until"]) if raw.get("valid_until") else None
        documents = {}
        for kind, spec in raw["documents"].items():
            if kind not in KINDS:
                raise ValueError(_("unknown document kind '{kind}' (kinds: {kinds})").format(kind=kind, kinds=", ".join(KINDS)))
            xsd = folder / spec["xsd"]
            if not xsd.is_file():
                raise ValueError(_("{file} does not exist").format(file=spec["xsd"]))
            documents[kind] = DocumentSpec(kind, spec["root"], xsd)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(_("{file}: bad schema-set manifest ({error})").format(file=path, error=reason(exc)),
                          _("see docs/formats.md, Adding a schema version")) from None
    return SchemaSet(version, valid_from, valid_until, folder, documents)


class SchemaRegistry:
    """All installed schema sets, bundled first, then the user's."""

    def __init__(self, user_dirs: Iterable[Path] = ()) -> None:
        self.sets: dict[str, SchemaSet] = {}
        folders = [p for p in sorted(bundled_dir().iterdir()) if (p / "manifest.json").is_file()]
        for user_dir in user_dirs:
            if user_dir.is_dir():
                folders += [p for p in sorted(user_dir.iterdir()) if (p / "manifest.json").is_file()]
        for folder in folders:
            schema_set = _load_manifest(folder)
            if schema_set.version in self.sets:
                raise ConfigError(
                    _("{folder}: schema version {version} is already installed at {other}").format(
                        folder=folder, version=schema_set.version, other=self.sets[schema_set.version].folder),
                    _("give the new set its own version"),
                )
            self.sets[schema_set.version] = schema_set

    def get(self, version: str) -> SchemaSet:
        """Return the set of ``version``; raise ConfigError if it is not installed."""
        try:
            return self.sets[version]
        except KeyError:
            raise ConfigError(_("schema version '{version}' is not installed (installed: {installed})")
                              .format(version=version, installed=", ".join(self.sets)),
                              _("install it in the config folder's schemas/ (docs/formats.md)")) from None

    def in_force(self, day: date) -> SchemaSet:
        """Return the newest set in force on ``day``."""
        candidates = [s for s in self.sets.values() if s.in_force(day)]
        if not candidates:
            raise ConfigError(_("no schema set is in force on {day}").format(day=day), _("install one, or pass --schema-version"))
        return max(candidates, key=lambda s: s.valid_from)

    def kind_of_root(self, root: str) -> list[tuple[SchemaSet, str]]:
        """Return the (set, kind) pairs whose root element is ``root``."""
        return [(s, kind) for s in self.sets.values() for kind, spec in s.documents.items() if spec.root == root]
