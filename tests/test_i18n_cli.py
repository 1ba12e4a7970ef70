"""The CLI core in French (issue 13): help pages, the summaries and errors of build, validate,
print, upload, fetch, config and doctor, and the machine's errors (errors.py, fsutil). Each
runs a real command on a real file under a French locale; --json stays English."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from cns_exchange import i18n
from cns_exchange.cli import COMMANDS, cli
from cns_exchange.cli.context import HelpContext
from cns_exchange.i18n import Msg, tr
from conftest import CREATED, EXAMPLES, PROVIDER

ARGS = ("--provider", PROVIDER, "--created", CREATED)
BILLING = EXAMPLES / "123456_FAC_20261120_000001.xml"


@pytest.fixture
def french(monkeypatch):
    monkeypatch.setenv("LANG", "fr_FR.UTF-8")
    yield
    i18n.choose(None)


def _cnsx(args, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    """cnsx as a user runs it, in a process of its own, with ``env`` for its language."""
    base = {k: v for k, v in os.environ.items() if k not in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")}
    return subprocess.run([sys.executable, "-m", "cns_exchange", *args], env={**base, **env}, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


# --- the help ----------------------------------------------------------------------------------


def test_root_help_is_french_under_a_french_locale():
    r = _cnsx(["--help"], {"LANG": "fr_FR.UTF-8"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Usage : cnsx [OPTIONS] COMMAND [ARGS]...")
    assert "cnsx : échange électronique d'un cabinet de diététique avec la CNS" in r.stdout
    assert "Options :" in r.stdout and "Commandes :" in r.stdout
    assert "Afficher ce message et quitter." in r.stdout and "N'afficher que les problèmes." in r.stdout
    assert "Construit un fichier de facturation" in r.stdout   # a command's line in the list
    assert "Show this message" not in r.stdout and "Print only problems" not in r.stdout


def test_command_help_is_french_under_a_french_locale():
    r = _cnsx(["build-invoice", "--help"], {"LANG": "fr_FR.UTF-8"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Usage : cnsx build-invoice [OPTIONS] INPUT")
    text = " ".join(r.stdout.split())
    assert "Construit un fichier de facturation (mémoires d'honoraires, tiers payant)" in text
    assert "Colonnes : certificate_number, matricule, session_date, act_code" in text
    assert "Ne pas vérifier les séances par rapport aux titres de prise en charge importés." in text
    assert "[1<=x<=999999]" in text   # click's range, as it is


def test_click_s_extras_are_french():
    r = _cnsx(["print", "fee-notes", "--help"], {"LANG": "fr_FR.UTF-8"})
    text = " ".join(r.stdout.split())
    assert "[obligatoire]" in text and "[par défaut : full]" in text, text


def test_help_is_english_by_default():
    for env in ({}, {"LANG": "C.UTF-8"}):
        r = _cnsx(["build-invoice", "--help"], env)
        assert r.stdout.startswith("Usage: cnsx build-invoice [OPTIONS] INPUT")
        assert "Build a billing file (fee notes, third-party payment)" in r.stdout
        assert "\nOptions:\n" in r.stdout and "Show this message and exit." in r.stdout
        assert "Construit" not in r.stdout


def test_help_in_english_is_click_s_page():
    """The page cnsx lays out in English is, to the byte, the one click lays out from the same
    texts in the same context."""
    for path, command in _tree():
        ctx = command.context_class(command, info_name=path, max_content_width=100)
        assert isinstance(ctx, HelpContext), path
        assert ctx.get_help() == click.Command.get_help(command, ctx), path


def test_the_config_s_language_gives_the_help(isolated_config):
    (isolated_config / "config.toml").write_text('language = "fr"\n')
    env = {"LANG": "C.UTF-8", "CNSX_CONFIG_DIR": str(isolated_config)}
    assert "Construit un fichier" in _cnsx(["build-invoice", "--help"], env).stdout
    assert "Options :" in _cnsx(["--help"], env).stdout
    other = isolated_config / "en.toml"
    other.write_text('language = "en"\n')
    r = _cnsx(["--config", str(other), "build-invoice", "--help"], {"LANG": "fr_FR.UTF-8"})
    assert "Build a billing file" in r.stdout


def test_a_broken_config_still_shows_the_help(isolated_config):
    (isolated_config / "config.toml").write_text("language = [\n")
    r = _cnsx(["build-invoice", "--help"], {"LANG": "fr_FR.UTF-8", "CNSX_CONFIG_DIR": str(isolated_config)})
    assert r.returncode == 0 and "Construit un fichier" in r.stdout


def _tree():
    """(path, command) of every command of cnsx, groups' subcommands included."""
    ctx = click.Context(cli, info_name="cnsx")
    found = [("cnsx", cli)]
    stack = [("cnsx", cli, ctx)]
    while stack:
        path, group, gctx = stack.pop()
        for name in group.list_commands(gctx):
            command = group.get_command(gctx, name)
            found.append((f"{path} {name}", command))
            if isinstance(command, click.Group):
                stack.append((f"{path} {name}", command, click.Context(command, info_name=name, parent=gctx)))
    return found


