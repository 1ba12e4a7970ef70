"""The ``file://`` drop box: a local or mounted folder with upload/download subfolders."""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path
from typing import IO, Callable

from cns_exchange.errors import TransportFatalError, TransportRetryableError
from cns_exchange.fsutil import fsync_dir
from cns_exchange.i18n import _
from cns_exchange.transport import TEMP_PREFIX, TEMP_SUFFIX, RemoteEntry


class LocalTransport:
    """Drop box in a local folder; same publishing discipline as the SFTP transport."""

    def __init__(self, root: str) -> None:
        self.root = Path(root)
        self.description = f"file://{root}"
        if not self.root.is_dir():
            raise TransportFatalError(_("{remote}: the drop-box folder does not exist").format(remote=self.description),
                                      _("create it, or fix remote in the profile"))

    def _folder(self, folder: str) -> Path:
        path = Path(folder)
        path = path if path.is_absolute() else self.root / path
        if not path.is_dir():
            raise TransportFatalError(_("{remote}: folder {folder} does not exist").format(remote=self.description, folder=folder),
                                      _("create it on the drop box, or fix upload_dir / download_dir"))
        return path

    def list(self, folder: str) -> list[RemoteEntry]:
        entries = []
        try:
            with os.scandir(self._folder(folder)) as it:
                for entry in it:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # gone since the listing began
                    entries.append(RemoteEntry(entry.name, st.st_size, int(st.st_mtime), st.st_mode))
        except OSError as exc:
            raise _error(exc, folder) from None
        return sorted(entries, key=lambda e: e.name)

    def stat(self, folder: str, name: str) -> RemoteEntry | None:
        try:
            st = os.lstat(self._folder(folder) / name)
        except FileNotFoundError:
            return None
        return RemoteEntry(name, st.st_size, int(st.st_mtime), st.st_mode)

    def put(self, source: IO[bytes], size: int, folder: str, name: str,
            progress: Callable[[int], None] | None = None) -> None:
        target_dir = self._folder(folder)
        temp = target_dir / f"{TEMP_PREFIX}{name}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
        try:
            fd = os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)  # health data: 0600
            with os.fdopen(fd, "wb") as out:
                for chunk in iter(lambda: source.read(1 << 20), b""):
                    out.write(chunk)
                    if progress:
                        progress(len(chunk))
                out.flush()
                os.fsync(out.fileno())
            written = os.stat(temp).st_size
            if written != size:
                raise TransportRetryableError(_("{remote}: {name}: wrote {written} bytes, expected {size}").format(
                    remote=self.description, name=name, written=written, size=size), _("run the upload again"))
            os.link(temp, target_dir / name)  # fails if the name exists: never replace
        except OSError as exc:
            if isinstance(exc, FileExistsError):
                raise
            raise _error(exc, name) from None
        finally:
            temp.unlink(missing_ok=True)
        fsync_dir(target_dir)

    def get(self, folder: str, name: str, sink: IO[bytes], progress: Callable[[int], None] | None = None,
            size: int | None = None) -> int:
        path = self._folder(folder) / name
        total = 0
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            raise _error(exc, name) from None
        with os.fdopen(fd, "rb") as source:
            while True:
                try:  # a drop box's failure; the sink's (the local inbox) are the caller's to tell
                    chunk = source.read(1 << 20)
                except OSError as exc:
                    raise _error(exc, name) from None
                if not chunk:
                    break
                sink.write(chunk)
                total += len(chunk)
                if progress:
                    progress(len(chunk))
        return total

    def remove(self, folder: str, name: str) -> None:
        try:
            (self._folder(folder) / name).unlink()
        except FileNotFoundError:
            pass  # gone already: what was asked is done
        except OSError as exc:
            raise _error(exc, name) from None

    def move(self, folder: str, name: str, to_folder: str) -> None:
        source = self._folder(folder) / name
        target = self._folder(to_folder) / name
        try:
            os.link(source, target)
            source.unlink()
        except OSError as exc:
            raise _error(exc, name) from None

    def remove_stale_temps(self, folder: str) -> int:
        count = 0
        for entry in self.list(folder):
            if entry.name.startswith(TEMP_PREFIX) and entry.name.endswith(TEMP_SUFFIX) and entry.is_file:
                (self._folder(folder) / entry.name).unlink(missing_ok=True)
                count += 1
        return count

    def clone(self) -> "LocalTransport":
        return self

    def close_clone(self) -> None:
        pass

    def close(self) -> None:
        pass


def _error(exc: OSError, name: str):
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EAGAIN,  # and a mounted drop box gone away:
                     errno.ENOTCONN, errno.ETIMEDOUT, errno.ESTALE, errno.EHOSTDOWN, errno.EHOSTUNREACH):
        return TransportRetryableError(_("{name}: {reason}").format(name=name, reason=exc.strerror),
                                       _("free space on the drop box, then run again"))
    return TransportFatalError(_("{name}: {reason}").format(name=name, reason=exc.strerror),
                               _("check the drop box folder and its permissions"))

