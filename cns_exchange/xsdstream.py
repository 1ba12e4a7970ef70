"""A yes/no XSD verdict from libxml2's own streaming validator, without building a tree.

lxml validates while parsing only by building elements for Python (``iterparse``), which
costs more than the validation itself on a large file. libxml2 can validate on its SAX
stream alone (``xmlSchemaSAXPlug``, what ``xmlSchemaValidateFile`` does), but lxml does not
expose it; lxml's extension module carries libxml2 and exports its functions, so this module
calls them through ctypes, with the same parser options cnsx uses everywhere (no network, no
DTD loading, no entity substitution, default size limits).

The verdict is all it gives: valid, or not. For a document that is not valid the caller
runs lxml's slower pass, which says where and why. Where the functions cannot be found (an
lxml built otherwise), :func:`verdict` returns None and the caller uses lxml alone.
"""

from __future__ import annotations

import ctypes
import os
from typing import IO

#: libxml2 parser options (parser.h): XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_NONET.
_OPTIONS = 32 | 64 | 2048
#: xmlSAXHandler.initialized for a SAX2 handler (parser.h: XML_SAX2_MAGIC).
_SAX2_MAGIC = 0xDEEDBEAF
_POINTER = ctypes.sizeof(ctypes.c_void_p)
#: xmlSAXHandler: 27 callback pointers, then ``unsigned int initialized`` (then 4 more pointers).
_INITIALIZED_OFFSET = 27 * _POINTER
#: xmlParserCtxt begins with ``sax``, ``userData``, ``myDoc``, then ``int wellFormed``.
_WELL_FORMED_OFFSET = 3 * _POINTER

_ERROR_FUNC = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)


class _Libxml2:
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
            ("xmlSchemaFreeValidCtxt", None, [p]),
            ("xmlSchemaSAXPlug", p, [p, p, p]),
            ("xmlSchemaSAXUnplug", i, [p]),
            ("xmlSchemaIsValid", i, [p]),
            ("xmlCreateURLParserCtxt", p, [s, i]),
            ("xmlParseDocument", i, [p]),
            ("xmlFreeParserCtxt", None, [p]),
        ):
            function = getattr(lib, name)  # AttributeError if not exported
            function.restype, function.argtypes = restype, argtypes
            setattr(self, name, function)
        self.errors = 0
        self.on_error = _ERROR_FUNC(self._count)  # kept referenced while libxml2 may call it
        self.schemas: dict[str, int] = {}

    def _count(self, _user, _error) -> None:
        self.errors += 1

    def schema(self, xsd: str) -> int | None:
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
            self.schemas[xsd] = compiled  # kept for the process: compiled once per run
        return compiled

    def valid(self, path: str, xsd: str) -> bool | None:
        schema = self.schema(xsd)
        if schema is None:
            return None
        validator = self.xmlSchemaNewValidCtxt(schema)
        if not validator:
            return None
        parser = None
        try:
            self.xmlSchemaSetValidStructuredErrors(validator, self.on_error, None)
            parser = self.xmlCreateURLParserCtxt(os.fsencode(path), _OPTIONS)
            if not parser:
                return False  # cannot be opened: lxml's pass says why
            # An empty SAX2 handler: the validator's plug forwards only to callbacks that
            # are set, so nothing but validation happens (no tree, no output).
            handler = ctypes.create_string_buffer(64 * _POINTER)
            ctypes.c_uint.from_buffer(handler, _INITIALIZED_OFFSET).value = _SAX2_MAGIC
            sax = ctypes.c_void_p.from_address(parser)
            original = sax.value
            sax.value = ctypes.addressof(handler)
            try:
                plug = self.xmlSchemaSAXPlug(validator, parser, parser + _POINTER)
                if not plug:
                    return None
                self.errors = 0
                parsed = self.xmlParseDocument(parser)
                self.xmlSchemaSAXUnplug(plug)
            finally:
                sax.value = original
            well_formed = ctypes.c_int.from_address(parser + _WELL_FORMED_OFFSET).value
            return parsed == 0 and well_formed == 1 and self.xmlSchemaIsValid(validator) == 1 and self.errors == 0
        finally:
            if parser:
                self.xmlFreeParserCtxt(parser)
            self.xmlSchemaFreeValidCtxt(validator)


_LIB: list[_Libxml2 | None] = []


def verdict(path: str, xsd: str) -> bool | None:
    """Return True if the document at ``path`` is well-formed and valid against ``xsd``,
    False if it is not, None if this cannot be told here (use lxml's pass instead)."""
    if not _LIB:
        try:
            _LIB.append(_Libxml2())
        except (OSError, AttributeError):
            _LIB.append(None)
    lib = _LIB[0]
    return None if lib is None else lib.valid(path, xsd)


class WhileWriting:
    """The verdict on a document while it is written: a stream to write it to (also written
    to ``target``), whose bytes a thread feeds through a pipe to :func:`verdict` (libxml2
    works without the GIL, so validation overlaps the writing on a second core).

    :meth:`result` gives the verdict once the writing is done: True, or False/None when the
    caller must validate the written file itself (not valid, or not told here).
    """

    def __init__(self, target: IO[bytes], xsd: str) -> None:
        import threading

        self.target = target
        self.outcome: bool | None = None
        self.read_end, write_end = os.pipe()
        # Buffered: a write is written whole (a raw write may be short).
        self.pipe: IO[bytes] | None = os.fdopen(write_end, "wb")
        self.thread = threading.Thread(target=self._check, args=(xsd,), daemon=True)
        self.thread.start()

    def _check(self, xsd: str) -> None:
        try:
            self.outcome = verdict(f"/dev/fd/{self.read_end}", xsd)
        finally:
            os.close(self.read_end)  # a writer still writing gets EPIPE, not a hang

    def write(self, data: bytes) -> int:
        self.target.write(data)
        if self.pipe is not None:
            try:
                self.pipe.write(data)
            except OSError:  # the check stopped reading (it has its verdict): write on alone
                self._close_pipe()
        return len(data)

    def _close_pipe(self) -> None:
        if self.pipe is not None:
            try:
                self.pipe.close()
            except OSError:
                pass
            self.pipe = None

    def result(self) -> bool | None:
        """The verdict; also what ends the check when the writing failed (call it always)."""
        self._close_pipe()
        self.thread.join()
        return self.outcome
