"""What ``cnsx import`` takes: the files named, the documents ``cnsx fetch`` listed on stdin, a
document read from stdin, or the inbox.

stdin is streamed, never held in memory: it is copied a chunk at a time (bounded by
``max_xml_bytes``) to a hidden temp file in the folder it may end up in, then either read back
line by line (the NDJSON list of ``cnsx fetch``) or published there as a document.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import IO

from cns_exchange.errors import InputError
from cns_exchange.i18n import _

#: A document read from stdin is kept as ``stdin-<first 16 hex digits of its SHA-256>.xml``:
#: the same document piped twice is one file.
STDIN_PREFIX = "stdin-"


def import_sources(files: tuple[str, ...], stdin: IO[bytes] | None, settings, spool_dir: Path | None = None) -> list[Path]:
    """The documents to import: FILES; for '-', the paths named by the NDJSON lines on
    ``stdin`` (as cnsx fetch prints them), or the one document on it; with no FILES, the
    documents waiting in the profile's inbox (``settings``).

    A document on stdin is kept in the inbox (imported, it is archived from there), or in
    ``spool_dir`` when given (--no-db: nothing is written where a later run would import it).
    An empty stdin names nothing: the list of a fetch that found nothing new, or failed.
    Raises InputError for a line that is not one of cnsx fetch, a folder or a missing file,
    DocumentTooLarge (XML03) for more than ``max_xml_bytes`` on stdin.
    """
    from cns_exchange.store.importing import inbox_documents

    if not files:
        return inbox_documents(settings.local_dir("inbox"))
    paths: list[Path] = []
    for name in files:
        if name == "-":
            paths.extend(_from_stdin(stdin, spool_dir or settings.local_dir("inbox"), settings.max_xml_bytes))
        else:
            paths.append(Path(name))
    for path in paths:
        if path.is_dir():
            raise InputError(_("{path}: a folder, not a document").format(path=path),
                             _("give its files ({path}/*.xml), or make it the inbox").format(path=path))
        if not path.is_file():
            raise InputError(_("{path}: no such file").format(path=path), _("check the path"))
    return paths


def _from_stdin(stream: IO[bytes], folder: Path, limit: int) -> list[Path]:
    """The paths stdin names (a list of cnsx fetch), or the document on it kept in ``folder``."""
    from cns_exchange.documents.safe import copy_bounded
    from cns_exchange.fsutil import publish, temp_file

    digest = hashlib.sha256()
    with temp_file(folder) as (spool, temp):
        try:
            copy_bounded(stream, lambda chunk: (digest.update(chunk), spool.write(chunk)), limit)
            spool.seek(0)
            first = _first_byte(spool)
            if not first:
                return []  # no line, no document: nothing to do (not an empty document to quarantine)
            if first == b"{":
                spool.seek(0)
                return list(_listed(spool))
            spool.close()
            target = folder / f"{STDIN_PREFIX}{digest.hexdigest()[:16]}.xml"
            if not target.exists():
                publish(temp, target)
            return [target]
        finally:
            temp.unlink(missing_ok=True)   # (published: gone already)


def _first_byte(stream: IO[bytes]) -> bytes:
    """The first byte of ``stream`` that is not a blank, b'' if there is none."""
    for chunk in iter(lambda: stream.read(1 << 16), b""):
        rest = chunk.lstrip()
        if rest:
            return rest[:1]
    return b""


def _listed(lines: IO[bytes]):
    """Yield the path of each NDJSON line of cnsx fetch; InputError naming the line for any other."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield Path(json.loads(line.decode("utf-8"))["path"])
        except (ValueError, KeyError, TypeError):
            raise InputError(_("<stdin>:{line}: not a line of cnsx fetch (JSON with a 'path')").format(line=number),
                             _("pipe cnsx fetch into cnsx import -, or give files")) from None
