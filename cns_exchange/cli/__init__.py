"""The ``cnsx`` command line: thin commands over the core modules.

Each command resolves its options, opens its streams, calls one core function and prints the
result. Errors of the :mod:`cns_exchange.errors` family become their exit code here, in
:meth:`CnsxGroup.main`, the only place that exits.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

import click

from cns_exchange import __version__
from cns_exchange.errors import CnsxError, ExitCode, InputError, TransportFatalError, UsageError, local_failure
from cns_exchange.issues import plural


class _ReaderGone(Exception):
    """A BrokenPipeError on stdout, carried past click (which would exit 1 on it). (On
    stderr, the console sends the rest of the messages to /dev/null and the run goes on.)"""


class CnsxGroup(click.Group):
    """Turns every error into its documented exit code; tracebacks only with --debug."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise _ReaderGone() from None
        except Exception as exc:
            translated = local_failure(exc)  # a full disk, a read-only database: the machine's, not a bug
            if translated is None:
                raise
            raise translated from exc

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        from cns_exchange.console import messages_may_be_lost

        with messages_may_be_lost():  # stderr on a full disk or a gone reader stops no run
            self._main(args, prog_name, complete_var, **extra)

    def _main(self, args, prog_name, complete_var, **extra):
        argv = args if args is not None else sys.argv[1:]
        debug = os.environ.get("CNSX_DEBUG") == "1" or "--debug" in argv
        if sys.stdin is None:
            sys.stdin = _Closed("stdin")  # type: ignore[assignment]
        if sys.stdout is None:
            sys.stdout = _Closed("stdout")  # type: ignore[assignment]
        try:
            _check_arguments(argv)
            rv = super().main(args=args, prog_name=prog_name or "cnsx", complete_var=complete_var,
                              standalone_mode=False, **extra)
            try:
                sys.stdout.flush()  # here, where a broken pipe is caught, not at the interpreter's exit
            except OSError as exc:
                raise local_failure(exc, "stdout") or exc
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(ExitCode.USAGE if isinstance(exc, click.UsageError) else exc.exit_code)
        except click.Abort as exc:
            if isinstance(exc.__context__, EOFError) and not isinstance(exc.__context__, KeyboardInterrupt):
                # click turns an EOFError into Abort: here it is a connection lost, not Ctrl-C.
                from cns_exchange import console

                console.print_error(f"connection lost ({exc.__context__ or 'EOF'})", "run again: cnsx resumes where it stopped")
                sys.exit(ExitCode.TRANSPORT_RETRYABLE)
            _interrupted()
        except KeyboardInterrupt:
            _interrupted()
        except CnsxError as exc:
            from cns_exchange import console

            if isinstance(exc, InputError) and exc.issues:
                console.print_issues(exc.issues)
            console.print_error(exc.message, exc.hint)
            if debug:
                raise
            sys.exit(exc.exit_code)
        except (BrokenPipeError, _ReaderGone):
            _reader_gone()
        except OSError as exc:  # outside a command (invoke translates those): the machine's, not a bug
            if debug:
                raise
            from cns_exchange import console

            error = local_failure(exc)
            console.print_error(error.message, error.hint)
            sys.exit(error.exit_code)
        except Exception as exc:  # noqa: BLE001 - the last resort: never a traceback for users
            if debug:
                raise
            from cns_exchange import console

            console.print_error(f"internal error: {type(exc).__name__}: {exc}",
                                "run again with --debug and report the traceback")
            sys.exit(ExitCode.INTERNAL)
        if isinstance(rv, int):
            sys.exit(rv)
        sys.exit(ExitCode.OK)


def _interrupted() -> None:
    """Ctrl-C: say so and exit 130 at once. Everything half-made was removed on the way here
    (temp files are removed by their own ``except``/``finally``); a libxml2 check still
    running in its thread (seconds on a large file) is not waited for: the process ends
    without the interpreter's finalisation, which that thread would not survive."""
    click.echo("interrupted", err=True)
    verdict = sys.modules.get("cns_exchange.documents.verdict")
    if verdict is not None and verdict.libxml2_running():
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError, CnsxError):
                pass
        os._exit(ExitCode.INTERRUPTED)
    sys.exit(ExitCode.INTERRUPTED)


def _check_arguments(args) -> None:
    """Refuse an argument that is not UTF-8 text (a file name written in Latin-1, say): cnsx
    names, records and prints files by their names, as UTF-8, and lxml cannot open such a
    file by name at all. UsageError naming its bytes."""
    from cns_exchange.fsutil import not_utf8

    for arg in args:
        shown = not_utf8(arg)
        if shown is not None:
            raise UsageError(f"'{shown}' is not UTF-8: cnsx takes file names and values in UTF-8",
                             "rename the file with a UTF-8 name (e.g. convmv -f latin1 -t utf-8 --notest FILE)")


def _format_options(**helps: str):
    """--json/--ndjson/--csv as flags of their own, handed to the command as ``fmt`` (None if
    none): two of them is a usage error, not the last one silently winning."""
    import functools

    def decorate(func):
        @functools.wraps(func)
        def command(*args, **kwargs):
            given = [name for name in helps if kwargs.pop(f"fmt_{name}")]
            if len(given) > 1:
                raise UsageError(f"--{' and --'.join(given)}: one output format at a time", "give one of them")
            return func(*args, fmt=given[0] if given else None, **kwargs)

        for name, text in reversed(list(helps.items())):
            command = click.option(f"--{name}", f"fmt_{name}", is_flag=True, help=text)(command)
        return command

    return decorate


class _Closed:
    """Stands in for a stdin or stdout cnsx was started without (``>&-``): a command that
    needs it stops with a usage error; the others run as usual."""

    def __init__(self, name: str) -> None:
        self.name = name

    def isatty(self) -> bool:
        return False

    def flush(self) -> None:
        pass

    def __getattr__(self, attribute: str):
        raise UsageError(f"{self.name} is closed: cnsx was started without it", f"start cnsx with its {self.name} open")


def _reader_gone() -> None:
    """The reader of our stdout went away (e.g. `| head`): the output is cut, as a shell
    reports a death by SIGPIPE (exit 141), without a message. What is still buffered goes
    nowhere (else the interpreter's last flush fails again)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    sys.exit(ExitCode.OUTPUT_CUT)


class Context:
    """Options shared by every command, and lazily loaded settings and tables."""

    def __init__(self, config: str | None, profile: str | None, debug: bool, quiet: bool, verbose: bool = False) -> None:
        self.config_path = config
        self.profile = profile
        self.debug = debug
        self.quiet = quiet
        self.verbose = verbose and not quiet
        self._settings = None

    @property
    def show_progress(self) -> bool:
        """Progress bars only for a person watching a terminal."""
        return not self.quiet and sys.stderr.isatty()

    @property
    def settings(self):
        if self._settings is None:
            from cns_exchange.config import load_settings

            self._settings = load_settings(self.config_path, self.profile)
        return self._settings

    def tables(self):
        """Return (codes, nomenclature, schema registry) for this run."""
        from cns_exchange.domain.nomenclature import load_codes, load_nomenclature
        from cns_exchange.documents.schemas import SchemaRegistry

        return (load_codes(), load_nomenclature(self.settings.nomenclature_dirs),
                SchemaRegistry(self.settings.schema_dirs))

    def validator(self, max_size: int | None = None):
        from cns_exchange.validation.validate import Validator

        codes, nomenclature, registry = self.tables()
        return Validator(registry, codes, nomenclature, max_size or self.settings.max_xml_bytes)


pass_context = click.make_pass_decorator(Context)


@click.group(cls=CnsxGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "-V", "--version", prog_name="cnsx", message="%(prog)s %(version)s")
@click.option("--config", "config", metavar="PATH", help="Config file (default: $CNSX_CONFIG, else the user config folder's config.toml).")
@click.option("--profile", metavar="NAME", help="Config profile (default: $CNSX_PROFILE, else default_profile).")
@click.option("-q", "--quiet", is_flag=True, help="Print only problems.")
@click.option("-v", "--verbose", is_flag=True, help="Say what was done (transfers and imports are silent on success).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.pass_context
def cli(ctx: click.Context, config, profile, quiet, verbose, debug) -> None:
    """cnsx: electronic exchange of a dietician practice with the CNS (Luxembourg).

    Build request and billing files from the practice's CSV/JSON, validate them, and (in later
    commands) send them and read the CNS's answers. Exit codes: 0 ok, 1 internal error, 2 usage,
    3 invalid input or document, 4 configuration error, 5/6 transport failure, 7 locked,
    8 local file cannot be read or written.
    """
    ctx.obj = Context(config, profile, debug, quiet, verbose)
    _debug_log(debug)


class _StderrHandler(logging.Handler):
    """Writes log records to the stderr of the moment (a test runner swaps it per run)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(f"cnsx debug: {self.format(record)}\n")
        except (OSError, ValueError):
            pass


