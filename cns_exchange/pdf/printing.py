"""cnsx print: a billing file -> printable PDFs (each patient's fee note, the summary statement);
and cnsx status --pdf: the practice database's status report.

The billing file is validated first, exactly as ``cnsx validate`` does it: nothing is printed
from an invalid file, so that what is printed is what the CNS is billed, and the printed
totals are the XML header's (checked again after drawing, to the cent, before anything is
published). The file is then read a second time, streaming (xmlread.read_document), and each
fee note is drawn as it comes (pdf.feenote, pdf.summary): memory stays flat whatever the file's size.
Failing closed: should that reading fail where validation passed (an unreadable fee note,
the end of the document never reached), it is the document's fault, exit 3, and nothing is
published: the fee notes are drawn into temp files and published only once all are drawn.

Every PDF names the billing file and its SHA-256, in its footer and in its metadata (the status
report: the SHA-256 of the canonical JSON of the data it shows). Output files are written
atomically (temp file, fsync, link), 0600, and never over an existing file.
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any, Callable, Iterator

from cns_exchange.errors import CnsxError, InputError, UsageError
from cns_exchange.fsutil import private_dir, publish, sha256_of, temp_file, write_new
from cns_exchange.i18n import _, reason
from cns_exchange.issues import Issue
from cns_exchange.domain.model import FeeNote, Header
from cns_exchange.domain.naming import FileName, fee_note_pdf_name, fee_note_pdf_suffix, summary_pdf_name
from cns_exchange.domain.nomenclature import Codes
from cns_exchange.pdf.feenote import Source, Totals, write_fee_note
from cns_exchange.pdf.report import StatusHeading, write_status
from cns_exchange.pdf.summary import write_summary
from cns_exchange.documents.read import Item, read_document
from cns_exchange.documents.safe import spool


@dataclass
class Billing:
    """A validated billing file, ready to print."""

    path: Path           # where it is read from (a private copy for stdin)
    name: str            # the name shown: the file's, or its conventional name for stdin
    sha256: str
    header: Header
    root: str            # its root element (for the reader)
    file_name: FileName  # its conventional name, from the header: the printed files' prefix


@contextmanager
def open_billing(name: str, stream: IO[bytes] | None, validator) -> Iterator[Billing]:
    """Validate the billing file ``name`` (a path, or '-' with ``stream``) and yield it.

    Raises InputError (exit 3) with the issues when it is not a valid billing file.
    """
    spooled = None
    try:
        if name == "-":
            spooled = spool("<stdin>", stream, validator.max_bytes)  # read twice: once to validate, once to print
            path = Path(spooled.name)
        else:
            path = Path(name)
        shown = "<stdin>" if name == "-" else name
        report = validator.validate(str(path), expect_kind="billing", check_name=False, attachments=False)
        errors = [i for i in report.issues if i.is_error]
        for issue in errors:
            issue.file = shown
        if errors:
            raise InputError(_("{file}: not a valid billing file; nothing was printed").format(file=shown),
                             _("fix the document (cnsx validate shows the same issues) and print again"), errors)
        root = validator.registry.get(report.version).documents["billing"].root
        with open(path, "rb") as f:
            first = next(_read(f, shown, root), None)
        header = first.record if first is not None and first.what == "header" else None
        if header is None:
            raise _unreadable(shown, Issue("XML01", _("the header (EnTete) cannot be read"), file=shown))
        sha256, _size = sha256_of(path)
        file_name = FileName(header.provider, "billing", header.created.date(), header.sequence)
        yield Billing(path, path.name if name != "-" else str(file_name), sha256, header, root, file_name)
    finally:
        if spooled is not None:
            spooled.close()


def _unreadable(shown: str, issue: Issue) -> InputError:
    return InputError(_("{file}: the billing file cannot be read to its end; nothing was printed").format(file=shown),
                      _("validate it (cnsx validate), fix or rebuild it, and print again"), [issue])


def _read(source: IO[bytes], shown: str, root: str) -> Iterator[Item]:
    """read_document's items of a billing file; raises InputError (exit 3) where the reader
    fails, whatever its exception: a document validation passed must still read to its end."""
    items = read_document(source, "billing", root)
    while True:
        try:
            item = next(items)
        except StopIteration:
            return
        except CnsxError:
            raise
        except Exception as exc:  # noqa: BLE001 - lxml's XMLSyntaxError and kin: fail closed, exit 3
            raise _unreadable(shown, Issue("XML01", _("cannot be read: {reason}").format(reason=reason(exc)), file=shown)) from exc
        yield item


def _notes(billing: Billing, names: dict[str, tuple[str, str]] | None = None) -> Iterator[FeeNote]:
    """The fee notes of ``billing``, read again; InputError if one cannot be read. A note that
    names no patient takes the (last, first) names ``names`` gives its matricule, if any."""
    with open(billing.path, "rb") as f:
        for item in _read(f, billing.name, billing.root):
            if item.what != "item":
                continue
            if item.record is None:
                raise _unreadable(billing.name, Issue("XSD01", _("a fee note cannot be read: {reason}").format(reason=item.error), file=billing.name,
                                                      line=item.line, xpath=item.xpath))
            note = item.record
            if names and not (note.last_name or note.first_name) and note.matricule in names:
                note = replace(note, last_name=names[note.matricule][0], first_name=names[note.matricule][1])
            yield note


def _source(billing: Billing, codes: Codes, printed: datetime, mask: bool, practice=None) -> Source:
    labels = {act: spec.get("label", "") for act, spec in codes.acts.items()}
    return Source(billing.name, billing.sha256, billing.header, printed, labels, mask, practice)


def _write(target: Path, draw: Callable[[IO[bytes]], Any]) -> Any:
    """Draw into a temp file beside ``target``, then publish it there (0600, never over a file)."""
    try:
        return write_new(target, draw)
    except FileExistsError:
        raise UsageError(_("{file} appeared while printing; cnsx never overwrites a file").format(file=target),
                         _("run again into another folder")) from None


def print_fee_notes(billing: Billing, folder: Path, codes: Codes, printed: datetime, mask: bool = False,
                    practice=None, names: dict[str, tuple[str, str]] | None = None) -> list[Path]:
    """Write one A4 PDF per fee note of ``billing`` into ``folder``; return their paths, in
    the order of the notes. Each is named after its patient, the day of its last session, the
    billing file and its number (naming.fee_note_pdf_name). A fee note that names no patient
    (a sessions CSV's names are optional) takes the names ``names`` gives its matricule (the
    practice's requests), if any.

    The folder is created (0700) if its parent exists. Raises UsageError if the folder
    cannot be made or already holds printed fee notes of this billing file, InputError if
    the billing file cannot be read to its end or its fee notes do not add up to its header:
    nothing is then written. Each fee note is drawn into a temp file in the folder; they are
    published, each atomically, once all are drawn.
    """
    try:
        private_dir(folder, parents=False)
    except OSError as exc:
        raise UsageError(_("-o {folder}: cannot create the folder ({reason})").format(folder=folder, reason=exc.strerror),
                         _("give an existing folder, or one whose parent exists")) from None
    if not folder.is_dir():
        raise UsageError(_("-o {folder}: not a folder").format(folder=folder), _("give a folder: one PDF is written per fee note"))
    existing = sorted(folder.glob(f"*{fee_note_pdf_suffix(billing.file_name)}*.pdf"))   # (older names too)
    if existing:
        raise UsageError(_("{folder} already holds printed fee notes of this billing file ({file}); "
                           "cnsx never overwrites a file").format(folder=folder, file=existing[0].name),
                         _("remove them, or print into another folder"))
    source = _source(billing, codes, printed, mask, practice)
    drawn: list[tuple[Path, Path]] = []  # (temp file, target)
    totals = Totals()
    try:
        for note in _notes(billing, names):
            totals.add(note)
            with temp_file(folder) as (stream, temp):
                last = max((s.session_date for s in note.sessions), default=billing.file_name.day)
                name = fee_note_pdf_name(billing.file_name, note.number, note.last_name, note.first_name, last)
                drawn.append((temp, folder / name))
                write_fee_note(stream, note, source)
        _check_totals(billing, totals)  # (as on the summary: the notes drawn are all the header counts)
        written: list[Path] = []
        for temp, target in drawn:
            try:
                publish(temp, target, overwrite=False)
            except FileExistsError:
                raise UsageError(_("{file} appeared while printing; cnsx never overwrites a file").format(file=target),
                                 _("run again into another folder")) from None
            written.append(target)
    finally:
        for temp, _target in drawn:
            temp.unlink(missing_ok=True)
    return written


def print_summary(billing: Billing, output: Path | None, stdout: IO[bytes] | None, codes: Codes, printed: datetime,
                  mask: bool = True, practice=None,
                  names: dict[str, tuple[str, str]] | None = None) -> tuple[Path | None, Totals]:
    """Write the summary statement of ``billing`` to ``output`` (a new file, or a folder for
    its conventional name) or to ``stdout``; return (the path or None, the totals drawn).
    Fee notes that name no patient are named as in :func:`print_fee_notes`.

    Raises UsageError if the file exists, InputError if the totals drawn differ from the
    header's (nothing is then written).
    """
    source = _source(billing, codes, printed, mask, practice)

    def draw(out: IO[bytes]) -> Totals:
        totals = write_summary(out, _notes(billing, names), source)
        _check_totals(billing, totals)
        return totals

    if stdout is not None:
        return None, _stream(draw, stdout)
    assert output is not None
    target = output / summary_pdf_name(billing.file_name) if output.is_dir() else output
    if target.exists() or target.is_symlink():
        raise UsageError(_("{file} exists; cnsx never overwrites a file").format(file=target), _("remove it, or give another name"))
    return target, _write(target, draw)


def _stream(draw: Callable[[IO[bytes]], Any], stdout: IO[bytes]) -> Any:
    """Draw into a private temp file, then copy it to ``stdout`` (only a finished PDF is sent)."""
    with tempfile.TemporaryDirectory(prefix="cnsx-") as work:
        target = Path(work) / "out.pdf"
        result = _write(target, draw)
        with open(target, "rb") as f:
            shutil.copyfileobj(f, stdout)
        stdout.flush()
    return result


def print_status(sections: dict[str, list[dict]], heading: StatusHeading, output: Path | None,
                 stdout: IO[bytes] | None = None) -> int:
    """Write the status report of ``sections`` (as status.status() returns them, matricules
    masked or not) as an A4 PDF to ``output`` (a new file) or to ``stdout``; return its pages.

    Raises UsageError if ``output`` exists or its folder does not (nothing is then written).
    """
    def draw(out: IO[bytes]) -> int:
        return write_status(out, sections, heading)

    if stdout is not None:
        return _stream(draw, stdout)
    assert output is not None
    if output.exists() or output.is_symlink():
        raise UsageError(_("--pdf {file}: a file of that name exists; cnsx never overwrites a file").format(file=output),
                         _("remove it, or give another name"))
    if not output.parent.is_dir():
        raise UsageError(_("--pdf {file}: folder {folder} does not exist").format(file=output, folder=output.parent),
                         _("create it first"))
    return _write(output, draw)


def _check_totals(billing: Billing, totals: Totals) -> None:
    """The printed totals must be the header's, to the cent (validation checked the same);
    else InputError."""
    extra = billing.header.extra
    wanted = {"NombreMemoires": (totals.notes, False), "NombreSeances": (totals.sessions, False),
              "TotalMontantBrut": (totals.gross, True), "TotalParticipationPersonnelle": (totals.patient, True),
              "TotalPartStatutaire": (totals.cns, True)}
    wrong = []
    for element, (value, money) in wanted.items():
        declared = extra.get(element)
        if declared is None:
            continue
        try:
            number = Decimal(declared) * (100 if money else 1)
        except InvalidOperation:
            number = None
        if number != value:
            message = _("header {element} is {declared}, the fee notes read add up to {found}") if money else \
                _("header {element} is {declared}, the fee notes read count {found}")
            found = f"{value / 100:.2f}" if money else value
            wrong.append(Issue("DOC02" if money else "DOC01", message.format(element=element, declared=declared, found=found),
                               file=billing.name, xpath=f"/{billing.root}/EnTete/{element}"))
    if wrong:  # (validation checked the same sums: a reading that stopped short, without an error, is caught here)
        raise InputError(_("{file}: the fee notes read do not add up to the header; nothing was printed").format(file=billing.name),
                         _("validate the file (cnsx validate) and report the problem"), wrong)
