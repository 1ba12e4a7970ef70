"""Bytes to text for the practice's files: the encoding given, or detected (UTF-8, else
Windows-1252, never a mix; a UTF-8 byte-order mark, or bytes that are UTF-8, never read as
another), a line or a piece at a time; the encodings a file may name."""

from __future__ import annotations

import codecs
import io
import re
from typing import IO

from cns_exchange.errors import UsageError
from cns_exchange.i18n import _

#: What a byte that is not UTF-8 is read as when the encoding is detected: the encoding of
#: Excel's "CSV (séparateur: point-virgule)" on a French (or German, English) Windows.
FALLBACK_ENCODING = "cp1252"


#: A lead byte followed by a continuation byte: the least a line needs to hold UTF-8 beyond
#: ASCII (a Windows-1252 line without it is read without trying UTF-8 first).
_UTF8_PAIR = re.compile(rb"[\xc2-\xf4][\x80-\xbf]")

class Undecodable(Exception):
    """Bytes that are not text in the input's encoding (the message says which and where;
    ``hint``, when not '', what to do instead of the issue code's own hint)."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


#: Characters that end a cell or a JSON string: a value quoted in a message stops at them.
_SAMPLE = re.compile(r'[^;,\t"\r\n]{0,30}[^\x00-\x7f][^;,\t"\r\n]{0,30}')


class Decoder:
    """Bytes to text, a line or a piece at a time: in the encoding given, or detected (None):
    UTF-8 while the bytes are UTF-8, Windows-1252 from a byte that is not when nothing
    before it was UTF-8 beyond ASCII. A file that turns from UTF-8 to another encoding is
    refused at that line, not half read as one and half as the other. Raises Undecodable.

    Whatever the encoding, a file that starts with a UTF-8 byte-order mark is UTF-8 (the
    mark is unambiguous; it is dropped). Bytes that are UTF-8 beyond ASCII are never read in
    another encoding (Windows-1252, given or detected, would turn 'Müller' into 'MÃ¼ller'
    without a word): a line of them is refused, as is a JSON array that is UTF-8 while
    another encoding is given."""

    def __init__(self, encoding: str | None) -> None:
        self.detect = encoding is None
        self.encoding = encoding or "utf-8"
        self.utf8_line = 0          # the first line read as UTF-8 beyond ASCII (detecting)
        self.other_line = 0         # the first line beyond ASCII read in another encoding
        self.bom = False            # the file starts with a UTF-8 byte-order mark
        self._pieces = None         # the incremental decoder of piece()
        self._head = b""            # piece(): the first bytes, while they may be the start of a mark
        self._utf8 = None           # piece(): a UTF-8 decoder beside the one of a given encoding

    def describe(self) -> str:
        return _("UTF-8 or Windows-1252") if self.detect else self.encoding

    def _marked(self, raw: bytes) -> bytes:
        """``raw``, the start of the file, without its UTF-8 byte-order mark, if any: the
        file is UTF-8 then."""
        if raw.startswith(codecs.BOM_UTF8):
            self.detect, self.encoding, self.bom = False, "utf-8", True
            return raw[len(codecs.BOM_UTF8):]
        return raw

    def _read_as_other(self) -> bool:
        """True when the bytes are read in an encoding that is not one of Unicode's."""
        return not self.encoding.startswith("utf")

    def _refuse_utf8(self, text: str) -> None:
        """Raise Undecodable for ``text``, bytes that are UTF-8 beyond ASCII, which the
        encoding set would misread: naming the first such value and what it would become."""
        sample = _SAMPLE.search(text).group().strip()
        if self.other_line:
            raise Undecodable(_("'{text}' is UTF-8, but line {line} was {encoding}: the file mixes two encodings").format(
                text=sample, line=self.other_line, encoding=self.encoding))
        raise Undecodable(
            _("the file is UTF-8 ('{text}'), but the encoding is set to {encoding}, which would read '{garbled}'").format(
                text=sample, encoding=self.encoding,
                garbled=sample.encode("utf-8").decode(self.encoding, errors="replace")),
            _("let cnsx detect the encoding: encoding = \"detect\" (or \"utf-8\") in the config, or --encoding detect; "
              "or save the file again from the spreadsheet in {encoding}").format(encoding=self.encoding))

    def line(self, raw: bytes, number: int) -> str:
        """The text of the line ``number``, ``raw`` its bytes."""
        if number == 1:
            raw = self._marked(raw)
        try:
            if self.detect:
                if raw.isascii():
                    return raw.decode("ascii")
                if self.encoding == "utf-8":
                    try:
                        text = raw.decode("utf-8")
                    except UnicodeDecodeError as exc:
                        if self.utf8_line:
                            raise Undecodable(_("byte {byte} at column {column} is not UTF-8, as line {line} was: "
                                                "the file mixes two encodings").format(
                                byte=repr(raw[exc.start:exc.start + 1]), column=exc.start + 1, line=self.utf8_line)) from None
                        self.encoding = FALLBACK_ENCODING
                        self.other_line = number   # (not UTF-8: just tried)
                        return raw.decode(FALLBACK_ENCODING)
                    else:
                        self.utf8_line = self.utf8_line or number
                        return text
            if not raw.isascii() and self._read_as_other():
                if _UTF8_PAIR.search(raw) is None:   # no UTF-8 sequence can be there: no decoding to try
                    self.other_line = self.other_line or number
                else:
                    try:
                        text = raw.decode("utf-8")
                    except UnicodeDecodeError:
                        self.other_line = self.other_line or number
                    else:
                        self._refuse_utf8(text)
            return raw.decode(self.encoding)
        except UnicodeDecodeError as exc:
            if self.bom:
                message = _("byte {byte} at column {column} is not UTF-8, which the file's byte-order mark says it is")
            elif self.detect:
                message = _("byte {byte} at column {column} is neither UTF-8 nor Windows-1252")
            else:
                message = _("byte {byte} at column {column} is not {encoding}")
            raise Undecodable(message.format(byte=repr(raw[exc.start:exc.start + 1]), column=exc.start + 1,
                                             encoding=self.encoding)) from None
        except ValueError as exc:  # a codec's own UnicodeError: the line is not in it either
            raise Undecodable(_("the line is not {encoding} ({error})").format(encoding=self.encoding, error=exc)) from None

    def piece(self, data: bytes, final: bool) -> str:
        """The text of the next piece of a stream (a character may straddle two pieces)."""
        if self._pieces is None:
            data = self._head + data
            if not final and len(data) < len(codecs.BOM_UTF8) and codecs.BOM_UTF8.startswith(data):
                self._head = data   # (a mark cut short by the read: wait for the rest)
                return ""
            self._head = b""
            data = self._marked(data)
            self._pieces = codecs.getincrementaldecoder(self.encoding)()
            if not self.detect and self._read_as_other():
                self._utf8 = codecs.getincrementaldecoder("utf-8")()
        try:
            if self._utf8 is not None and not (data.isascii() and not self._utf8.getstate()[0]):
                try:
                    text = self._utf8.decode(data, final)
                except UnicodeDecodeError:
                    self._utf8 = None   # not UTF-8: read in the encoding given
                else:
                    if not text.isascii():
                        self._refuse_utf8(text)
            if self.detect and self.encoding == "utf-8":
                pending = self._pieces.getstate()[0]
                try:
                    text = self._pieces.decode(data, final)
                except UnicodeDecodeError:
                    if self.utf8_line:
                        raise
                    self.encoding = FALLBACK_ENCODING
                    self._pieces = codecs.getincrementaldecoder(self.encoding)()
                    return self._pieces.decode(pending + data, final)
                if not text.isascii():
                    self.utf8_line = 1
                return text
            return self._pieces.decode(data, final)
        except ValueError as exc:  # UnicodeDecodeError, or a codec's own UnicodeError
            raise Undecodable(_("the file is not {encoding} ({error})").format(encoding=self.describe(), error=exc)) from None


