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
"""

from __future__ import annotations

import ctypes
import logging
import os
import tempfile
import threading

from cns_exchange.i18n import _

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
        nothing; False for anything else (a schema that does not compile included)."""
        schema = self.schema(xsd)
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
                return (_("it calls {case} valid") if got else _("it calls {case} invalid")).format(case=what)
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
                lib, reason = None, _("libxml2's functions cannot be found in lxml ({error})").format(error=exc)
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
    return _STATE.get("reason") or ""  # type: ignore[return-value]  (a Msg, kept translatable)


def verdict(path: str, xsd: str) -> bool | None:
    """Return True if the document at ``path`` is well-formed and valid against the XSD file
    ``xsd``, False if it is not, None if this cannot be told here (validate with lxml)."""
    lib = _library()
    return None if lib is None else lib.valid(path, xsd)


class XsdVerdict:
    """:func:`verdict` on a file, given in a thread while the caller reads the file (validate
    and import read it to its end with lxml meanwhile: the verdict alone is never taken).

    :meth:`result` waits for it: True (valid), False (not valid), None (cannot be told here:
    validate with lxml). An exception in the thread is raised by :meth:`result`, never
    taken for an answer.
    """

    def __init__(self, path: str, xsd: str | os.PathLike | None) -> None:
        self.outcome: bool | None = None
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None
        if xsd is not None:
            self.thread = threading.Thread(target=self._run, args=(path, str(xsd)), name="cnsx-xsd", daemon=True)
            self.thread.start()

    def _run(self, path: str, xsd: str) -> None:
        try:
            self.outcome = verdict(path, xsd)
        except BaseException as exc:  # noqa: BLE001 - handed to result()
            self.error = exc

    def result(self) -> bool | None:
        if self.thread is not None:
            self.thread.join()  # also on Ctrl-C: the interpreter must not exit while libxml2 runs
        if self.error is not None:
            raise CheckFailed(_("libxml2's schema check failed: {error}").format(
                error=f"{type(self.error).__name__}: {self.error}"))
        return self.outcome


def libxml2_running() -> bool:
    """True while an :class:`XsdVerdict` thread is still in libxml2 (left running by Ctrl-C).
    The process must then end without the interpreter's finalisation (``os._exit``), which
    would pull Python from under the thread: cli.main does."""
    return any(t.name == "cnsx-xsd" and t.is_alive() for t in threading.enumerate())


class CheckFailed(Exception):
    """A check did not run to its end: the document is not valid (VAL01)."""
