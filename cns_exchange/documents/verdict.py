"""libxml2's tree-less XSD verdict, through its public API only.

lxml validates while parsing only by building elements for Python, which costs more than the
validation itself on a large file. libxml2's public ``xmlSchemaValidateFile`` validates a file
on its SAX stream alone: no tree, no Python, and (called through ctypes) without the GIL, so
it runs in a thread beside the business rules. lxml's extension module carries libxml2 and
exports these documented functions; nothing here reads or writes a C struct.

The verdict is all it gives: valid, or not. A caller never takes "valid" from it alone: the
document must also be read to its end by lxml (see validate.Validator), and where the two
disagree the document is invalid.

Failing closed: before its first verdict the library checks itself on documents whose answer
is known (valid, truncated at several points, not valid, not XML). If it answers one of them
wrongly, it switches itself off (:func:`disabled_reason` says why, logged for ``--debug``) and
callers validate with lxml alone, which is slower but complete.

Identity constraints in bounded memory. To check an ``xs:unique`` libxml2 keeps every key of
the document until its end (about 380 bytes a fee note: 95 MB for 250,000). Where a schema's
identity constraints are all ``xs:unique`` of one child element by name (NumeroMemoire,
ReferenceDemande), libxml2 checks the document against the schema without them, and
:func:`_unique_keys` reads every element of those names from the file's bytes, in a bitmap
of at most 2 MiB: unique when each is a plain integer from 1 to 2**24 and none repeats (a
superset of the keys the constraint selects, compared where string and value are one in every
XSD type). Anything else in the file (another form of those elements, a DOCTYPE, an encoding
that is not ASCII-compatible) or a repeated key: libxml2 checks the whole schema, as without
this, and decides.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import tempfile
import threading
from pathlib import Path

log = logging.getLogger("cnsx.xsd")

_ERROR_FUNC = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)

#: A schema and documents whose verdict is known, for the self-check at first use.
_CHECK_XSD = b"""<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" elementFormDefault="qualified">
  <xs:element name="Liste">
    <xs:complexType><xs:sequence>
      <xs:element name="Ligne" maxOccurs="unbounded">
        <xs:complexType><xs:sequence>
          <xs:element name="Montant" type="xs:decimal"/>
        </xs:sequence></xs:complexType>
      </xs:element>
    </xs:sequence></xs:complexType>
  </xs:element>
