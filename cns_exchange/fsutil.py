"""Local writes that cannot half-happen.

A file is written to a temp file in its target folder (created 0600: these files hold health
data), flushed and fsynced, then renamed over the target and the folder fsynced. On any
error the temp file is removed and the target is untouched. (Not click's ``atomic=True``,
which installs a half-written file when the command fails.)
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from cns_exchange.errors import UsageError
from cns_exchange.i18n import _


def private_dir(folder: Path, parents: bool = True) -> Path:
    """Create ``folder`` (and, with ``parents``, its missing parents) mode 0700, whatever the
    umask; return it. Folders that exist are left as they are.

    ``Path.mkdir(mode=0o700, parents=True)`` gives the parents it makes the umask's mode
    (0777 under umask 000), and the mode asked for is itself cut by the umask: each folder is
    made 0700 (never wider, whatever the umask) and then chmod-ed to exactly 0700. Raises
    OSError (NotADirectoryError if ``folder`` or a parent is a file, FileNotFoundError for a
    missing parent without ``parents``).
    """
    folder = Path(folder)
    missing = []
    probe = folder
    while not probe.is_dir():
        missing.append(probe)
        if not parents or probe.parent == probe:
            break
        probe = probe.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            if not path.is_dir():  # a file of that name: the folder cannot be (a local I/O error)
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path)) from None
            continue  # made by another run meanwhile: its mode is its own
        os.chmod(path, 0o700)
    return folder


def not_utf8(name: str) -> str | None:
    """``name`` with its bytes shown (``'a\\xff.xml'``) if it is not UTF-8 (a file name written
    in Latin-1, read by Python as lone surrogates), else None. cnsx refuses such names: lxml
    cannot open a file by one, nor can the database or a JSON line hold it."""
    try:
        name.encode("utf-8")
        return None
    except UnicodeEncodeError:
        try:
            return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:
            return name.encode("utf-8", "backslashreplace").decode("ascii")


def fsync_dir(folder: Path) -> None:
    """fsync a folder so that a rename in it survives a crash."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def temp_file(folder: Path, prefix: str = ".cnsx-", suffix: str = ".part") -> Iterator[tuple[IO[bytes], Path]]:
    """Yield ``(stream, path)`` of a new 0600 temp file in ``folder``; remove it on error."""
    try:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
    except OSError as exc:  # name the folder, not a temp name the user never chose
        raise OSError(exc.errno, _("cannot create a file in this folder ({reason})").format(reason=exc.strerror),
                      str(folder)) from None
    path = Path(name)
    stream = os.fdopen(fd, "w+b")
    try:
        yield stream, path
    except BaseException:
        stream.close()
        path.unlink(missing_ok=True)
        raise
    finally:
        if not stream.closed:
            stream.close()


def publish(temp: Path, target: Path, overwrite: bool = True) -> None:
    """Atomically move a finished temp file to ``target`` (same folder), then fsync the folder.

    With ``overwrite=False`` an existing target is never replaced (FileExistsError).
    """
    fd = os.open(temp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    if overwrite:
        os.replace(temp, target)
    else:
        os.link(temp, target)  # fails if target exists: no clobbering
        temp.unlink()
    fsync_dir(target.parent)


def copy_atomic(source: Path, target: Path, sha256: str) -> None:
    """Copy ``source`` to ``target`` atomically (0600), a chunk at a time (memory stays flat).

    The copy must have the SHA-256 ``sha256`` (what was read before): else ValueError, and
    ``target`` is untouched.
    """
    digest = hashlib.sha256()
    with open(source, "rb") as src, temp_file(target.parent) as (stream, path):
        for chunk in iter(lambda: src.read(1 << 20), b""):
            digest.update(chunk)
            stream.write(chunk)
        if digest.hexdigest() != sha256:
            raise ValueError(f"{source} changed while it was read")
        stream.close()
        publish(path, target)


def new_output(option: str, value: str, into_folder: bool = False) -> Path:
    """The path an output option (``-o``, ``--pdf``) names, checked before any work is done:
    cnsx never overwrites a file. With ``into_folder`` an existing folder is accepted (the
    output takes its conventional name there). Returns the path; raises UsageError naming the
    option for a name ending in '/' that is no such folder, anything already there under that
    name, or a parent folder that does not exist. (Writing with :func:`write_new` or
    :func:`publish` ``overwrite=False`` still refuses a file that appears meanwhile.)"""
    path = Path(value)
    if into_folder and path.is_dir():
        return path
    if value.endswith("/"):  # a folder, as a shell completes one: never a file named without the slash
        if into_folder:
            raise UsageError(_("{option} {value}: folder {value} does not exist").format(option=option, value=value),
                             _("create it first, or give a file name"))
        raise UsageError(_("{option} {value}: a folder name; this output is one file").format(option=option, value=value),
                         _("give the file's name"))
    if path.exists() or path.is_symlink():
        if path.is_dir() and not path.is_symlink():
            message = _("{option} {value}: a folder of that name exists; cnsx never overwrites a file")
        elif path.is_file() and not path.is_symlink():
            message = _("{option} {value}: a file of that name exists; cnsx never overwrites a file")
        else:
            message = _("{option} {value}: not a regular file of that name exists; cnsx never overwrites a file")
        raise UsageError(message.format(option=option, value=value),
                         _("remove it, or give another name or a folder") if into_folder else _("remove it, or give another name"))
    if not path.parent.is_dir():
        raise UsageError(_("{option} {value}: folder {folder} does not exist").format(option=option, value=value, folder=path.parent),
                         _("create it first"))
    return path


def write_new(target: Path, draw, overwrite: bool = False):
    """Call ``draw(stream)`` on a new 0600 temp file beside ``target``, then publish it as
    ``target`` atomically; without ``overwrite`` never over an existing file (FileExistsError;
    temp_file removes the temp file). Returns what ``draw`` returned. An OSError of the
    writing (a full disk) names ``target``, not the temp file the user never chose."""
    temp = None
    try:
        with temp_file(target.parent) as (stream, temp):
            result = draw(stream)
            stream.close()
            publish(temp, target, overwrite)
    except OSError as exc:
        if exc.filename is None or (temp is not None and exc.filename == str(temp)):
            exc.filename, exc.filename2 = str(target), None
        raise
    return result


def write_atomic(target: Path, data: bytes, overwrite: bool = True) -> None:
    """Write ``data`` to ``target`` atomically (0600), as :func:`write_new` does."""
    write_new(target, lambda stream: stream.write(data), overwrite)


def sha256_of(path: Path) -> tuple[str, int]:
    """Return (hex SHA-256, size in bytes) of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size

