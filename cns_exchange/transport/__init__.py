"""Moving files to and from the CNS drop box, behind one small interface.

The CNS server behaves as an SFTP drop box: an upload folder the practice deposits into and a
download folder the CNS leaves return files in. :class:`Transport` is what the upload and
fetch logic needs of it; ``sftp://`` (paramiko, in :mod:`.sftp`) and ``file://`` (a local or
mounted drop box, in :mod:`.local`) implement it. Publishing is always: write under a temporary
name, check the size, rename to the final name without ever replacing an existing file.
"""

from __future__ import annotations

import re
import stat as statmod
from dataclasses import dataclass
from typing import IO, Callable, Protocol

from cns_exchange.errors import TransportFatalError, TransportRetryableError
from cns_exchange.i18n import _

#: Temporary names used while a file is in flight: hidden, and never a conventional name.
TEMP_PREFIX = ".cnsx-"
TEMP_SUFFIX = ".part"

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,254}\Z")


@dataclass(frozen=True)
class RemoteEntry:
    """A file in a remote folder, as listed (never following links)."""

    name: str
    size: int
    mtime: int
    mode: int

    @property
    def is_file(self) -> bool:
        return statmod.S_ISREG(self.mode)


def unsafe_name_reason(name: str) -> str:
    """Return why a remote name must not become a local file name, or '' if it is safe.

    Safe names are plain names of letters, digits, '.', '_' and '-', not starting with a dot:
    no path separators, no traversal, no control characters, no hidden or temporary files.
    """
    if not name or name in (".", ".."):
        return _("empty or a folder reference")
    if "/" in name or "\\" in name:
        return _("contains a path separator")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return _("contains control characters")
    if name.startswith("."):
        return _("hidden or temporary file")
    if not _SAFE_NAME.match(name):
        return _("contains characters outside letters, digits, '.', '_' and '-' (or is too long)")
    return ""


def parse_address(address: str) -> tuple[str, int]:
    """``HOST[:PORT]`` (``cnsx hostkey``) as (host, port), port 22 by default. A name with
    several ':' (an IPv6 address) is a host without a port. Raises UsageError for a port that
    is not a number."""
    from cns_exchange.errors import UsageError

    host, _colon, port = address.rpartition(":") if address.count(":") == 1 else (address, "", "22")
    if not host:
        host, port = address, "22"
    if not port.isdigit():
        raise UsageError(_("{address}: the port is not a number").format(address=address), _("e.g. sftp.example.lu:22"))
    return host, int(port)


class Transport(Protocol):
    """A connection to the drop box. Paths are folder names relative to its root, or absolute."""

    description: str

    def list(self, folder: str) -> list[RemoteEntry]:
        """List a folder's entries (links are reported as links, never followed)."""

    def stat(self, folder: str, name: str) -> RemoteEntry | None:
        """Return an entry, or None if there is none of that name."""

    def put(self, source: IO[bytes], size: int, folder: str, name: str,
            progress: Callable[[int], None] | None = None) -> None:
        """Publish ``source`` as ``folder/name``: temp name, size check, rename.

        Raises FileExistsError if ``name`` exists (it is never replaced).
        """

    def get(self, folder: str, name: str, sink: IO[bytes], progress: Callable[[int], None] | None = None,
            size: int | None = None) -> int:
        """Copy ``folder/name`` into ``sink``; return the number of bytes (``size``: the listed
        size, saving a round trip)."""

    def remove(self, folder: str, name: str) -> None:
        """Delete ``folder/name``."""

    def move(self, folder: str, name: str, to_folder: str) -> None:
        """Move ``folder/name`` into ``to_folder`` (never replacing a file there)."""

    def remove_stale_temps(self, folder: str) -> int:
        """Delete temporary files a killed run left in ``folder``; return how many."""

    def clone(self) -> "Transport":
        """Return another session on the same connection, for transfers in parallel."""

    def close_clone(self) -> None:
        """Close a session made by clone() (the connection stays open)."""

    def close(self) -> None:
        """Close the connection."""


def open_transport(settings, prompt: Callable[[str], str] | None = None) -> Transport:
    """Connect to the profile's remote. Raises TransportRetryableError / TransportFatalError."""
    remote = settings.remote_url()
    if remote.scheme == "file":
        from cns_exchange.transport.local import LocalTransport

        return LocalTransport(remote.path)
    from cns_exchange.transport.sftp import SftpTransport

    return SftpTransport.connect(remote, settings, prompt)




def with_retries(action: Callable[[], object], retries: int, backoff: float = 1.0,
                 on_retry: Callable[[Exception, int, float], None] | None = None):
    """Run ``action``; after a TransportRetryableError try again up to ``retries`` times,
    waiting ``backoff`` seconds, doubled each time (capped at 60). Fatal errors pass through."""
    import time

    attempt = 0
    while True:
        try:
            return action()
        except TransportRetryableError as exc:
            if attempt >= retries:
                raise
            delay = min(backoff * (2 ** attempt), 60.0)
            attempt += 1
            if on_retry:
                on_retry(exc, attempt, delay)
            time.sleep(delay)


class RetryingConnection:
    """Opens a transport on first use and runs actions on it with retries: after a failure
    the broken session is closed and the next attempt reconnects."""

    def __init__(self, connect: Callable[[], Transport], retries: int, backoff: float,
                 on_retry: Callable[[Exception, int, float], None] | None = None,
                 on_open: Callable[[Transport], None] | None = None) -> None:
        self._connect, self.retries, self.backoff = connect, retries, backoff
        self.on_retry, self.on_open = on_retry, on_open
        self.transport: Transport | None = None

    def run(self, action: Callable[[Transport], object]):
        def attempt():
            if self.transport is None:
                self.transport = self._connect()
                if self.on_open is not None:
                    self.on_open(self.transport)
            try:
                return action(self.transport)
            except BaseException:
                self.close()
                raise

        return with_retries(attempt, self.retries, self.backoff, self.on_retry)

    def close(self) -> None:
        if self.transport is not None:
            transport, self.transport = self.transport, None
            transport.close()