</xs:schema>
"""
_CHECK_VALID = b'<?xml version="1.0" encoding="UTF-8"?>\n<Liste>\n' + b"  <Ligne><Montant>1.50</Montant></Ligne>\n" * 3 + b"</Liste>\n"
_CHECK_BAD = {
    "the closing root tag missing": _CHECK_VALID[: _CHECK_VALID.rindex(b"</Liste>")],
    "cut inside the closing root tag": _CHECK_VALID[: _CHECK_VALID.rindex(b"</Liste>") + 4],
    "cut after an item": _CHECK_VALID[: _CHECK_VALID.index(b"</Ligne>") + len(b"</Ligne>\n")],
    "cut inside a value": _CHECK_VALID[: _CHECK_VALID.index(b"1.50") + 2],
    "a schema violation": _CHECK_VALID.replace(b"1.50", b"one", 1),
    "an unknown element": _CHECK_VALID.replace(b"<Ligne>", b"<Lignes>", 1),
    "not XML": b"%PDF-1.7\n",
    "empty": b"",
    "content after the root": _CHECK_VALID + b"<Liste/>\n",
}


class _Libxml2:
    """The documented libxml2 functions the verdict needs, found in lxml's extension module."""

    def __init__(self) -> None:
        from lxml import etree

        lib = ctypes.CDLL(etree.__file__)
        p, s, i = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
        for name, restype, argtypes in (
            ("xmlSchemaNewParserCtxt", p, [s]),
            ("xmlSchemaSetParserStructuredErrors", None, [p, _ERROR_FUNC, p]),
            ("xmlSchemaParse", p, [p]),
            ("xmlSchemaFreeParserCtxt", None, [p]),
            ("xmlSchemaNewValidCtxt", p, [p]),
            ("xmlSchemaSetValidStructuredErrors", None, [p, _ERROR_FUNC, p]),
            ("xmlSchemaValidateFile", i, [p, s, i]),
            ("xmlSchemaFreeValidCtxt", None, [p]),
        ):
            function = getattr(lib, name)  # AttributeError if not exported
            function.restype, function.argtypes = restype, argtypes
            setattr(self, name, function)
        # libxml2 calls these from the validating thread; each verdict counts its own errors
        # through the user pointer it passes (the id of a counter below).
        self._errors: dict[int, int] = {}
        self._errors_lock = threading.Lock()
        self.on_error = _ERROR_FUNC(self._count)  # kept referenced while libxml2 may call it
        self.schemas: dict[str, int] = {}
        self.plans: dict[str, tuple[int, tuple[bytes, ...]] | None] = {}
        self._schemas_lock = threading.Lock()

    def _count(self, user, _error) -> None:
        with self._errors_lock:
            key = user or 0
            self._errors[key] = self._errors.get(key, 0) + 1

    def schema(self, xsd: str) -> int | None:
        """The compiled schema of the file ``xsd`` (compiled once per run), None if it fails."""
        with self._schemas_lock:
            compiled = self.schemas.get(xsd)
            if compiled is None:
                parser = self.xmlSchemaNewParserCtxt(os.fsencode(xsd))
                if not parser:
                    return None
                self.xmlSchemaSetParserStructuredErrors(parser, self.on_error, None)
                compiled = self.xmlSchemaParse(parser)
                self.xmlSchemaFreeParserCtxt(parser)
                if not compiled:
                    return None
                self.schemas[xsd] = compiled
            return compiled

    def valid(self, path: str, xsd: str) -> bool:
        """True only if libxml2 read the file to its end, well-formed and valid, and said
        nothing; False for anything else (a schema that does not compile included). Its
        identity constraints are checked in bounded memory where they can be (module doc)."""
        plan = self.identity_plan(xsd)
        if plan is None:
            return self._valid(path, self.schema(xsd))
        schema, fields = plan
        outcome: list = []

        def structure() -> None:
            try:
                outcome.append(self._valid(path, schema))
            except BaseException as exc:  # noqa: BLE001 - raised below, never taken for an answer
                outcome.append(exc)

        # libxml2 (without the GIL) beside the scan of the keys; the same name as the caller's
        # thread: a Ctrl-C does not wait for it either (validate.libxml2_running).
        thread = threading.Thread(target=structure, name="cnsx-xsd", daemon=True)
        thread.start()
        try:
            unique = _unique_keys(path, fields)
        finally:
            thread.join()
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        if outcome[0] is not True:
            return False
        return True if unique else self._valid(path, self.schema(xsd))

    def identity_plan(self, xsd: str) -> tuple[int, tuple[bytes, ...]] | None:
        """(the schema compiled without its identity constraints, the names of the elements
        they make unique), or None when there are none or when they are not all of the form
        the scan checks (then the whole schema is libxml2's to check)."""
        with self._schemas_lock:
            key = "stripped:" + xsd
            if key not in self.plans:
                self.plans[key] = self._plan(xsd)
            return self.plans[key]

    def _plan(self, xsd: str) -> tuple[int, tuple[bytes, ...]] | None:
        stripped = _without_identity_constraints(Path(xsd))
        if stripped is None:
            return None
        texts, fields = stripped
        if not fields:
            return None
        # Written to a private folder beside each other (their includes resolve), compiled,
        # and removed at once: the compiled schema is all libxml2 keeps.
        with tempfile.TemporaryDirectory(prefix="cnsx-xsd-") as folder:
            for name, text in texts.items():
                with open(os.path.join(folder, name), "wb") as f:
                    f.write(text)
            parser = self.xmlSchemaNewParserCtxt(os.fsencode(os.path.join(folder, Path(xsd).name)))
            if not parser:
                return None
            self.xmlSchemaSetParserStructuredErrors(parser, self.on_error, None)
            compiled = self.xmlSchemaParse(parser)
            self.xmlSchemaFreeParserCtxt(parser)
        return (compiled, fields) if compiled else None

    def _valid(self, path: str, schema: int | None) -> bool:
        if schema is None:
            return False
        validator = self.xmlSchemaNewValidCtxt(schema)
        if not validator:
            return False
        token = ctypes.c_int(0)  # its address tells this verdict's errors from another thread's
        key = ctypes.addressof(token)
        try:
            self.xmlSchemaSetValidStructuredErrors(validator, self.on_error, key)
            result = self.xmlSchemaValidateFile(validator, os.fsencode(path), 0)
        finally:
            self.xmlSchemaFreeValidCtxt(validator)
        with self._errors_lock:
            errors = self._errors.pop(key, 0)
        return result == 0 and errors == 0