def test_the_tree_holds_every_command():
    assert {path.split()[1] for path, _unused in _tree()[1:]} == set(COMMANDS)


@pytest.mark.parametrize("name", ["cnsx", *sorted(COMMANDS)])
def test_every_help_text_is_marked_and_translated(french, name):
    """Every command's help is a Msg, and every help (commands, options, arguments) has its
    French in the catalogue (click keeps an option's help as plain text, which is looked up
    as it is: only marked texts are in the catalogue)."""
    missing = []
    for path, command in _tree():
        if (path.split() + ["cnsx"])[1 if name != "cnsx" else 0] != name or (name == "cnsx" and path != "cnsx"):
            continue
        texts = [("help", command.help)] + [(p.name, p.help) for p in command.params]
        if command.help is None or not isinstance(command.help, Msg):
            missing.append(f"{path}: help not marked")
        for what, text in texts:
            if text and tr(text) == text:
                missing.append(f"{path} {what}: {text[:60]!r}")
    assert not missing, "\n".join(missing)


def test_every_command_shows_its_help_in_french(french):
    for path, command in _tree():
        ctx = command.context_class(command, info_name=path)
        assert "Options :" in ctx.get_help(), path


# --- build, validate, print ----------------------------------------------------------------------


def test_build_invoice_summary_in_french(run, examples, french, current_tariffs):
    r = run("build-invoice", str(examples / "sessions.csv"), *ARGS)
    assert r.exit_code == 0, r.stderr
    assert "3 mémoires d'honoraires, 8 séances, 622,20 EUR brut, 560,86 EUR à charge de la CNS" in r.stderr, r.stderr
    assert "EUR à charge de la CNS → stdout (sha256 " in r.stderr
    assert r.stdout.startswith("<?xml")


def test_build_usage_error_in_french(run, examples, french):
    r = run("build-invoice", str(examples / "sessions.csv"), *ARGS, "--rebill", " ")
    assert r.exit_code == 2
    assert "erreur : --rebill demande un motif" in r.stderr
    assert "conseil : p. ex. --rebill 'lettre de la CNS du 2026-12-01 : fichier perdu'" in r.stderr


def test_validate_in_french_and_its_json_in_english(run, french, current_tariffs):
    r = run("validate", "--json", str(BILLING))
    assert r.exit_code == 0, r.stderr
    assert f"{BILLING}: valid" not in r.stderr
    assert f"{BILLING} : valide (facturation v" in r.stderr and "éléments)" in r.stderr, r.stderr
    report = json.loads(r.stdout)
    assert report[0]["valid"] is True and report[0]["kind"] == "billing" and "valide" not in r.stdout


def test_validate_stdin_twice_in_french(run, french):
    r = run("validate", "-", "-", input=b"")
    assert r.exit_code == 2 and "« - » (stdin) ne peut être donné qu'une fois" in r.stderr


def test_print_in_french(run, tmp_path, french, current_tariffs):
    out = tmp_path / "notes"
    out.mkdir()
    r = run("print", "fee-notes", str(BILLING), "-o", str(out), "--created", CREATED)
    assert r.exit_code == 0, r.stderr
    assert "mémoires d'honoraires → " in r.stderr, r.stderr
    r = run("print", "summary", str(BILLING), "-o", str(out / "recap.pdf"), "--created", CREATED)
    assert r.exit_code == 0 and "séances" in r.stderr and "EUR brut" in r.stderr, r.stderr
    r = run("print", "summary", str(BILLING), "-o", str(out / "recap.pdf"), "--created", CREATED)
    assert r.exit_code == 2
    assert "un fichier de ce nom existe ; cnsx n'écrase jamais un fichier" in r.stderr, r.stderr


