"""Prescription PDFs: the file a request row names, checked; JPEG/PNG scans converted.

:class:`PrescriptionFiles` checks the file a request row names (it opens as a PDF, is not
encrypted, has a page, is not too large) or, when asked, converts JPEG/PNG scans into one PDF.
Problems are returned as data (code, message, hint), never printed.

pypdf reads and checks PDFs, img2pdf turns JPEG/PNG scans into a PDF without re-encoding them.
Each is imported inside the function that needs it: ``records`` and ``build`` import this
module at their top, and ``cnsx --help`` and the XML-only commands never load them.
"""

from __future__ import annotations

import io
import logging
import os
import shlex
import shutil
import stat
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, NamedTuple

from cns_exchange.config import DEFAULT_MAX_PDF_BYTES
from cns_exchange.i18n import _, ngettext

#: What the first bytes of a file say it is. A PDF may carry up to 1024 bytes of junk before
#: its %PDF- header (readers accept it); everything else is recognised by its signature.
_SIGNATURES = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"PK\x03\x04", "zip"),
    (b"\xd0\xcf\x11\xe0", "office"),
    (b"{\\rtf", "rtf"),
)
_DESCRIPTIONS = {
    "jpeg": _("a JPEG image"),
    "png": _("a PNG image"),
    "gif": _("a GIF image"),
    "tiff": _("a TIFF image"),
    "heic": _("a HEIC photo"),
    "webp": _("a WebP image"),
    "html": _("an HTML page"),
    "zip": _("a ZIP archive (or a Word/OpenDocument file)"),
    "office": _("an old Office document"),
    "rtf": _("an RTF document"),
    "unknown": _("not a PDF"),
}
#: Images that --convert-images turns into a PDF (img2pdf embeds them without re-encoding).
CONVERTIBLE = ("jpeg", "png")


def sniff(head: bytes) -> str:
    """Return what the first bytes of a file are: 'pdf', 'jpeg', 'png', 'html', ... or 'unknown'."""
    if b"%PDF-" in head[:1024]:
        return "pdf"
    for magic, kind in _SIGNATURES:
        if head.startswith(magic):
            return kind
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"heif", b"mif1"):
        return "heic"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    text = head[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in text:
        return "html"
    return "unknown"


class Problem(NamedTuple):
    """A problem with a prescription file: an issue code, a message and (optionally) a hint."""

    code: str
    message: str
    hint: str = ""


@dataclass
class Prescription:
    """The PDF to attach to a request: where it is, its name, SHA-256, size and pages.

    ``path`` is the file itself, or a converted PDF in the build's private temporary folder;
    ``sources`` are the images it was converted from (empty for a PDF given as such).
    """

    path: Path
    name: str
    sha256: str
    size: int
    pages: int
    sources: tuple[Path, ...] = ()


@dataclass
class _File:
    value: str      # as written in the row
    path: Path
    data: bytes
    kind: str


def human_size(size: int) -> str:
    """Return a size for messages: '900 bytes', '6.8 KiB', '20.0 MiB'."""
    if size < 1024:
        return ngettext("{n} byte", "{n} bytes", size).format(n=size)
    if size < 1024 * 1024:
        return _("{size} KiB").format(size=f"{size / 1024:.1f}")
    return _("{size} MiB").format(size=f"{size / (1024 * 1024):.1f}")


@contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    """Silence a library's log and warnings: the problems we return say what matters, and
    stderr is for people (pypdf logs every repaired cross-reference table it meets)."""
    saved = []
    for name in loggers:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level))
        logger.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in saved:
            logger.setLevel(level)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 100 else text[:99] + "…"


def check_pdf(data: bytes, name: str) -> tuple[int, Problem | None]:
    """Open ``data`` as a PDF; return (number of pages, None) or (0, the problem).

    PDF01 if it cannot be read, PDF02 if it is encrypted, PDF03 if it has no page.
    """
    from pypdf import PdfReader

    with _quiet("pypdf"):
        try:
            reader = PdfReader(io.BytesIO(data))
            if reader.is_encrypted:
                return 0, Problem("PDF02", _("'{file}' is encrypted (password-protected)").format(file=name))
            pages = len(reader.pages)
        except Exception as exc:  # noqa: BLE001 - pypdf raises many types on damaged files: all mean "unreadable"
            return 0, Problem("PDF01", _("'{file}' cannot be read as a PDF ({reason})").format(file=name, reason=_reason(exc)))
    if pages == 0:
        return 0, Problem("PDF03", _("'{file}' has no page").format(file=name))
    return pages, None