_XS = "{http://www.w3.org/2001/XMLSchema}"
_NCNAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")


def _without_identity_constraints(xsd: Path) -> tuple[dict[str, bytes], tuple[bytes, ...]] | None:
    """The XSD files of ``xsd``'s folder without their ``xs:unique`` (by file name), and the
    names of the elements those made unique, over the files ``xsd`` includes; None when the
    scan cannot take them: an ``xs:key`` or ``xs:keyref``, a selector or field that is not a
    plain element name, several fields, a schema outside the folder."""
    from lxml import etree

    from cns_exchange.documents.safe import PARSER_OPTIONS

    folder = xsd.parent
    parser = etree.XMLParser(**PARSER_OPTIONS)
    trees: dict[str, object] = {}
    fields: list[bytes] = []
    pending = [xsd.name]
    while pending:
        name = pending.pop()
        if name in trees:
            continue
        try:
            tree = etree.parse(str(folder / name), parser)
        except (OSError, etree.XMLSyntaxError):
            return None
        trees[name] = tree
        for ref in tree.iter(_XS + "include", _XS + "import", _XS + "redefine", _XS + "override"):
            location = ref.get("schemaLocation")
            if location is None:
                continue
            if "/" in location or "\\" in location or location in ("", ".", "..") or not (folder / location).is_file():
                return None
            pending.append(location)
        if any(True for _ in tree.iter(_XS + "key", _XS + "keyref")):
            return None
        for unique in list(tree.iter(_XS + "unique")):
            selector = unique.find(_XS + "selector")
            keys = unique.findall(_XS + "field")
            if selector is None or len(keys) != 1 or not _NCNAME.match(selector.get("xpath", "")) \
                    or not _NCNAME.match(keys[0].get("xpath", "")):
                return None
            fields.append(keys[0].get("xpath").encode("ascii"))
            unique.getparent().remove(unique)
    texts = {name: etree.tostring(tree, xml_declaration=True, encoding="UTF-8") for name, tree in trees.items()}
    return texts, tuple(dict.fromkeys(fields))


#: The largest key the scan takes (every integer up to it is exact in xs:float): 2 MiB of bitmap.
_MAX_KEY = 1 << 24
_DECLARATION = re.compile(rb"(\xef\xbb\xbf)?<\?xml[ \t\r\n][^>]*?\?>")
_ENCODING = re.compile(rb"encoding[ \t\r\n]*=[ \t\r\n]*[\"']([A-Za-z0-9._\-]*)[\"']")


