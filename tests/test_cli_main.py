"""The command group: exit-code table, error handling, --help/--version, python -m."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from cns_exchange import __version__
from cns_exchange.cli import CnsxGroup
from cns_exchange.errors import (
    CnsxError, ConfigError, ExitCode, InputError, LocalIOError, LockedError, TransportFatalError, TransportRetryableError,
    UsageError,
)

from conftest import ROOT


def test_exit_code_table():
    assert {c.name: int(c) for c in ExitCode} == {
        "OK": 0, "INTERNAL": 1, "USAGE": 2, "INVALID": 3, "CONFIG": 4,
        "TRANSPORT_RETRYABLE": 5, "TRANSPORT_FATAL": 6, "LOCKED": 7, "LOCAL_IO": 8, "INTERRUPTED": 130, "OUTPUT_CUT": 141}
    assert [e.exit_code for e in (CnsxError("x"), UsageError("x"), InputError("x"), ConfigError("x"),
                                  TransportRetryableError("x"), TransportFatalError("x"), LockedError("x"),
                                  LocalIOError("x"))] == [1, 2, 3, 4, 5, 6, 7, 8]


def _group_raising(exc: BaseException) -> click.Group:
    @click.group(cls=CnsxGroup)
    def group():
        pass

    @group.command()
    def boom():
        raise exc

    return group


@pytest.mark.parametrize("exc, code", [
    (RuntimeError("kaput"), 1),
    (UsageError("bad usage", "try this"), 2),
    (InputError("bad input", "fix it"), 3),
    (ConfigError("bad config", "edit it"), 4),
    (TransportRetryableError("net down", "later"), 5),
    (TransportFatalError("auth", "check key"), 6),
    (LockedError("locked", "wait"), 7),
])
def test_errors_become_exit_codes_without_traceback(exc, code):
    result = CliRunner().invoke(_group_raising(exc), ["boom"])
    assert result.exit_code == code
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    if code == 1:
        assert "internal error: RuntimeError: kaput" in result.stderr and "--debug" in result.stderr
    else:
        assert f"error: {exc.message}" in result.stderr
        assert f"hint: {exc.hint}" in result.stderr


def test_a_network_error_no_transport_translated_is_a_bug_not_a_local_file():
    """The transports decide whether a network failure is retryable (5) or fatal (6); one
    that gets past them is cnsx's bug (1), never a local file's failure (8)."""
    import errno

    result = CliRunner().invoke(_group_raising(ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")), ["boom"])
    assert result.exit_code == 1, result.stderr
    assert "internal error: ConnectionResetError" in result.stderr and "--debug" in result.stderr
    assert "Traceback" not in result.stderr


def test_debug_lets_the_traceback_through(monkeypatch):
    monkeypatch.setenv("CNSX_DEBUG", "1")
    result = CliRunner().invoke(_group_raising(RuntimeError("kaput")), ["boom"])
    assert isinstance(result.exception, RuntimeError) and str(result.exception) == "kaput"


def test_unknown_command_and_option_are_usage_errors(run):
    r = run("no-such-command")
    assert r.exit_code == 2 and "No such command" in r.stderr
    r = run("validate", "--no-such-option", "x")
    assert r.exit_code == 2


def test_version_and_help(run):
    r = run("--version")
    assert r.exit_code == 0 and r.stdout.strip() == f"cnsx {__version__}"
    r = run("--help")
    assert r.exit_code == 0
    for command in ("build-request", "build-invoice", "validate"):
        assert command in r.stdout


def test_python_dash_m():
    proc = subprocess.run([sys.executable, "-m", "cns_exchange", "--version"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.strip() == f"cnsx {__version__}"


def test_help_does_not_import_heavy_libraries():
    """--help and --version stay fast: lxml, rich and stdnum load only when a command needs them."""
    code = ("import sys; from cns_exchange.cli import cli; "
            "cli.main(['--help'], standalone_mode=False); "
            "print(' '.join(m for m in ('lxml', 'rich', 'stdnum', 'platformdirs') if m in sys.modules), file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.stderr.strip().splitlines()[-1:] in ([], [""]), proc.stderr


def test_config_errors_exit_4(run, isolated_config, examples):
    (isolated_config / "config.toml").write_text("provider = [unclosed\n")
    r = run("build-invoice", str(examples / "sessions.csv"))
    assert r.exit_code == 4 and "not valid TOML" in r.stderr
    (isolated_config / "config.toml").write_text('provider = "123456"\n[profiles.test]\nprovider = "654321"\n')
    r = run("--profile", "nope", "build-invoice", str(examples / "sessions.csv"))
    assert r.exit_code == 4 and "no profile 'nope'" in r.stderr and "test" in r.stderr
    r = run("--config", str(isolated_config / "missing.toml"), "validate", "x.xml")
    assert r.exit_code == 4 and "does not exist" in r.stderr


def test_every_registered_command_loads_under_its_name():
    """The root group imports a command's module only when the command is asked for: each
    name of the registry must lead to a command of that name (a typo would be found by a user)."""
    from cns_exchange.cli import COMMANDS, cli

    ctx = click.Context(cli)
    assert cli.list_commands(ctx) == sorted(COMMANDS)
    for name in COMMANDS:
        command = cli.get_command(ctx, name)
        assert isinstance(command, click.Command) and command.name == name
    assert cli.get_command(ctx, "no-such-command") is None


def test_the_tables_are_loaded_once_per_run():
    """A build or print command asks for the tables and then for a validator: both get the
    one load of the run (a second load would give other objects)."""
    from cns_exchange.cli.context import Context

    ctx = Context(config=None, profile=None, debug=False, quiet=True)
    codes, nomenclature, registry = ctx.tables()
    again = ctx.tables()
    assert again[0] is codes and again[1] is nomenclature and again[2] is registry
    validator = ctx.validator()
    assert validator.codes is codes and validator.nomenclature is nomenclature and validator.registry is registry
