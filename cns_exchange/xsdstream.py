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
from typing import IO, Callable, Iterator

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
            ("xmlCreatePushParserCtxt", p, [p, p, s, i, s]),
            ("xmlCtxtUseOptions", i, [p, i]),
            ("xmlParseChunk", i, [p, s, i, i]),
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
        """The verdict on the file at ``path``."""
        return self._run(xsd, lambda: self.xmlCreateURLParserCtxt(os.fsencode(path), _OPTIONS), self.xmlParseDocument)

    def valid_pushed(self, xsd: str, chunks: Iterator[bytes]) -> bool | None:
        """The verdict on the document made of ``chunks``, fed to libxml2's push parser as
        they come (each call parses one chunk without the GIL)."""
        def create() -> int:
            parser = self.xmlCreatePushParserCtxt(None, None, None, 0, None)
            if parser:
                self.xmlCtxtUseOptions(parser, _OPTIONS)
            return parser

        def parse(parser: int) -> int:
            for chunk in chunks:
                if self.xmlParseChunk(parser, chunk, len(chunk), 0) != 0:
                    return 1  # not well-formed: no need to read on
            return self.xmlParseChunk(parser, None, 0, 1)

        return self._run(xsd, create, parse)

    def _run(self, xsd: str, create: Callable[[], int], parse: Callable[[int], int]) -> bool | None:
        """Create a parser (``create``), plug the schema validator into its SAX stream,
        ``parse``, and return the verdict."""
        schema = self.schema(xsd)
        if schema is None:
            return None
        validator = self.xmlSchemaNewValidCtxt(schema)
        if not validator:
            return None
        parser = None
        try:
            self.xmlSchemaSetValidStructuredErrors(validator, self.on_error, None)
            parser = create()
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
                parsed = parse(parser)
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
    lib = _library()
    return None if lib is None else lib.valid(path, xsd)


def available() -> bool:
    """True if :func:`verdict` can tell (libxml2's functions were found)."""
    return _library() is not None


def _library() -> _Libxml2 | None:
    """libxml2's functions through lxml's module, or None where they cannot be found."""
    if not _LIB:
        try:
            _LIB.append(_Libxml2())
        except (OSError, AttributeError):
            _LIB.append(None)
    return _LIB[0]


class WhileWriting:
    """The verdict on a document while it is written: a stream to write it to (also written
    to ``target``), whose bytes a thread feeds, in chunks of about 1 MiB, to libxml2's push
    parser with the schema plugged in (libxml2 works without the GIL, so validation overlaps
    the writing on a second core).

    :meth:`result` gives the verdict once the writing is done: True, or False/None when the
    caller must validate the written file itself (not valid, or not told here). ``sha256``
    is the hash of what was written.
    """

    CHUNK = 1 << 20

    def __init__(self, target: IO[bytes], xsd: str) -> None:
        import hashlib
        import queue
        import threading

        self.target = target
        self.sha256 = hashlib.sha256()  # of everything written (hashlib works without the GIL too)
        self.outcome: bool | None = None
        self.pending: list[bytes] = []
        self.size = 0
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=8)  # at most ~8 MiB waiting
        self.stopped = False  # the check has its verdict (maybe before the end: not well-formed)
        self.ended = False    # the check has seen the end of the document
        self.thread = threading.Thread(target=self._check, args=(xsd,), daemon=True)
        self.thread.start()

    def _chunks(self) -> Iterator[bytes]:
        while (chunk := self.queue.get()) is not None:
            yield chunk
        self.ended = True

    def _check(self, xsd: str) -> None:
        try:
            lib = _library()
            self.outcome = None if lib is None else lib.valid_pushed(xsd, self._chunks())
        finally:
            self.stopped = True
            while not self.ended and self.queue.get() is not None:  # a writer waiting on a full queue goes on
                pass

    def write(self, data: bytes) -> int:
        self.target.write(data)
        self.sha256.update(data)
        if not self.stopped:
            self.pending.append(bytes(data))
            self.size += len(data)
            if self.size >= self.CHUNK:
                self._send()
        return len(data)

    def _send(self) -> None:
        if self.pending:
            self.queue.put(b"".join(self.pending))
            self.pending.clear()
            self.size = 0

    def result(self) -> bool | None:
        """The verdict; also what ends the check when the writing failed (call it always)."""
        if not self.stopped:
            self._send()
        self.queue.put(None)
        self.thread.join()
        return self.outcome