def _unique_keys(path: str, fields: tuple[bytes, ...]) -> bool:
    """True if every element named in ``fields`` in the file at ``path`` is written
    ``<NAME>N</NAME>`` with N an integer from 1 to :data:`_MAX_KEY`, no N twice for a name,
    in a UTF-8 (or ASCII) document without a DOCTYPE; False when that cannot be told so (the
    caller then has libxml2 check the whole schema). Reads the file a MiB at a time."""
    tags = [re.compile(b"<" + re.escape(f) + rb"(?![A-Za-z0-9_.\-:\x80-\xff])") for f in fields]
    values = [re.compile(b"<" + re.escape(f) + rb">([1-9][0-9]{0,7})</" + re.escape(f) + b">") for f in fields]
    seen = [bytearray((_MAX_KEY >> 3) + 1) for _ in fields]
    with open(path, "rb") as source:
        data = source.read(1 << 20)
        declaration = _DECLARATION.match(data)
        if declaration is None:
            return False
        encoding = _ENCODING.search(declaration.group(0))
        if encoding is not None and encoding.group(1).lower() not in (b"utf-8", b"utf8", b"us-ascii", b"ascii"):
            return False
        tail = b""
        while data or tail:
            text = tail + data
            if data:
                # Up to the last '<' that opens a tag: an element of a field is never cut.
                end = text.rfind(b"<")
                while end > 0 and text[end + 1:end + 2] == b"/":
                    end = text.rfind(b"<", 0, end)
                if end <= 0:
                    if len(text) > (8 << 20):
                        return False
                    tail, data = text, source.read(1 << 20)
                    continue
            else:
                end = len(text)
            piece, tail = text[:end], text[end:]
            if b"<!" in piece and re.search(rb"<!(?!--|\[CDATA\[)", piece):
                return False   # a DOCTYPE: entities could make elements the bytes do not show
            for tag, value, bits in zip(tags, values, seen):
                found = value.findall(piece)
                if len(found) != len(tag.findall(piece)):
                    return False
                for number in map(int, found):
                    if number > _MAX_KEY or bits[number >> 3] & (1 << (number & 7)):
                        return False
                    bits[number >> 3] |= 1 << (number & 7)
            data = source.read(1 << 20) if data else b""
    return True


_STATE: dict[str, object] = {}
_STATE_LOCK = threading.Lock()


def _self_check(lib: _Libxml2) -> str:
    """Return '' if ``lib`` gives the known verdicts, else what it got wrong."""
    with tempfile.TemporaryDirectory(prefix="cnsx-xsd-") as folder:
        xsd = os.path.join(folder, "check.xsd")
        with open(xsd, "wb") as f:
            f.write(_CHECK_XSD)
        cases = [("a valid document", _CHECK_VALID, True)] + [(what, data, False) for what, data in _CHECK_BAD.items()]
        for what, data, expected in cases:
            path = os.path.join(folder, "case.xml")
            with open(path, "wb") as f:
                f.write(data)
            got = lib.valid(path, xsd)
            if got is not expected:
                return f"it calls {what} {'valid' if got else 'invalid'}"
        return ""


def _library() -> _Libxml2 | None:
    """libxml2's functions, checked at first use; None where they are missing or wrong."""
    with _STATE_LOCK:
        if "lib" not in _STATE:
            lib: _Libxml2 | None
            try:
                lib = _Libxml2()
                reason = _self_check(lib)
            except (OSError, AttributeError) as exc:
                lib, reason = None, f"libxml2's functions cannot be found in lxml ({exc})"
            if reason:
                lib = None
                log.debug("libxml2's tree-less XSD verdict is switched off: %s; lxml validates alone", reason)
            _STATE["lib"], _STATE["reason"] = lib, reason
        return _STATE["lib"]  # type: ignore[return-value]


def available() -> bool:
    """True if :func:`verdict` can tell (libxml2's functions were found and passed the self-check)."""
    return _library() is not None


def disabled_reason() -> str:
    """Why the verdict is switched off ('' if it is not)."""
    _library()
    return str(_STATE.get("reason", ""))


def verdict(path: str, xsd: str) -> bool | None:
    """Return True if the document at ``path`` is well-formed and valid against the XSD file
    ``xsd``, False if it is not, None if this cannot be told here (validate with lxml)."""
    lib = _library()
    return None if lib is None else lib.valid(path, xsd)