class PrescriptionFiles:
    """Checks the prescription files of one build and, when asked, converts JPEG/PNG scans.

    Use it as a context manager: converted PDFs live in a private temporary folder (0700,
    files 0600) until the build has copied them beside the request file.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_PDF_BYTES, convert_images: bool = False) -> None:
        self.max_bytes = max_bytes
        self.convert_images = convert_images
        self._workdir: Path | None = None
        self._converted = 0

    def __enter__(self) -> "PrescriptionFiles":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Remove the converted PDFs (once the build has copied them)."""
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def prepare(self, value: str, base_dir: Path) -> tuple[Prescription | None, list[Problem]]:
        """Return the PDF to attach for a ``prescription_pdf`` value, or None and its problems.

        ``value`` is one path, or several JPEG/PNG paths separated by ';' (one prescription
        scanned page by page, combined with ``convert_images``). Relative paths are taken
        from ``base_dir``. Codes: IN008 (cannot read), PDF01-PDF07.
        """
        values = [v.strip() for v in value.split(";") if v.strip()]
        if not values:
            return None, [Problem("IN003", _("'prescription_pdf' names no file"))]
        files: list[_File] = []
        problems: list[Problem] = []
        for v in values:
            read = self._read(v, base_dir)
            if isinstance(read, Problem):
                problems.append(read)
            else:
                files.append(read)
        if problems:
            return None, problems
        refused = [f for f in files if f.kind != "pdf" and f.kind not in CONVERTIBLE]
        if refused:
            return None, [self._not_pdf(f) for f in refused]
        if len(files) > 1 and any(f.kind == "pdf" for f in files):
            return None, [Problem(
                "PDF06", ngettext("'{value}' names {n} file, among them a PDF: only JPEG or PNG scans can be combined",
                                  "'{value}' names {n} files, among them a PDF: only JPEG or PNG scans can be combined",
                                  len(files)).format(value=value, n=len(files)),
                _("give one PDF per prescription; to merge PDFs: qpdf --empty --pages a.pdf b.pdf -- prescription.pdf"))]
        if files[0].kind == "pdf":
            f = files[0]
            pages, problem = check_pdf(f.data, f.value)
            if problem is not None:
                return None, [problem]
            return Prescription(f.path, f.path.name, _sha256(f.data), len(f.data), pages), []
        if not self.convert_images:
            return None, [self._image_refused(files)]
        return self._convert(files, value)

    def _read(self, value: str, base_dir: Path) -> _File | Problem:
        path = Path(value)
        if not path.is_absolute():
            path = base_dir / path
        try:
            info = path.stat()
        except OSError as exc:
            return Problem("IN008", _("cannot read '{file}' ({reason})").format(file=value, reason=exc.strerror))
        if stat.S_ISDIR(info.st_mode):
            return Problem("IN008", _("cannot read '{file}' (it is a folder)").format(file=value))
        if not stat.S_ISREG(info.st_mode):
            return Problem("IN008", _("cannot read '{file}' (not a regular file)").format(file=value))  # a FIFO would hang the build
        if info.st_size > self.max_bytes:
            return self._too_large(value, info.st_size)
        try:
            with open(path, "rb") as f:
                data = f.read(self.max_bytes + 1)
        except OSError as exc:
            return Problem("IN008", _("cannot read '{file}' ({reason})").format(file=value, reason=exc.strerror))
        if len(data) > self.max_bytes:
            return self._too_large(value, len(data))
        return _File(value, path, data, sniff(data[:1024]))

    def _too_large(self, what: str, size: int) -> Problem:
        return Problem("PDF04", _("'{file}' is {size}, over the limit of {limit} (max_pdf_bytes)").format(
            file=what, size=human_size(size), limit=human_size(self.max_bytes)))

    @staticmethod
    def _not_pdf(f: _File) -> Problem:
        if f.kind == "html":
            hint = _("the CNS refuses HTML: print the prescription to PDF, or scan the paper prescription to PDF")
        else:
            hint = _("scan or export the prescription to PDF; only JPEG and PNG scans can be converted (--convert-images)")
        if f.kind not in _DESCRIPTIONS or f.kind == "unknown":
            return Problem("PDF05", _("'{file}' is not a PDF").format(file=f.value), hint)
        return Problem("PDF05", _("'{file}' is {what}, not a PDF").format(file=f.value, what=_DESCRIPTIONS[f.kind]), hint)

    @staticmethod
    def _image_refused(files: list[_File]) -> Problem:
        names = ";".join(f.value for f in files)
        target = shlex.quote(str(Path(files[0].value).with_suffix(".pdf")))
        command = "img2pdf " + " ".join(shlex.quote(f.value) for f in files) + f" -o {target}"
        if len(files) == 1:
            return Problem("PDF05", _("'{file}' is {what}, not a PDF").format(file=names, what=_DESCRIPTIONS[files[0].kind]),
                           _("pass --convert-images to turn it into one PDF losslessly, or convert it yourself: {command}")
                           .format(command=command))
        kinds = sorted({f.kind.upper() for f in files})
        what = _("'{files}' are {kind} images, not a PDF") if len(kinds) == 1 else \
            _("'{files}' are {kind} and {other} images, not a PDF")
        return Problem("PDF05", what.format(files=names, kind=kinds[0], other=kinds[-1]),
                       _("pass --convert-images to turn them into one PDF losslessly, or convert them yourself: {command}")
                       .format(command=command))

    def _convert(self, files: list[_File], value: str) -> tuple[Prescription | None, list[Problem]]:
        data, why = _images_to_pdf([f.data for f in files])
        if data is None:
            # Find the image img2pdf stumbled on, to name it.
            for f in files if len(files) > 1 else ():
                if _images_to_pdf([f.data])[0] is None:
                    return None, [Problem("PDF07", _("'{file}' cannot be converted to PDF ({reason})").format(
                        file=f.value, reason=why))]
            return None, [Problem("PDF07", _("'{file}' cannot be converted to PDF ({reason})").format(file=value, reason=why))]
        if len(data) > self.max_bytes:
            return None, [Problem("PDF04", _("the PDF made from '{file}' is {size}, over the limit of {limit} (max_pdf_bytes)")
                                  .format(file=value, size=human_size(len(data)), limit=human_size(self.max_bytes)))]
        pages, checked = check_pdf(data, value)
        if checked is not None:  # pragma: no cover - img2pdf wrote something pypdf cannot read
            return None, [Problem("PDF07", _("'{file}' cannot be converted to PDF ({reason})").format(
                file=value, reason=checked.message))]
        self._converted += 1
        name = Path(files[0].value).stem + ".pdf"
        path = self._folder() / f"{self._converted:06d}-{name}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        return Prescription(path, name, _sha256(data), len(data), pages, tuple(f.path for f in files)), []

    def _folder(self) -> Path:
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="cnsx-pdf-"))  # 0700
        return self._workdir


def _images_to_pdf(images: list[bytes]) -> tuple[bytes | None, str]:
    """Return (one PDF with a page per image, '') or (None, why img2pdf refused).

    JPEG data is embedded as it is (no re-encoding, so no quality is lost) and PNG data
    losslessly; each image is fitted into an A4 page (turned to landscape for a landscape
    image) without resampling. No date is written, so the same scans give the same PDF and
    the same SHA-256 on every run.
    """
    import img2pdf

    a4 = (img2pdf.mm_to_pt(210), img2pdf.mm_to_pt(297))
    layout = img2pdf.get_layout_fun(a4, fit=img2pdf.FitMode.into, auto_orient=True)
    with _quiet("img2pdf", "PIL"):
        try:
            return img2pdf.convert(*images, layout_fun=layout, nodate=True, engine=img2pdf.Engine.internal), ""
        except Exception as exc:  # noqa: BLE001 - img2pdf and Pillow raise many types on bad images
            return None, _reason(exc)


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()
