"""The ``cnsx`` command line: the root group, its global options, and the error handling.

Each command lives in the module of its group (``cli/build.py``: build-request and
build-invoice, ``cli/fetch.py``: fetch, nightly and hostkey, ...; :data:`COMMANDS` lists them)
and is imported only when it runs or ``--help`` lists it. A command resolves its options, opens
its streams, calls one core function and prints the result with the shared writers of
``cli/output.py``. Errors of the :mod:`cns_exchange.errors` family become their exit code here,
in :meth:`CnsxGroup.main`, the only place that exits.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import NoReturn

import click

from cns_exchange import __version__
from cns_exchange.cli.context import Context, HelpContext, translated
from cns_exchange.errors import CnsxError, ExitCode, InputError, UsageError, local_failure
from cns_exchange.i18n import _

#: Every command of the root group: its name -> "module:function" in cns_exchange.cli.
COMMANDS = {
    "build-request": "build:build_request_cmd",
    "build-invoice": "build:build_invoice_cmd",
    "validate": "validate:validate_cmd",
    "print": "printing:print_group",
    "upload": "upload:upload_cmd",
    "fetch": "fetch:fetch_cmd",
    "nightly": "fetch:nightly_cmd",
    "hostkey": "fetch:hostkey_cmd",
    "config": "config:config_group",
    "doctor": "doctor:doctor_cmd",
    "import": "imports:import_cmd",
    "status": "status:status_cmd",
    "certificates": "status:certificates_cmd",
    "report-sent": "status:report_sent_cmd",
    "export": "export:export_group",
    "tariffs": "tariffs:tariffs_group",
    "sandbox": "sandbox:sandbox_cmd",
}


class _ReaderGone(Exception):
    """A BrokenPipeError on stdout, carried past click (which would exit 1 on it). (On
    stderr, the console sends the rest of the messages to /dev/null and the run goes on.)"""


class CnsxGroup(click.Group):
    """Turns every error into its documented exit code; tracebacks only with --debug. Its
    ``lazy`` commands ("module:function" in cns_exchange.cli, by name) are imported when asked for,
    and show their help in the user's language (cli/context.py)."""

    context_class = HelpContext

    def __init__(self, *args, lazy: dict[str, str] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, name: str):
        if name not in self.commands and name in self.lazy:
            module, function = self.lazy[name].split(":")
            command = getattr(importlib.import_module(f"cns_exchange.cli.{module}"), function)
            self.add_command(translated(command), name)
        return super().get_command(ctx, name)

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
        from cns_exchange.i18n import click_speaks

        with messages_may_be_lost(), click_speaks():  # stderr on a full disk or a gone reader stops no run
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

                console.print_error(_("connection lost ({error})").format(error=exc.__context__ or "EOF"),
                                    _("run again: cnsx resumes where it stopped"))
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
        except OSError as exc:  # outside a command (invoke translates those): the machine's, or a bug
            if debug:
                raise
            from cns_exchange import console

            error = local_failure(exc)
            if error is None:  # not a local failure (a network error no transport translated)
                _internal_error(exc)
            console.print_error(error.message, error.hint)
            sys.exit(error.exit_code)
        except Exception as exc:  # noqa: BLE001 - the last resort: never a traceback for users
            if debug:
                raise
            _internal_error(exc)
        if isinstance(rv, int):
            sys.exit(rv)
        sys.exit(ExitCode.OK)


def _internal_error(exc: BaseException) -> NoReturn:
    """A bug of cnsx: say so in one line, with what to do, and exit 1 (never a traceback
    without --debug)."""
    from cns_exchange import console

    console.print_error(_("internal error: {kind}: {error}").format(kind=type(exc).__name__, error=exc),
                        _("run again with --debug and report the traceback"))
    sys.exit(ExitCode.INTERNAL)


def _interrupted() -> None:
    """Ctrl-C: say so and exit 130 at once. Everything half-made was removed on the way here
    (temp files are removed by their own ``except``/``finally``); a libxml2 check still
    running in its thread (seconds on a large file) is not waited for: the process ends
    without the interpreter's finalisation, which that thread would not survive."""
    from cns_exchange.i18n import tr

    click.echo(tr(_("interrupted")), err=True)
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
            raise UsageError(_("'{argument}' is not UTF-8: cnsx takes file names and values in UTF-8").format(argument=shown),
                             _("rename the file with a UTF-8 name (e.g. convmv -f latin1 -t utf-8 --notest FILE)"))


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
        raise UsageError(_("{stream} is closed: cnsx was started without it").format(stream=self.name),
                         _("start cnsx with its {stream} open").format(stream=self.name))


def _reader_gone() -> None:
    """The reader of our stdout went away (e.g. `| head`): the output is cut, as a shell
    reports a death by SIGPIPE (exit 141), without a message. What is still buffered goes
    nowhere (else the interpreter's last flush fails again)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    sys.exit(ExitCode.OUTPUT_CUT)


@click.group(cls=CnsxGroup, lazy=COMMANDS, help=_("""cnsx: electronic exchange of a dietician practice with the CNS (Luxembourg).

    Build request and billing files from the practice's CSV/JSON, validate them, and (in later
    commands) send them and read the CNS's answers. Exit codes: 0 ok, 1 internal error, 2 usage,
    3 invalid input or document, 4 configuration error, 5/6 transport failure, 7 locked,
    8 local file cannot be read or written.
    """), context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "-V", "--version", prog_name="cnsx", message="%(prog)s %(version)s")
@click.option("--config", "config", metavar="PATH", help=_("Config file (default: $CNSX_CONFIG, else the user config folder's config.toml)."))
@click.option("--profile", metavar="NAME", help=_("Config profile (default: $CNSX_PROFILE, else default_profile)."))
@click.option("-q", "--quiet", is_flag=True, help=_("Print only problems."))
@click.option("-v", "--verbose", is_flag=True, help=_("Say what was done (transfers and imports are silent on success)."))
@click.option("--debug", is_flag=True, help=_("Show tracebacks."))
@click.pass_context
def cli(ctx: click.Context, config, profile, quiet, verbose, debug) -> None:
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


def main() -> None:
    """Console-script entry point."""
    cli.main()
