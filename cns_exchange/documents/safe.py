"""Hardened XML input: parser settings set explicitly, size bound, DTDs refused.

CNS documents carry no DTD and no entities, so any DOCTYPE is refused outright: that stops
external entities (XXE), entity-expansion bombs and external DTD fetches before they could
matter; the parser is also told never to resolve entities, load a DTD or touch the network.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import tempfile
from typing import IO

from cns_exchange.errors import InputError
from cns_exchange.i18n import _

#: The parser options every cnsx XML read uses. Never left to library defaults.
PARSER_OPTIONS = dict(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=False,
    remove_blank_text=False,
)


class TooLargeError(Exception):
    """The document is over the configured size."""


class DocumentTooLarge(InputError):
    """A document is over the configured size limit (issue XML03)."""


class DocumentUnreadable(InputError):
    """A document cannot be opened or read (issue FIL01)."""


class _BoundedReader(io.RawIOBase):
    """A read-only stream that fails once more than ``limit`` bytes were read."""

    def __init__(self, raw: IO[bytes], limit: int) -> None:
        self.raw = raw
        self.limit = limit
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.raw.read(len(buffer))
        self.count += len(data)
        if self.count > self.limit:
            raise TooLargeError(self.count)
        buffer[: len(data)] = data
        return len(data)


def spool(name: str, stream: IO[bytes], limit: int) -> IO[bytes]:
    """Copy a non-seekable stream (stdin) to a private temp file, at most ``limit`` bytes.

    Returns the temp file, rewound, with a ``name`` other readers can open. It is created
    0600 and deleted on close.
    Raises InputError (XML03) when the stream is too large.
    """
    tmp = tempfile.NamedTemporaryFile(prefix="cnsx-", suffix=".xml")
    try:
        # A chunk at a time, in Python: Ctrl-C is seen between two chunks, even from a
        # source that never blocks and never ends (/dev/zero).
        shutil.copyfileobj(_BoundedReader(stream, limit), tmp, 1 << 20)
    except TooLargeError:
        tmp.close()
        raise DocumentTooLarge(_("more than {limit} bytes, over the limit").format(limit=limit),
                               _("raise --max-size if the document is genuine")) from None
    except BaseException:
        tmp.close()  # (deletes it: nothing is left behind by Ctrl-C)
        raise
    tmp.seek(0)
    return tmp


def copy_bounded(stream: IO[bytes], write, limit: int, name: str = "<stdin>") -> int:
    """Copy all of ``stream`` (stdin) to ``write`` (a function taking each chunk), at most
    ``limit`` bytes, a chunk at a time: memory stays flat, and Ctrl-C is seen between two
    chunks, even from a source that never blocks and never ends. Returns the size. Raises
    DocumentTooLarge (XML03) beyond ``limit``."""
    size = 0
    while True:
        chunk = stream.read(min(1 << 20, limit + 1 - size))
        if not chunk:
            return size
        size += len(chunk)
        if size > limit:
            raise DocumentTooLarge(_("{file}: more than {limit} bytes, over the limit").format(file=name, limit=limit),
                                   _("raise max_xml_bytes if the document is genuine"))
        write(chunk)


def open_document(name: str, limit: int) -> IO[bytes]:
    """Open ``name`` (a path, or '-' for stdin) for reading, refusing files over ``limit``.

    Raises InputError for a missing or unreadable file or one that is too large.
    """
    if name == "-":
        return spool("<stdin>", sys.stdin.buffer, limit)
    try:
        stream = open(name, "rb")
    except OSError as exc:
        raise DocumentUnreadable(_("cannot open ({reason})").format(reason=exc.strerror),
                                 _("check the path and the permissions")) from None
    size = os.fstat(stream.fileno()).st_size
    if limit and size > limit:
        stream.close()
        raise DocumentTooLarge(_("{size} bytes, over the limit of {limit}").format(size=size, limit=limit),
                               _("raise --max-size if the document is genuine"))
    return stream


def has_doctype(element) -> bool:
    """Return True if the document of ``element`` declares a DOCTYPE or an internal subset."""
    info = element.getroottree().docinfo
    return bool(info.doctype) or info.internalDTD is not None or info.externalDTD is not None