class _Prefixed(io.RawIOBase):
    """A raw stream that replays ``head`` before the rest of ``stream``."""

    def __init__(self, head: bytes, stream: IO[bytes]) -> None:
        self.head, self.stream = head, stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.head:
            n = min(len(buffer), len(self.head))
            buffer[:n], self.head = self.head[:n], self.head[n:]
            return n
        data = self.stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def peekable(stream: IO[bytes]) -> IO[bytes]:
    """Return ``stream`` with a ``peek`` method (stdin under some runners has none)."""
    if hasattr(stream, "peek"):
        return stream
    return io.BufferedReader(_Prefixed(b"", stream))



#: Python text codecs that are not the encoding of a file's characters: domain names
#: (punycode, idna), Python string literals, and one that refuses everything.
NOT_FILE_ENCODINGS = ("punycode", "idna", "unicode-escape", "raw-unicode-escape", "undefined")


def canonical_encoding(name: str) -> str:
    """Return Python's name for a text encoding ('utf8' -> 'utf-8'); UsageError if unknown or
    not an encoding of text files (rot13, base64, punycode...)."""

    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):  # (ValueError: a name with a NUL in it)
        info = None
    if info is None or not getattr(info, "_is_text_encoding", True):  # rot13, base64...: not for text files
        raise UsageError(_("unknown encoding '{name}'").format(name=name), _("e.g. utf-8, cp1252, latin-1"))
    if info.name.replace("_", "-") in NOT_FILE_ENCODINGS:
        raise UsageError(_("'{name}' is not an encoding of text files").format(name=name), _("e.g. utf-8, cp1252, latin-1"))
    return info.name