def _debug_log(debug: bool) -> None:
    """With --debug, the library's debug lines (a check switched off, why) reach stderr."""
    logger = logging.getLogger("cnsx")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler())
        logger.propagate = False
    logger.setLevel(logging.DEBUG if debug else logging.WARNING)


def _created(value: str | None) -> datetime:
    """The file's creation time: --created, else $SOURCE_DATE_EPOCH, else now (local time)."""
    if value:
        try:
            created = datetime.fromisoformat(value)
        except ValueError:
            raise UsageError(f"--created '{value}' is not an ISO 8601 date-time", "e.g. 2026-11-26T09:30:00+01:00") from None
        return created if created.tzinfo else created.astimezone()
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        from cns_exchange.clock import from_epoch

        return from_epoch(epoch)
    return datetime.now().astimezone().replace(microsecond=0)


def _open_input(name: str):
    """Open an input path, or stdin for '-' (only then: never implicitly)."""
    if name == "-":
        from cns_exchange.rows.records import peekable

        return peekable(sys.stdin.buffer), "<stdin>", Path.cwd()
    path = Path(name)
    try:
        stream = open(path, "rb")
    except OSError as exc:
        raise InputError(f"{name}: cannot open ({exc.strerror})", "check the path") from None
    return stream, name, path.resolve().parent


def _no_missing_folder(option: str, output: str) -> None:
    """A name ending with '/' names a folder (as a shell completes one): if there is none,
    that is a usage error, not a file named without the slash."""
    if output.endswith("/") and not Path(output).is_dir():
        raise UsageError(f"{option} {output}: folder {output} does not exist", "create it first, or give a file name")


def _destination(output: str | None):
    from cns_exchange.billing.build import Destination

    if output is None or output == "-":
        return Destination(stream=sys.stdout.buffer)
    _no_missing_folder("-o", output)
    path = Path(output)
    if path.is_dir():
        return Destination(path=path)
    if path.exists() or path.is_symlink():
        what = "a file" if path.is_file() and not path.is_symlink() else "not a regular file"
        raise UsageError(f"-o {output}: {what} of that name exists; cnsx never overwrites a document",
                         "remove it, or give another name or a folder")
    if not path.parent.is_dir():
        raise UsageError(f"-o {output}: folder {path.parent} does not exist", "create it first")
    return Destination(path=path)