# --- upload, fetch, config, doctor ----------------------------------------------------------------


def test_upload_and_fetch_in_french_json_in_english(run, dropbox, french):
    root, data = dropbox
    r = run("upload", "--json", str(BILLING))
    assert r.exit_code == 0, r.stderr
    assert "1 envoyé" in r.stderr and "sent" not in r.stderr, r.stderr
    assert json.loads(r.stdout)["status"] == "sent"
    r = run("upload", str(BILLING))
    assert "0 envoyé, 1 déjà envoyé (--force renvoie)" in r.stderr, r.stderr
    r = run("upload", "-", input=BILLING.read_bytes())
    assert r.exit_code == 2 and "« - » envoie un document lu sur stdin et demande --name" in r.stderr


def test_nightly_verbose_in_french(run, dropbox, french):
    root, data = dropbox
    for path in sorted(EXAMPLES.glob("CNS_*.xml")):
        (root / "download" / path.name).write_bytes(path.read_bytes())
    r = run("-v", "nightly")
    # the document kinds in French too (they stay English in --json and the database)
    for kind in ("accusé de réception", "paiement", "réponses"):
        assert f"importé ({kind})" in r.stderr, r.stderr
    assert "(payment)" not in r.stderr and "(ack)" not in r.stderr


def test_config_init_and_doctor_in_french(run, isolated_config, dropbox, french):
    r = run("config", "init", "--provider", PROVIDER)
    assert r.exit_code == 2 and "existe déjà ; cnsx config init ne le remplace jamais" in r.stderr, r.stderr
    r = run("doctor")
    assert r.exit_code == 0, r.stderr
    assert "✓ configuration :" in r.stderr and "✓ dossier d'envoi :" in r.stderr, r.stderr
    assert "✓ permissions : configuration, base et dossiers locaux privés" in r.stderr
    (isolated_config / "config.toml").chmod(0o644)
    r = run("doctor")
    assert r.exit_code == 4
    assert "✗ permissions : des fichiers contenant des données de santé" in r.stderr
    assert "    à corriger : chmod 600" in r.stderr


def test_config_init_writes_in_french(run, tmp_path, french):
    path = tmp_path / "c" / "config.toml"
    r = run("--config", str(path), "config", "init")
    assert r.exit_code == 0 and f"{path} écrit" in r.stderr, r.stderr


# --- the machine's errors ---------------------------------------------------------------------------


def test_a_local_failure_in_french(run, dropbox, tmp_path, monkeypatch, french):
    """A file where the data folder should be: exit 8, the hint of errors.py in French."""
    (tmp_path / "afile").write_text("")
    monkeypatch.setenv("CNSX_DATA_DIR", str(tmp_path / "afile" / "data"))
    r = run("upload", str(BILLING))
    assert r.exit_code == 8, r.stderr
    assert "conseil : un fichier se trouve là où le chemin demande un dossier : corrigez le chemin ou le réglage" in r.stderr


def test_a_full_stdout_in_french(examples, current_tariffs, isolated_config):
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "cns_exchange", "build-invoice", str(examples / "sessions.csv"), *ARGS],
                           env={**os.environ, "LANG": "fr_FR.UTF-8"}, stdout=full, stderr=subprocess.PIPE, text=True,
                           timeout=120)
    assert r.returncode == 8, r.stderr
    assert "conseil : libérez de la place sur son disque, puis relancez" in r.stderr, r.stderr


def test_a_date_time_option_in_french(run, examples, french):
    r = run("build-invoice", str(examples / "sessions.csv"), "--provider", PROVIDER, "--created", "hier")
    assert r.exit_code == 2
    assert "--created « hier » n'est pas une date-heure ISO 8601" in r.stderr
    assert "conseil : p. ex. 2026-11-26T09:30:00+01:00" in r.stderr