def _build_options(func):
    options = [
        click.argument("input", metavar="INPUT"),
        click.option("--input-format", type=click.Choice(["csv", "json", "ndjson"]), help="Input format (default: from the extension; '-' is sniffed)."),
        click.option("--encoding", metavar="NAME", help="Text encoding of the input (default: the config's encoding, else detected: UTF-8, else Windows-1252)."),
        click.option("--strict", is_flag=True, help="Refuse columns cnsx does not use (IN002) instead of ignoring them with a warning (IN017)."),
        click.option("-o", "--output", metavar="PATH", help="Output file, or a folder to get the conventional name (default: stdout)."),
        click.option("--provider", metavar="CODE", help="The practice's CNS provider code (default: from the config)."),
        click.option("--sequence", type=click.IntRange(1, 999999), help="File sequence number (default: next free one in the output folder, else 1)."),
        click.option("--schema-version", metavar="VERSION", help="Schema version to write (default: the one in force on the creation date)."),
        click.option("--created", metavar="DATETIME", help="Creation time written in the header (default: now, or $SOURCE_DATE_EPOCH)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _reading(ctx: Context, encoding: str | None, strict: bool):
    """How to read the input: --encoding, else the config's encoding (exit 4 if unknown), else
    detected; the config's [columns]; --strict."""
    from cns_exchange.errors import ConfigError
    from cns_exchange.rows.records import Reading, canonical_encoding

    configured = ctx.settings.encoding
    if encoding is None and configured and configured != "detect":
        try:
            canonical_encoding(configured)
        except UsageError as exc:
            raise ConfigError(f"encoding in the config: {exc.message}", "e.g. encoding = \"cp1252\", or leave it out to detect") from None
        encoding = configured
    return Reading(encoding, ctx.settings.columns or {}, strict)


def _report_build(ctx: Context, result, what: str) -> None:
    from cns_exchange import console

    if result.warnings:
        console.print_issues(result.warnings)
    if ctx.quiet:
        return
    where = str(result.path) if result.path else "stdout"
    console.print_line(f"{what} → {where} (sha256 {result.sha256[:12]}…)")


@cli.command("build-request")
@_build_options
@click.option("--convert-images", is_flag=True,
              help="Turn JPEG/PNG prescription scans into a PDF (lossless; 'a.jpg;b.jpg' makes one PDF of two pages). Needs -o.")
@click.option("--db", "db", metavar="PATH", help="Practice database whose earlier treatments the requests are checked against (default: the profile's, if it exists).")
@pass_context
def build_request_cmd(ctx: Context, input, input_format, encoding, strict, output, provider, sequence, schema_version,
                      created, convert_images, db):
    """Build a request file for certificates of coverage from INPUT (CSV, JSON or NDJSON; '-' = stdin).

    Columns: request_ref, matricule, last_name, first_name, prescriber_code, prescription_date,
    pathology_codes (';'-separated), treatment (initial|extension), prescription_pdf (path,
    relative to INPUT's folder; with --convert-images also JPEG/PNG scans, several joined by
    ';'); optional requested_acts (e.g. ZD11:1;ZD12:1;ZD13:4).
    """
    from cns_exchange.billing import build
    from cns_exchange.rows import records
    from cns_exchange.pdf.pages import PrescriptionFiles

    created_at = _created(created)
    destination = _destination(output)
    if convert_images and destination.path is None:
        raise UsageError("--convert-images needs -o FOLDER or -o FILE: the converted PDFs are written beside the request file",
                         "e.g. -o outbox/")
    codes, nomenclature, registry = ctx.tables()
    header, name = build.resolve_header(registry, provider or ctx.settings.provider, created_at, schema_version,
                                        sequence, destination, "request")
    stream, source_name, base_dir = _open_input(input)
    conn = _practice_database(ctx, db)
    try:
        with PrescriptionFiles(ctx.settings.max_pdf_bytes, convert_images) as prescriptions:
            with stream:
                fmt = records.detect_format(input, stream, input_format)
                requests, report = build.load_requests(stream, source_name, fmt, codes, base_dir, created_at.date(),
                                                       header.provider, _reading(ctx, encoding, strict), prescriptions,
                                                       _history(conn))
            path, sha = _publish_requests(ctx, build, requests, header, name, destination)
    finally:
        if conn is not None:
            conn.close()
    result = build.BuildResult("request", name, path, sha, len(requests), warnings=report.issues)
    _report_build(ctx, result, plural(len(requests), "request"))


def _publish_requests(ctx: Context, build, requests, header, name, destination):
    """Copy the prescriptions, then publish the request file; return (path, sha256)."""
    from cns_exchange.documents.write import write_request_file

    if destination.path is not None:
        # The prescriptions first: a request file is never visible without its PDFs.
        build.copy_attachments(requests, destination.folder)
    return build.publish_document("request", lambda out: write_request_file(out, header, requests), name,
                                  destination, ctx.validator(), header.version)


def _database_path(ctx: Context, db: str | None) -> Path:
    """The practice database's path: ``--db``, else the profile's."""
    return Path(db).expanduser() if db else ctx.settings.database_path()


def _existing_database(ctx: Context, db: str | None) -> Path:
    """:func:`_database_path`, for a command that reads the database: InputError if there is none yet."""
    path = _database_path(ctx, db)
    if not path.exists():
        raise InputError(f"{path}: no practice database yet", "run cnsx import (or upload/fetch) first, or pass --db")
    return path


def _practice_database(ctx: Context, db: str | None):
    """The practice database to check against: ``--db`` (which must exist), else the profile's
    if it exists; None if there is none."""
    path = _database_path(ctx, db)
    if db and not path.exists():
        raise InputError(f"--db {db}: no such database", "check the path")
    if not path.exists():
        return None
    from cns_exchange.store import database

    return database.connect(path)


def _history(conn):
    """The treatments granted before, from the practice database (None: none to check against)."""
    if conn is None:
        return None
    from cns_exchange.store.database import TreatmentHistory

    return TreatmentHistory(conn)


@cli.command("build-invoice")
@_build_options
@click.option("--db", "db", metavar="PATH", help="Practice database whose certificates the sessions are checked against.")
@click.option("--no-certificate-check", is_flag=True, help="Do not check sessions against the imported certificates.")
@click.option("--rebill", metavar="REASON", help="Bill again sessions billed already (CRT06), for this reason (kept in the database).")
@pass_context
def build_invoice_cmd(ctx: Context, input, input_format, encoding, strict, output, provider, sequence, schema_version,
                      created, db, no_certificate_check, rebill):
    """Build a billing file (fee notes, third-party payment) from INPUT (CSV, JSON or NDJSON; '-' = stdin).

    Columns: certificate_number, matricule, session_date, act_code; optional executing_provider
    (default: the billing provider), last_name, first_name, prescription_date (default: the
    certificate's request in the database). One fee note per certificate; each session is priced
    with the tariff table in force on its date, the patient share by the age on the prescription date.
    """
    from cns_exchange.billing import build
    from cns_exchange.rows import records

    created_at = _created(created)
    destination = _destination(output)
    codes, nomenclature, registry = ctx.tables()
    provider = provider or ctx.settings.provider
    header, name = build.resolve_header(registry, provider, created_at, schema_version, sequence, destination, "billing")
    book = conn = None
    if rebill is not None and not rebill.strip():
        raise UsageError("--rebill needs a reason", "e.g. --rebill 'CNS letter of 2026-12-01: file lost'")
    conn = _practice_database(ctx, db)
    if conn is not None:
        # Sessions billed already are always looked for; certificates once some are imported.
        certificates = not no_certificate_check and bool(conn.execute("SELECT 1 FROM certificates LIMIT 1").fetchone() or db)
        book = build.CertificateBook(conn, certificates, rebill.strip() if rebill else None)
    elif rebill is not None:
        raise UsageError("--rebill: there is no practice database to say what was billed", "pass --db PATH")
    stream, source_name, _ = _open_input(input)
    try:
        with stream:
            fmt = records.detect_format(input, stream, input_format)
            result = build.build_billing(stream, source_name, fmt, codes, nomenclature, header, name, destination,
                                         ctx.validator(), _reading(ctx, encoding, strict), book)
    finally:
        if conn is not None:
            conn.close()
    _report_build(ctx, result, f"{plural(result.items, 'fee note')}, {plural(result.sessions, 'session')}, "
                               f"{result.gross / 100:.2f} EUR gross, {result.cns / 100:.2f} EUR to the CNS")


@cli.command("validate")
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--json", "as_json", is_flag=True, help="Print the reports as JSON on stdout.")
@click.option("--max-size", type=click.IntRange(min=1), metavar="BYTES", help="Refuse documents larger than this (default: max_xml_bytes, 512 MiB).")
@click.option("--no-attachments", is_flag=True, help="Do not look for a request file's prescription PDFs beside it.")
@click.option("--db", "db", metavar="PATH", help="Also check requests against the earlier treatments in this practice database.")
@pass_context
def validate_cmd(ctx: Context, files, as_json, max_size, no_attachments, db):
    """Validate CNS documents (any of the five kinds, any installed schema version).

    Detects each file's kind and version, checks it against its XSD and the business rules,
    and reports every issue with its code, line and XPath. A request file on disk must have
    its prescription PDFs beside it, matching their SHA-256. '-' reads stdin. Exit 3 if any
    file has an error.
    """
    from cns_exchange import console

    if files.count("-") > 1:
        raise UsageError("'-' (stdin) can be given only once", "pass the other documents as paths")
    validator = ctx.validator(max_size)
    conn = _practice_database(ctx, db) if db else None
    validator.history = _history(conn)
    reports = []
    try:
        for name in files:
            report = validator.validate(name, stream=sys.stdin.buffer if name == "-" else None,
                                        attachments=not no_attachments)
            reports.append(report)
            console.print_issues(report.issues)
            if not ctx.quiet:
                what = (f"{report.kind} v{report.version or '?'}, {plural(report.items, 'item')}" if report.kind
                        else "unknown document")
                console.print_line(f"{report.name}: {'valid' if report.ok else 'INVALID'} ({what})",
                                   style="green" if report.ok else "red")
    finally:
        if conn is not None:
            conn.close()
    if as_json:
        out = sys.stdout
        json.dump([r.as_dict() for r in reports], out, ensure_ascii=False, indent=2)
        out.write("\n")
    return ExitCode.INVALID if any(not r.ok for r in reports) else ExitCode.OK


@cli.group("print")
def print_group():
    """Print a billing file as PDFs: each patient's fee note, the summary statement.

    The billing file is validated first (as cnsx validate does): nothing is printed from an
    invalid file. Every PDF names the billing file and its SHA-256 (footer and metadata).
    """


def _print_options(func):
    options = [
        click.argument("billing", metavar="BILLING.xml"),
        click.option("--created", metavar="DATETIME", help="Creation date of the PDFs (default: now, or $SOURCE_DATE_EPOCH)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@print_group.command("fee-notes")
@_print_options
@click.option("-o", "--output", metavar="DIR", required=True, help="Folder for the PDFs (created 0700 if missing).")
@click.option("--matricule", type=click.Choice(["full", "masked"]), default="full", show_default=True,
              help="Print the patient's matricule in full, or masked but for its last 4 digits.")
@pass_context
def print_fee_notes_cmd(ctx: Context, billing, created, output, matricule):
    """Print one A4 PDF per fee note of BILLING.xml (for the patient; '-' = stdin).

    Each shows the practice's provider code, the patient, the certificate, every session
    (date, act, label, gross, patient share, CNS share) and the totals. Files are named
    SENDER_FAC_YYYYMMDD_SEQUENCE_MHnnnn.pdf; none is ever overwritten.
    """
    from cns_exchange import console
    from cns_exchange.pdf import printing

    if output == "-":
        raise UsageError("-o -: fee notes are one PDF each, they go to a folder", "give -o a folder")
    printed = _created(created)
    codes, _, _ = ctx.tables()
    with printing.open_billing(billing, sys.stdin.buffer if billing == "-" else None, ctx.validator()) as source:
        written = printing.print_fee_notes(source, Path(output), codes, printed, mask=matricule == "masked",
                                           practice=ctx.settings.practice)
    if not ctx.quiet:
        where = str(written[0]) if written else output
        if len(written) > 1:
            where += f" … {written[-1].name}"
        console.print_line(f"{plural(len(written), 'fee note')} → {where}")


@print_group.command("summary")
@_print_options
@click.option("-o", "--output", metavar="FILE.pdf", required=True,
              help="The PDF to write (a new file), a folder for its conventional name, or '-' for stdout.")
@click.option("--matricule", type=click.Choice(["full", "masked"]), default="masked", show_default=True,
              help="Print the patients' matricules in full, or masked but for their last 4 digits.")
@pass_context
def print_summary_cmd(ctx: Context, billing, created, output, matricule):
    """Print the summary statement (relevé récapitulatif) of BILLING.xml as an A4 PDF ('-' = stdin).

    Header data, one row per fee note, and the totals, which are the XML header's to the cent.
    """
    from cns_exchange import console
    from cns_exchange.pdf import printing

    printed = _created(created)
    if output == "-" and sys.stdout.isatty():
        raise UsageError("-o -: stdout is a terminal, not the place for a PDF", "redirect it (> recap.pdf) or give a file name")
    if output != "-":
        _no_missing_folder("-o", output)
        target = Path(output)
        if not target.is_dir() and (target.exists() or target.is_symlink()):
            raise UsageError(f"-o {output}: a file of that name exists; cnsx never overwrites a file",
                             "remove it, or give another name or a folder")
        if not target.is_dir() and not target.parent.is_dir():
            raise UsageError(f"-o {output}: folder {target.parent} does not exist", "create it first")
    codes, _, _ = ctx.tables()
    with printing.open_billing(billing, sys.stdin.buffer if billing == "-" else None, ctx.validator()) as source:
        path, totals = printing.print_summary(source, None if output == "-" else Path(output),
                                              sys.stdout.buffer if output == "-" else None, codes, printed,
                                              mask=matricule == "masked", practice=ctx.settings.practice)
    if not ctx.quiet:
        console.print_line(f"{plural(totals.notes, 'fee note')}, {plural(totals.sessions, 'session')}, "
                           f"{totals.gross / 100:.2f} EUR gross, {totals.cns / 100:.2f} EUR to the CNS → {path or 'stdout'}")


def main() -> None:
    """Console-script entry point."""
    cli.main()


# --- transport commands ----------------------------------------------------------------------

def _prompt_secret(what: str) -> str:
    """Ask for a secret on the terminal (never echoed); refused without a terminal."""
    if not sys.stdin.isatty():
        raise UsageError(f"{what}: a prompt needs a terminal", "under cron use env or keyring as the secret's source")
    return click.prompt(what, hide_input=True, err=True)


def _transport_context(ctx: Context):
    """Return (settings, remote, connect) for the selected profile."""
    from cns_exchange.transport import open_transport

    settings = ctx.settings
    remote = settings.remote_url()
    return settings, remote, lambda: open_transport(settings, _prompt_secret)


def _on_retry(ctx: Context):
    from cns_exchange import console

    def report(exc, attempt, delay):
        if ctx.verbose:  # a retry that then succeeds needs no human
            console.print_line(f"retry {attempt} in {delay:.0f} s: {exc.message}")
    return report


@cli.command("upload")
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--name", metavar="NAME", help="Remote name of the document read from '-' (stdin).")
@click.option("--force", is_flag=True, help="Resend content already sent, under a new sequence number.")
@click.option("--wait", type=click.FloatRange(min=0), default=0, metavar="SECONDS", help="Wait for another run's lock.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line per file on stdout.")
@click.option("--move-sent", "move_sent", metavar="DIR",
              help="Move each file recorded sent (a request's PDFs with it) into DIR, never over a file.")
@pass_context
def upload_cmd(ctx: Context, files, name, force, wait, as_json, move_sent):
    """Send documents (and the prescription PDFs a request names) to the CNS.

    Each file is validated first; an invalid one is exit 3 and nothing is sent. Files go up
    under a temporary name, are checked, then renamed; an existing remote file is never
    replaced. Every upload is recorded in the database's ledger: content already sent is not
    sent again. Ends with a summary ("2 sent, 31 already sent"); -v names each file.
    """
    from cns_exchange import console
    from cns_exchange.store import database
    from cns_exchange.transport import upload as sending
    from cns_exchange.store.lock import run_lock

    settings, remote, connect = _transport_context(ctx)
    paths, names = [], {}
    spool = None
    if "-" in files:
        if files != ("-",) or not name:
            raise UsageError("'-' uploads one document read from stdin and needs --name", "e.g. --name 123456_FAC_20261126_000001.xml")
        from cns_exchange.transport import unsafe_name_reason

        if unsafe_name_reason(name):
            raise UsageError(f"--name {name}: {unsafe_name_reason(name)}", "give a plain file name")
        spool = sending.receive(sys.stdin.buffer, settings.local_dir("outbox"), name, settings.max_xml_bytes)
        paths = [spool]
    else:
        for f in files:
            path = Path(f)
            if not path.is_file():
                raise InputError(f"{f}: no such file", "check the path")
            paths.append(path)
    validator = ctx.validator()
    # Every document is validated before anything is done (the lock, the database, a
    # renumbered copy): a broken one is exit 3 with its issues, whatever else is going on.
    try:
        planned = sending.plan(paths, validator, names)
    except InputError:
        if spool is not None:  # refused: not kept in the outbox, where a later run would take it
            spool.unlink(missing_ok=True)
        raise
    db_path = settings.database_path()
    with run_lock(db_path, wait):
        conn = database.connect(db_path)
        try:
            if force:
                outbox = settings.local_dir("outbox")
                renamed = []
                for path in paths:
                    sha, _ = sending.sha256_of(path)
                    conn_row = conn.execute("SELECT 1 FROM uploads WHERE sha256 = ? AND remote = ? AND result = 'sent'",
                                            (sha, str(remote))).fetchone()
                    renamed.append(sending.renumbered_copy(path, conn, str(remote), outbox)[0] if conn_row else path)
                if renamed != paths:  # what is sent is the renumbered copies: validated in their turn
                    planned = sending.plan(renamed, validator, names)
            uploader = sending.Uploader(conn, settings.profile or "default", str(remote), str(settings.upload_dir),
                                        connect, int(settings.retries), float(settings.backoff), _on_retry(ctx))
            counts = {"sent": 0, "already-sent": 0, "recovered": 0}
            try:
                from cns_exchange.store import importing

                for item in planned:
                    with console.progress(item.size, item.name, ctx.show_progress) as advance:
                        outcome = uploader.send(item, progress=advance)
                    if item.kind in ("request", "billing"):
                        # What was sent is evidence, and what the returns will be matched with.
                        recorded, _ = importing.import_path(conn, item.path, validator, settings.local_dir("archive"), None,
                                                            move=False)
                        for note in recorded.notices:  # e.g. sessions billed before: counted once
                            console.print_line(f"note: {item.path.name}: {note}", style="yellow")
                    if as_json:
                        sys.stdout.write(json.dumps(outcome.as_dict()) + "\n")
                        sys.stdout.flush()
                    counts[outcome.status] += 1
                    if outcome.status == "already-sent":
                        if ctx.verbose:
                            console.print_line(f"{item.path.name}: already sent as {outcome.name}, not sent again (--force resends)")
                    elif ctx.verbose:
                        console.print_line(f"{item.path.name} → {remote}/{settings.upload_dir}/{outcome.name}"
                                           + (" (found complete on the server)" if outcome.status == "recovered" else ""))
            finally:
                uploader.close()
        finally:
            conn.close()
        # Only once every file is recorded sent: a request's PDFs stay beside it until it is.
        moved, kept = 0, []
        if move_sent:
            for item in planned:
                if item.path.exists():
                    if sending.move_sent(item.path, Path(move_sent)) is None:
                        kept.append(item.path)
                    else:
                        moved += 1
    for path in kept:
        console.print_warning(f"{path}: sent, but {Path(move_sent) / path.name} is another file; left where it is",
                              "rename one of them")
    if not ctx.quiet:
        summary = [f"{counts['sent']} sent"]
        summary += [f"{counts[k]} {k.replace('-', ' ')}" for k in ("recovered", "already-sent") if counts[k]]
        if counts["already-sent"]:
            summary[-1] += " (--force resends)"
        if move_sent:
            summary.append(f"{moved} moved to {move_sent}")
        console.print_line(", ".join(summary))


def _fetcher(ctx: Context, settings, remote, connect):
    """Return a function making the profile's Fetcher on a database connection."""
    from cns_exchange.transport.fetch import Fetcher

    return lambda conn: Fetcher(conn, settings.profile or "default", str(remote), str(settings.download_dir),
                                settings.local_dir("inbox"), str(settings.after_fetch), settings.remote_archive_dir,
                                connect, int(settings.retries), float(settings.backoff), _on_retry(ctx))


def _say_fetched(ctx: Context, item) -> None:
    """With -v, say where a fetched file went."""
    from cns_exchange import console

    if ctx.verbose:
        console.print_line(f"{item.name} → {item.path}" + (f" ({item.note})" if item.note else ""))


def _report_fetch(report) -> None:
    """Print what a fetch left for a human: files not fetched, new content under a known name."""
    from cns_exchange import console

    for name, why in report.skipped:
        console.print_line(f"not fetched: {name}: {why}", style="yellow")
    for warning in report.warnings:
        console.print_line(f"warning: {warning}", style="yellow")


def _write_list_line(line: str, inbox: Path) -> None:
    """Write one line of fetch's list to stdout, now. A reader gone is exit 141 as always;
    a stdout that takes nothing (a full disk, `> /dev/full`) is an error naming what is lost."""
    from cns_exchange.errors import LocalIOError

    try:
        sys.stdout.write(line)
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        # What is still buffered goes nowhere (else the interpreter's last flush fails again,
        # exit 120). One line (cron mail): the file is fetched and recorded, so a later fetch
        # will not list it again; the inbox keeps it for cnsx nightly or cnsx import.
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        raise LocalIOError(f"stdout: {exc.strerror or exc}: the list of fetched files is lost; "
                          f"they are in the inbox {inbox}, where cnsx nightly or cnsx import imports them") from None


@cli.command("fetch")
@click.option("--dry-run", is_flag=True, help="List what would be fetched; transfer nothing.")
@click.option("--wait", type=click.FloatRange(min=0), default=0, metavar="SECONDS", help="Wait for another run's lock.")
@pass_context
def fetch_cmd(ctx: Context, dry_run, wait):
    """Fetch the CNS's new return files into the inbox.

    Prints one NDJSON line per fetched file on stdout (name, path, size, sha256), so that
    `cnsx fetch | cnsx import -` chains. Silent otherwise, unless something needs a human.
    For cron, `cnsx nightly` fetches and imports in one run.
    """
    from cns_exchange import console
    from cns_exchange.store import database
    from cns_exchange.store.lock import run_lock

    settings, remote, connect = _transport_context(ctx)
    db_path = settings.database_path()
    inbox = settings.local_dir("inbox")
    with run_lock(db_path, wait):
        conn = database.connect(db_path)
        fetcher = _fetcher(ctx, settings, remote, connect)(conn)

        with console.progress(None, "fetching", ctx.show_progress) as advance:
            def emit(item):
                _write_list_line(json.dumps(item.as_dict()) + "\n", inbox)
                advance(1)
                _say_fetched(ctx, item)

            try:
                report = fetcher.run(dry_run=dry_run, emit=emit)
            finally:
                fetcher.close()
                conn.close()
    _report_fetch(report)


def _one_line(exc: CnsxError) -> str:
    """An error and its remedy on one line, as cron mail wants them."""
    return " ".join((exc.message + (f"; hint: {exc.hint}" if exc.hint else "")).split("\n"))


@cli.command("nightly")
@click.option("--wait", type=click.FloatRange(min=0), default=0, metavar="SECONDS", help="Wait for another run's lock.")
@pass_context
def nightly_cmd(ctx: Context, wait):
    """Fetch what is new and import the whole inbox, under one lock: the job for cron.

    Imports what was just fetched and whatever an earlier run left in the inbox, even when
    the fetch fails. Prints nothing on a quiet night or when all went well (stdout stays
    empty); one line on stderr per thing that needs a human. Exits with the code of the
    first failure.
    """
    from cns_exchange import console
    from cns_exchange.store import nightly
    from cns_exchange.store.nightly import ImportFailure

    settings, remote, connect = _transport_context(ctx)
    validator = ctx.validator()
    with console.progress(None, "fetching", ctx.show_progress) as advance:
        def fetched(item):
            advance(1)
            _say_fetched(ctx, item)

        def imported(outcome):
            if ctx.verbose and not isinstance(outcome, ImportFailure) and outcome.status != "unreadable":
                done = "already imported, nothing changed" if outcome.status == "already-imported" else f"imported ({outcome.kind})"
                console.print_line(f"{outcome.name}: {done}")

        report = nightly.run_night(settings.database_path(), wait, _fetcher(ctx, settings, remote, connect),
                                   settings.local_dir("inbox"), validator, settings.local_dir("archive"),
                                   settings.local_dir("errors"), on_fetched=fetched, on_imported=imported)
    # What needs a human, one line each, in the order it happened.
    _report_fetch(report.fetch)
    if report.fetch_error is not None:
        console.print_line(f"error: {_one_line(report.fetch_error)}", style="red")
    for outcome in report.imports:
        if isinstance(outcome, ImportFailure):
            console.print_line(f"error: {outcome.path.name}: not imported: {_one_line(outcome.error)}", style="red")
        elif outcome.status == "unreadable":
            why = outcome.warnings[0]
            console.print_line(f"error: {outcome.name}: not imported, cannot be read ({why.code}: {why.message}); "
                               f"moved to {outcome.moved_to} (see .why.txt)", style="red")
        else:
            if outcome.status == "imported" and outcome.warnings:
                first = outcome.warnings[0]
                count = f"{len(outcome.warnings)} warnings, the first" if len(outcome.warnings) > 1 else "a warning"
                where = f"line {first.line} " if first.line else ""
                console.print_line(f"warning: {outcome.name}: imported with {count}: {where}{first.code}: {first.message}; "
                                   f"all of them: cnsx import --no-db {outcome.moved_to}", style="yellow")
            for notice in outcome.notices:  # what the import changed, said once (as cnsx import says it)
                console.print_line(f"note: {outcome.name}: {notice}", style="yellow")
    for note in report.unmatched:
        console.print_line(f"note: {note}", style="yellow")
    return report.exit_code


@cli.command("hostkey")
@click.argument("address", metavar="HOST[:PORT]")
def hostkey_cmd(address):
    """Print the host-key fingerprints a server offers, to check with the CNS and pin.

    Connects without authenticating; prints `host_key = "SHA256:..."` lines for the config.
    """
    from cns_exchange.transport.sftp import fingerprint, server_keys

    host, _, port = address.rpartition(":") if address.count(":") == 1 else (address, "", "22")
    if not host:
        host, port = address, "22"
    if not port.isdigit():
        raise UsageError(f"{address}: the port is not a number", "e.g. sftp.example.lu:22")
    keys = server_keys(host, int(port))
    if not keys:
        raise TransportFatalError(f"{address}: the server offered no host key", "check the address")
    for key in keys:
        sys.stdout.write(f"{key.get_name()} {fingerprint(key)}\n")
    sys.stdout.write(f'# pin one in the profile: host_key = "{fingerprint(keys[0])}"\n')


STARTER_CONFIG = '''# cnsx configuration (docs/cli.md, Configuration). Secrets are never written here:
# password and key_passphrase name where they come from (env, keyring or prompt).

provider = "{provider}"              # the practice's CNS provider code
default_profile = "production"

[profiles.production]
remote = "sftp://USER@HOST:22"       # the CNS server, as the CNS gave it to you
upload_dir = "upload"                # where the practice deposits its files
download_dir = "download"            # where the CNS leaves its return files
# host_key = "SHA256:..."            # pin it after checking: cnsx hostkey HOST:22
# known_hosts = "~/.ssh/known_hosts" # or trust an OpenSSH known_hosts file
# key_file = "~/.ssh/cnsx_ed25519"
# key_passphrase = "env"             # CNSX_KEY_PASSPHRASE
# password = "env"                   # CNSX_PASSWORD (or "keyring", "prompt")
# use_agent = true
# database = "~/cnsx/practice.sqlite"
# outbox = "~/cnsx/outbox"
# inbox = "~/cnsx/inbox"
# after_fetch = "keep"               # keep | delete | archive
# remote_archive_dir = "download/archive"

[profiles.test]
remote = "file:///srv/cns-sandbox"   # a local drop box with upload/ and download/
'''


@cli.group("config")
def config_group():
    """Write or show the configuration."""


@config_group.command("init")
@click.option("--provider", default="000000", metavar="CODE", help="The practice's provider code to write in.")
@pass_context
def config_init_cmd(ctx: Context, provider):
    """Write a commented starter config file (0600); never replaces an existing one."""
    from cns_exchange import console
    from cns_exchange.config import config_dir
    from cns_exchange.domain.identifiers import check_provider

    problems = check_provider(provider) if provider != "000000" else []  # 000000: the placeholder to fill in
    if problems:  # it goes into the file as TOML text: only a valid code may
        raise UsageError(f"--provider: {problems[0][1]}", "pass the code the CNS issued to the practice (6 to 8 digits)")
    path = Path(ctx.config_path or os.environ.get("CNSX_CONFIG") or config_dir() / "config.toml")
    if path.exists():
        raise UsageError(f"{path} exists already; cnsx config init never replaces it", "edit it, or pass --config NEW_PATH")
    from cns_exchange.fsutil import private_dir

    private_dir(path.parent)
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(STARTER_CONFIG.format(provider=provider))
    console.print_line(f"wrote {path}")


@cli.command("doctor")
@pass_context
def doctor_cmd(ctx: Context):
    """Check the configuration, permissions, connection, host key, login and remote folders.

    Prints one line per check and what to fix for each failure; exits with the code of the
    first failure (4 configuration, 5 retryable, 6 fatal), 0 if all is well.
    """
    from cns_exchange import console

    failures: list[CnsxError] = []

    def check(label: str, action):
        try:
            detail = action()
        except CnsxError as exc:
            failures.append(exc)
            console.print_line(f"✗ {label}: {exc.message}", style="red")
            if exc.hint:
                console.print_line(f"    fix: {exc.hint}")
            return None
        console.print_line(f"✓ {label}" + (f": {detail}" if detail else ""), style="green")
        return detail or True

    settings = check("config", lambda: str(ctx.settings.path or "no config file (defaults)"))
    if settings is None:
        return failures[0].exit_code
    s = ctx.settings

    def permissions():
        from cns_exchange.errors import ConfigError

        loose = []
        if s.path and s.path.stat().st_mode & 0o077:
            loose.append(f"chmod 600 {s.path}")
        db = s.database_path()
        if db.exists() and db.stat().st_mode & 0o077:
            loose.append(f"chmod 600 {db}")
        for name in ("outbox", "inbox", "archive", "errors"):
            folder = s.local_dir(name)
            if folder.stat().st_mode & 0o077:
                loose.append(f"chmod 700 {folder}")
        if loose:
            raise ConfigError("files holding health data or settings can be read by others", "; ".join(loose))
        return "config, database and local folders private"

    check("permissions", permissions)
    check("tables and schemas", lambda: (ctx.tables(), "tariffs, codes and schema sets load")[1])
    remote = check("remote", lambda: str(s.remote_url()))
    if remote is None:
        return failures[0].exit_code
    holder = {}

    def connect():
        from cns_exchange.transport import open_transport

        holder["t"] = open_transport(s, _prompt_secret)
        return "drop-box folder reachable" if s.remote_url().scheme == "file" else "connected, host key trusted, logged in"

    if check("connection, host key and login", connect):
        t = holder["t"]
        try:
            for label, folder in (("upload folder", s.upload_dir), ("download folder", s.download_dir)):
                check(label, lambda folder=folder: f"{folder}: {len(t.list(str(folder)))} entries")
        finally:
            t.close()
    return failures[0].exit_code if failures else ExitCode.OK


# --- import and status -----------------------------------------------------------------------

def _import_sources(files: tuple[str, ...], settings, spool_dir: Path | None = None) -> list[Path]:
    """FILES, or paths named by NDJSON lines on stdin ('-', as cnsx fetch prints them), or the inbox.

    A document on stdin is kept in the inbox (imported, it is archived from there), or in
    ``spool_dir`` when given (--no-db: nothing is written where a later run would import it).
    An empty stdin names nothing: the list of a fetch that found nothing new, or failed.
    """
    from cns_exchange.store.importing import inbox_documents

    if not files:
        return inbox_documents(settings.local_dir("inbox"))
    paths: list[Path] = []
    for name in files:
        if name != "-":
            paths.append(Path(name))
            continue
        from cns_exchange.documents.safe import read_bounded

        data = read_bounded(sys.stdin.buffer, settings.max_xml_bytes)
        if not data.strip():
            continue  # no line, no document: nothing to do (not an empty document to quarantine)
        if data.lstrip()[:1] == b"{":
            for number, line in enumerate(data.decode("utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    paths.append(Path(json.loads(line)["path"]))
                except (ValueError, KeyError, TypeError):
                    raise InputError(f"<stdin>:{number}: not a line of cnsx fetch (JSON with a 'path')",
                                     "pipe cnsx fetch into cnsx import -, or give files") from None
        else:
            from cns_exchange.fsutil import write_atomic

            spool = (spool_dir or settings.local_dir("inbox")) / f"stdin-{hashlib.sha256(data).hexdigest()[:16]}.xml"
            if not spool.exists():
                write_atomic(spool, data)
            paths.append(spool)
    for path in paths:
        if path.is_dir():
            raise InputError(f"{path}: a folder, not a document", f"give its files ({path}/*.xml), or make it the inbox")
        if not path.is_file():
            raise InputError(f"{path}: no such file", "check the path")
    return paths


@cli.command("import")
@click.argument("files", nargs=-1, metavar="[FILE...]")
@click.option("--db", "db", metavar="PATH", help="The practice database (default: the profile's database).")
@click.option("--no-db", is_flag=True, help="Only read: print the rows, touch no database, move no file.")
@_format_options(json="Print what was read as a JSON object per file.", ndjson="Print one JSON line per row.",
                 csv="Print rows as CSV (one document kind per run).")
@click.option("--wait", type=click.FloatRange(min=0), default=0, metavar="SECONDS", help="Wait for another run's lock.")
@pass_context
def import_cmd(ctx: Context, files, db, no_db, fmt, wait):
    """Import documents into the practice database and match them with what they answer.

    FILE... are documents; '-' reads the NDJSON lines `cnsx fetch` prints (or one document);
    with no FILE the inbox is imported. Return files are read leniently: deviations are
    warnings with their line, unreadable files go to the errors folder with a reason.
    `--no-db --csv` turns any document into rows (requests and billing files: the columns
    build-request / build-invoice read).
    """
    import tempfile

    from cns_exchange import console

    from cns_exchange.store import importing
    from cns_exchange.rows.csvout import CsvWriter
    from cns_exchange.store.lock import run_lock

    settings = ctx.settings
    scratch = tempfile.TemporaryDirectory(prefix="cnsx-import-") if no_db else None
    paths = _import_sources(files, settings, Path(scratch.name) if scratch is not None else None)
    validator = ctx.validator()
    if fmt == "csv" and len(paths) > 1:
        # Told before anything is imported, not at the first file of another kind.
        kinds: dict[str, str] = {}
        for path in paths:
            schema_set, kind, _, _ = validator.detect(str(path))
            if schema_set is not None:
                kinds.setdefault(kind, path.name)
        if len(kinds) > 1:
            raise UsageError("--csv prints one document kind per run: " + ", ".join(f"{n} is {k}" for k, n in kinds.items()),
                             "import the kinds separately, or use --ndjson")
    out = sys.stdout
    writer = None
    csv_kind = None
    exit_code = ExitCode.OK

    def emit(result, doc):
        nonlocal writer, csv_kind
        if fmt == "json":
            out.write(json.dumps({"file": str(doc.path), "kind": doc.kind, "sha256": doc.sha256, "status": result.status,
                                  "rows": list(importing.rows_of(doc)) if not doc.fatal else []}, ensure_ascii=False) + "\n")
        elif fmt == "ndjson":
            for row in importing.rows_of(doc):
                out.write(json.dumps({"file": str(doc.path), "kind": doc.kind, **row}, ensure_ascii=False) + "\n")
        elif fmt == "csv" and not doc.fatal:
            if csv_kind not in (None, doc.kind):
                raise UsageError(f"--csv prints one document kind per run: {doc.name} is {doc.kind}, not {csv_kind}",
                                 "import the kinds separately, or use --ndjson")
            if writer is None:
                csv_kind = doc.kind
                writer = CsvWriter(out, importing.ROW_COLUMNS[doc.kind])
                writer.writeheader()
            writer.writedicts(importing.rows_of(doc))

    def report(result):
        nonlocal exit_code
        console.print_issues(result.warnings)
        if result.status == "unreadable":
            exit_code = ExitCode.INVALID
            kept = "moved to" if result.moved else "a copy kept in"
            console.print_line(f"{result.name}: not imported, cannot be read" +
                               (f"; {kept} {result.moved_to} (see .why.txt)" if result.moved_to else ""), style="red")
        elif result.status == "already-imported":
            console.print_line(f"{result.name}: already imported, nothing changed")
        elif result.status == "imported" and ctx.verbose:
            console.print_line(f"{result.name}: imported ({result.kind})")
        for note in result.notices + result.unmatched:
            console.print_line(f"note: {result.name}: {note}" if note in result.notices else f"note: {note}", style="yellow")

    if no_db:
        try:
            for path in paths:
                result, doc = importing.import_path(None, path, validator, None, None, move=False)
                emit(result, doc)
                report(result)
        finally:
            scratch.cleanup()
        return exit_code
    if not paths:
        return ExitCode.OK  # nothing to do: not even the lock (another run holding it is no error here)
    from cns_exchange.store import database

    db_path = _database_path(ctx, db)
    inbox = settings.local_dir("inbox").resolve()
    with run_lock(db_path, wait):
        conn = database.connect(db_path)
        try:
            for path in paths:
                move = path.resolve().parent == inbox
                if not files and not path.exists():
                    # Listed in the inbox before the lock was ours: another run took it since.
                    console.print_line(f"{path.name}: no longer in the inbox (imported by another run)")
                    continue
                result, doc = importing.import_path(conn, path, validator, settings.local_dir("archive"),
                                                    settings.local_dir("errors"), move)
                emit(result, doc)
                report(result)
        finally:
            conn.close()
    return exit_code


@cli.command("status")
@click.option("--db", "db", metavar="PATH", help="The practice database (default: the profile's database).")
@_format_options(json="Print the sections as JSON.", csv="Print the sections as CSV (a 'section' column first).")
@click.option("--certificate", metavar="NUMBER", help="Show one certificate.")
@click.option("--patient", metavar="NAME|MATRICULE",
              help="Show one patient, with their history: a matricule, or a name (whole words, accents and case ignored).")
@click.option("--pdf", "pdf_path", metavar="FILE.pdf",
              help="Write the report as an A4 PDF (a new file, or '-' for stdout); stdout then gets only --json/--csv.")
@click.option("--matricule", type=click.Choice(["full", "masked"]),
              help="Matricules in full, or masked but for their last 4 digits. Default: masked in the PDF, full otherwise.")
@click.option("--year", type=click.IntRange(1900, 9999), metavar="YYYY",
              help="Also the IT flat rate of that year: prescriptions with reimbursed services, threshold, amount.")
@click.option("--due", is_flag=True,
              help="Only what needs doing soon (certificates expiring or used up, requests unanswered), one line each; "
                   "nothing when there is nothing (for cron).")
@pass_context
def status_cmd(ctx: Context, db, fmt, certificate, patient, pdf_path, matricule, year, due):
    """Show requests awaiting an answer, certificates used and remaining, billed sessions
    awaiting payment, disputed lines, amounts per month and the final reports due to
    prescribers; with --year, the IT flat rate of that year.

    With --pdf the report is also written as an A4 PDF whose footer and metadata carry the
    SHA-256 of the canonical JSON of the sections it shows; tables are then not printed.
    """
    from datetime import date as date_cls

    from cns_exchange.store import database
    from cns_exchange.store import status as status_mod

    certificate = certificate.strip() if certificate else certificate
    if certificate and patient:
        raise UsageError("--certificate and --patient: one case at a time", "give one of them")
    if year and (certificate or patient):
        raise UsageError(f"--year and --{'certificate' if certificate else 'patient'}: the IT flat rate is the whole "
                         "practice's", "leave out --year, or the case")
    if due and (pdf_path or year or certificate):
        raise UsageError("--due: the lines of what needs doing soon, not with --pdf, --year or --certificate",
                         "run cnsx status --due on its own (or with --patient, --json, --csv)")
    if pdf_path == "-" and fmt:
        raise UsageError(f"--pdf - and --{fmt}: both would go to stdout", "write the PDF to a file")
    if pdf_path == "-" and sys.stdout.isatty():
        raise UsageError("--pdf -: stdout is a terminal, not the place for a PDF", "redirect it (> status.pdf) or give a file name")
    if pdf_path and pdf_path != "-":
        if pdf_path.endswith("/"):
            raise UsageError(f"--pdf {pdf_path}: a folder name; the report is one file", "give the PDF's file name")
        target = Path(pdf_path)
        if target.exists() or target.is_symlink():   # before any work: cnsx never overwrites a file
            raise UsageError(f"--pdf {pdf_path}: a file of that name exists; cnsx never overwrites a file",
                             "remove it, or give another name")
    db_path = _existing_database(ctx, db)
    today = date_cls.today()
    conn = database.connect(db_path)
    try:
        if patient:   # a name or a matricule (as pasted: '1974 0911 867 00 '): one patient, or exit 3
            patient = status_mod.find_patient(conn, patient, mask=matricule != "full")
        if due:
            sections = {"due": status_mod.due(conn, today, patient)}
        else:
            sections = status_mod.status(conn, today, certificate, patient, year)
        providers = status_mod.providers(conn)
    finally:
        conn.close()
    if pdf_path:
        from cns_exchange import console
        from cns_exchange.pdf import printing
        from cns_exchange.pdf.pages import StatusHeading, show_matricule

        mask = matricule != "full"
        shown = status_mod.masked(sections) if mask else sections
        heading = StatusHeading(providers, today, _created(None), status_mod.data_sha256(shown), certificate,
                                show_matricule(patient, mask) if patient else None)
        pages = printing.print_status(shown, heading, None if pdf_path == "-" else Path(pdf_path),
                                      sys.stdout.buffer if pdf_path == "-" else None)
        if not ctx.quiet:
            console.print_line(f"status report, {plural(pages, 'page')}, data SHA-256 {heading.data_sha256} "
                               f"→ {'stdout' if pdf_path == '-' else pdf_path}")
        if not fmt:
            return
    if matricule == "masked":
        sections = status_mod.masked(sections)
    if fmt == "json":
        json.dump(sections, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    elif fmt == "csv":
        from cns_exchange.rows.csvout import CsvWriter

        writer = CsvWriter(sys.stdout)
        for name, rows in sections.items():
            if rows:
                writer.writerow(["section", *rows[0].keys()])
                writer.writerows([name, *r.values()] for r in rows)
    elif due:
        for line in status_mod.due_lines(sections["due"]):   # the data of --due: on stdout, for cron's mail
            sys.stdout.write(line + "\n")
    else:
        from cns_exchange import console

        console.print_tables(sections)


@cli.command("certificates")
@click.option("--since", metavar="YYYY-MM-DD", help="Certificates whose answer was imported on or after this day "
              "(default: 7 days ago).")
@click.option("--db", "db", metavar="PATH", help="The practice database (default: the profile's database).")
@click.option("--matricule", type=click.Choice(["full", "masked"]), default="full", show_default=True,
              help="Matricules in full, or masked but for their last 4 digits.")
@pass_context
def certificates_cmd(ctx: Context, since, db, matricule):
    """Print the new certificates as CSV for the practice's agenda: request reference,
    patient, matricule, certificate number, validity, sessions authorised, answered on.

    French Excel reads it as it is: ';' between columns, UTF-8 with a BOM.
    """
    from datetime import date as date_cls, timedelta

    from cns_exchange.store import database
    from cns_exchange.store import status as status_mod
    from cns_exchange.pdf.pages import show_matricule

    today = date_cls.today()
    try:
        day = date_cls.fromisoformat(since) if since else today - timedelta(days=7)
    except ValueError:
        raise UsageError(f"--since '{since}' is not a date", "give it as YYYY-MM-DD, e.g. 2026-11-01") from None
    db_path = _existing_database(ctx, db)
    conn = database.connect(db_path)
    try:
        rows = status_mod.new_certificates(conn, day)
    finally:
        conn.close()
    from cns_exchange.rows.csvout import CsvWriter, utf8_text

    with utf8_text(sys.stdout.buffer) as text:  # (whatever the locale's encoding: the BOM says UTF-8)
        writer = CsvWriter(text, status_mod.NEW_CERTIFICATE_COLUMNS, french=True)  # (formula cells made harmless)
        writer.writeheader()
        writer.writedicts({**r, "matricule": show_matricule(r["matricule"], matricule == "masked")} for r in rows)


@cli.command("report-sent")
@click.argument("certificate", metavar="CERTIFICATE")
@click.option("--date", "sent_on", metavar="YYYY-MM-DD", help="The day the report was sent (default: today).")
@click.option("--db", "db", metavar="PATH", help="The practice database (default: the profile's database).")
@click.option("--wait", type=click.FloatRange(min=0), default=0, metavar="SECONDS", help="Wait for another run's lock.")
@pass_context
def report_sent_cmd(ctx: Context, certificate, sent_on, db, wait):
    """Mark the final dietetic report of CERTIFICATE's treatment as sent to the prescriber:
    `cnsx status` no longer lists it among the reports due. Marking again changes nothing.
    """
    from datetime import date as date_cls

    from cns_exchange import console

    from cns_exchange.store import convention

    from cns_exchange.store import database
    from cns_exchange.store.lock import run_lock

    certificate = certificate.strip()
    today = date_cls.today()
    try:
        day = date_cls.fromisoformat(sent_on) if sent_on else today
    except ValueError:
        raise UsageError(f"--date '{sent_on}' is not a date", "give it as YYYY-MM-DD, e.g. 2026-11-26") from None
    db_path = _existing_database(ctx, db)
    with run_lock(db_path, wait):
        conn = database.connect(db_path)
        try:
            mark = convention.mark_final_report_sent(conn, certificate, day, today, datetime.now(timezone.utc))
        finally:
            conn.close()
    if mark.already:
        console.print_line(f"{certificate}: final report already marked sent on {mark.sent_on}; nothing changed"
                           + (f" (not {day})" if day != mark.sent_on else ""))
    elif not ctx.quiet:
        console.print_line(f"{certificate}: final report marked sent on {mark.sent_on}")


# --- exports: the practice's data for people outside cnsx ------------------------------------

@cli.group("export")
def export_group():
    """Export the practice database for people outside cnsx (the accountant)."""


@export_group.command("accounting")
@click.option("--month", metavar="YYYY-MM", help="The sessions of that month.")
@click.option("--from", "start", metavar="YYYY-MM-DD", help="The sessions from that day on (included).")
@click.option("--to", "end", metavar="YYYY-MM-DD", help="The sessions up to that day (included).")
@click.option("--db", "db", metavar="PATH", help="The practice database (default: the profile's database).")
@click.option("-o", "--output", metavar="FILE.csv", help="Write to a new file (0600, never over one) instead of stdout.")
@pass_context
def export_accounting_cmd(ctx: Context, month, start, end, db, output):
    """One CSV row per billed session, for the accountant: fee note, patient, dates, gross,
    patient share, CNS share, paid, disputed, payment date and bank reference.

    The CSV opens in Excel or LibreOffice set to French: UTF-8 with a byte order mark, ';'
    between cells, amounts with a decimal comma; no cell can run as a formula.
    """

    from cns_exchange import console

    from cns_exchange.store import database

    from cns_exchange.store import export
    from cns_exchange.rows.csvout import utf8_text
    from cns_exchange.fsutil import write_new

    within = export.period(month, start, end)
    target = Path(output) if output and output != "-" else None
    if target is not None:
        _no_missing_folder("-o", output)
        if target.is_dir() or target.exists() or target.is_symlink():
            raise UsageError(f"-o {output}: a file or folder of that name exists; cnsx never overwrites a file",
                             "remove it, or give another name")
    db_path = _existing_database(ctx, db)
    conn = database.connect(db_path)
    def draw(stream) -> int:
        with utf8_text(stream) as text:
            return export.write_accounting_csv(export.accounting_rows(conn, within), text)

    try:
        if target is None:
            count = draw(sys.stdout.buffer)
        else:
            try:
                count = write_new(target, draw)
            except FileExistsError:
                raise UsageError(f"-o {output}: a file of that name appeared; cnsx never overwrites a file",
                                 "remove it, or give another name") from None
    finally:
        conn.close()
    if not ctx.quiet:
        console.print_line(f"{plural(count, 'billed session')} → {output if target else 'stdout'}")


# --- tariffs: the tables the sessions are priced with ----------------------------------------

def _tariff_options(func):
    options = [
        click.option("--date", "day", metavar="YYYY-MM-DD", help="The date whose table to show (default: today)."),
        click.option("--all", "all_tables", is_flag=True, help="List every table, oldest first."),
        click.option("--json", "as_json", is_flag=True, help="Print the table(s) as JSON on stdout."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _show_tariffs(ctx: Context, day: str | None, all_tables: bool, as_json: bool):
    from datetime import date as date_cls

    from cns_exchange import console

    from cns_exchange.domain import tariffs
    from cns_exchange.domain.nomenclature import load_nomenclature

    if day is not None and all_tables:
        raise UsageError("--date and --all: one table, or all of them", "give one of them")
    try:
        when = date_cls.fromisoformat(day) if day is not None else date_cls.today()
        if day is not None and when.isoformat() != day:
            raise ValueError
    except ValueError:
        raise UsageError(f"--date {day}: not a YYYY-MM-DD date", "e.g. --date 2026-11-20") from None
    nomenclature = load_nomenclature(ctx.settings.nomenclature_dirs)
    shown = tariffs.all_tables(nomenclature, when) if all_tables else tariffs.in_force(nomenclature, when)
    if as_json:
        json.dump(shown, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    elif all_tables:
        console.print_tariff_tables(shown["tables"])
    else:
        console.print_tariff_table(shown["table"], f"tariff table in force on {shown['date']}")
    if shown["out_of_date"]:
        newest = shown["newest"]
        console.print_warning(f"the newest tariff table, {newest['file']}, is in force since {newest['valid_from']}: on "
                              f"{shown['date']} it is more than {shown['current_for_months']} months old and may be "
                              "out of date (builds and validate warn: NOM05)",
                              "add the table in force with cnsx tariffs add (docs/rules.md, Tariffs)")


@cli.group("tariffs", invoke_without_command=True)
@_tariff_options
@click.pass_context
def tariffs_group(click_ctx: click.Context, day, all_tables, as_json):
    """Show the tariff table in force on a date (default), or add one (cnsx tariffs add).

    Shows where the table comes from (its file and source), since when it is in force, which
    figures are inferred, and the price of each act for an adult and a minor. Warns when the
    newest table is more than 12 months old on that date.
    """
    if click_ctx.invoked_subcommand is None:
        return _show_tariffs(click_ctx.obj, day, all_tables, as_json)
    if day is not None or all_tables or as_json:
        raise UsageError(f"--date, --all and --json are options of cnsx tariffs [show], not of {click_ctx.invoked_subcommand}",
                         f"put them after {click_ctx.invoked_subcommand}, or leave them out")
    return None


@tariffs_group.command("show")
@_tariff_options
@pass_context
def tariffs_show_cmd(ctx: Context, day, all_tables, as_json):
    """Show the tariff table in force on a date (the same as cnsx tariffs)."""
    return _show_tariffs(ctx, day, all_tables, as_json)


@tariffs_group.command("add")
@click.option("--valid-from", required=True, metavar="YYYY-MM-DD", help="The first day the new tariffs apply.")
@click.option("--source", required=True, metavar="TEXT", help="Where the figures come from (the CNS letter or the text, with its date).")
@click.option("--price", "prices", multiple=True, metavar="ACT=EUR", help="The price of an act, for every act (e.g. --price ZD11=91.12).")
@click.option("--key-letter", metavar="EUR", help="The key-letter value; the prices are coefficient x value, rounded half up.")
@click.option("--coefficient", "coefficients", multiple=True, metavar="ACT=N",
              help="An act's coefficient, for every act (default: those of the table before, if they are official).")
@click.option("--inferred", is_flag=True, help="Mark the figures as not read from an official text.")
@click.option("--accept-change", is_flag=True, help="Write the table although a price moves by more than 25 % from the table before.")
@click.option("--dry-run", is_flag=True, help="Check and show the table; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the new table as JSON on stdout.")
@pass_context
def tariffs_add_cmd(ctx: Context, valid_from, source, prices, key_letter, coefficients, inferred, accept_change, dry_run,
                    as_json):
    """Add a tariff table to the config folder's nomenclature/ (0600), checked before it is written.

    Give the price of every act (--price ACT=EUR, as a CNS letter lists them), or the
    key-letter value (--key-letter EUR) with the coefficient of every act (--coefficient
    ACT=N). The patient share is that of the table before. A table for the same date is
    never replaced.
    """
    from datetime import date as date_cls

    from cns_exchange import console

    from cns_exchange.domain import tariffs
    from cns_exchange.domain.nomenclature import load_codes, load_nomenclature

    dirs = ctx.settings.nomenclature_dirs
    result = tariffs.add_table(load_nomenclature(dirs), load_codes(), dirs[0], valid_from, source, prices, key_letter,
                               coefficients, inferred, accept_change, dry_run, date_cls.today())
    if as_json:
        json.dump({"path": str(result.path), "written": result.written, "table": result.table}, sys.stdout,
                  ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        console.print_tariff_table(result.table, f"new tariff table from {result.table['valid_from']}")
    for note in result.notes:
        console.print_line(f"note: {note}", style="yellow")
    if not ctx.quiet:
        console.print_line(f"wrote {result.path}" if result.written else f"dry run: nothing written ({result.path})")


# --- sandbox: a local CNS simulator ----------------------------------------------------------

@cli.command("sandbox")
@click.option("--root", metavar="DIR", help="The drop-box folder (default: the profile's file:// remote).")
@click.option("--upload-dir", metavar="DIR", help="Folder the practice deposits into, relative to the root (default: the profile's upload_dir, else upload).")
@click.option("--download-dir", metavar="DIR", help="Folder the answers go to, relative to the root (default: the profile's download_dir, else download).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Numbering block of certificates and payment references.")
@click.option("--once", is_flag=True, help="Answer what is there, then exit.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=5.0, show_default=True, metavar="SECONDS", help="Time between two looks at the upload folder.")
@click.option("--state", metavar="FILE", help="The sandbox's state (default: ROOT/.sandbox-state.json).")
@click.option("--now", metavar="DATETIME", help="Fixed reception time (default: $SOURCE_DATE_EPOCH, else each file's header time + 5 min).")
@pass_context
def sandbox_cmd(ctx: Context, root, upload_dir, download_dir, seed, once, interval, state, now):
    """Simulate the CNS on a local drop box: answer every deposited file (docs/sandbox.md).

    Each XML file put into the upload folder gets an acknowledgement, then answers (request
    file) or a payment statement (billing file), in the download folder, under the CNS's
    file names. Deterministic, and each file is answered once. Runs until SIGINT or SIGTERM
    (exit 0), or with --once answers what is there and exits.
    """
    import signal
    import threading

    from cns_exchange import console
    from cns_exchange.transport.sandbox import STATE_NAME, Sandbox, parse_clock

    clock = parse_clock(now, os.environ.get("SOURCE_DATE_EPOCH"))
    settings = ctx.settings
    if root is None:
        remote = settings.remote_url()
        if remote.scheme != "file":
            raise UsageError(f"the profile's remote is {remote}, not a local folder",
                             "pass --root DIR (e.g. the folder the test SFTP server serves)")
        root = remote.path
    base = Path(root)
    if not base.is_dir():
        raise UsageError(f"--root {root}: no such folder", "create it first")
    folders = []
    for option, value in (("--upload-dir", upload_dir or str(settings.upload_dir or "upload")),
                          ("--download-dir", download_dir or str(settings.download_dir or "download"))):
        folder = (base / value).resolve()
        if not folder.is_relative_to(base.resolve()):  # the sandbox only ever writes under its root
            raise UsageError(f"{option} {value}: outside the root {root}", "give a folder inside the root")
        folders.append(folder)
    sandbox = Sandbox(folders[0], folders[1],
                      Path(state) if state else base / STATE_NAME, ctx.validator(),
                      seed=seed, now=clock, default_provider=settings.provider)

    def report(result) -> None:
        for name in result.recovered:
            console.print_line(f"published {name}, left pending by an interrupted run")
        for d in result.deposits:
            if d.note:
                console.print_line(f"{d.name}: not answered: {d.note}", style="yellow")
                continue
            if ctx.quiet:
                continue
            detail = ""
            if d.accepted and d.kind == "request":
                detail = f" ({plural(d.certificates, 'certificate')}, {plural(d.refusals, 'refusal')})"
            elif d.accepted and d.kind == "billing":
                detail = f" ({plural(d.paid, 'session')} paid, {d.disputed} disputed)"
            console.print_line(f"{d.name}: {'accepted' if d.accepted else 'rejected'} → {', '.join(d.outputs)}{detail}")

    if once:
        report(sandbox.run_once())
        return ExitCode.OK
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()  # the file being answered is finished first
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C interrupts at once

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        sandbox.serve(interval, stop, report)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return ExitCode.OK
