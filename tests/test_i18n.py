"""French and English: every message of the code has its French translation, the committed
catalogue is the compiled one, the language is chosen from the config then the environment,
and machine output (--json) stays English whatever the language.
"""

from __future__ import annotations

import ast
import copy
import gettext
import importlib.util
import io
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cns_exchange import i18n
from cns_exchange.i18n import Msg, _, ngettext, tr
from conftest import CREATED, EXAMPLES, PROVIDER, ROOT

PO = ROOT / "cns_exchange" / "locale" / "fr" / "LC_MESSAGES" / "cnsx.po"
MO = PO.with_suffix(".mo")
CLICK_PO = PO.with_name("click.po")   # click's own messages, as cnsx shows them


def _tool():
    """scripts/i18n.py, the one extractor and compiler (the tests check what it finds and writes)."""
    spec = importlib.util.spec_from_file_location("cnsx_i18n_tool", ROOT / "scripts" / "i18n.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


tool = _tool()
HEADER, ENTRIES = tool.parse_po(PO.read_text("utf-8"), str(PO))
CODE = tool.extract()
CLICK_HEADER, CLICK_ENTRIES = tool.parse_po(CLICK_PO.read_text("utf-8"), str(CLICK_PO))
#: Each catalogue with the messages of its code: cnsx's, and the installed click's.
CATALOGUES = {"cnsx": (PO, ENTRIES, CODE), "click": (CLICK_PO, CLICK_ENTRIES, tool.messages("click"))}


# --- the catalogue ---------------------------------------------------------------------------


def test_the_code_has_messages():
    # The scan finds the markers: the catalogue's titles and hints, and messages of every stage.
    assert len(CODE) > 200
    files = {f for e in CODE for f in e.files}
    for module in ("cns_exchange/issues.py", "cns_exchange/console.py", "cns_exchange/config.py"):
        assert module in files


def test_click_has_messages():
    # click's usage errors are found in its source: the scan of another project's code works.
    msgids = {e.msgid for e in CATALOGUES["click"][2]}
    assert {"Error: {message}", "No such option {name!r}.", "Try '{command} {option}' for help."} <= msgids


@pytest.mark.parametrize("domain", CATALOGUES)
def test_every_message_has_a_french_translation(domain):
    po, entries, code = CATALOGUES[domain]
    known = {e.key: e for e in entries}
    absent = [e.msgid for e in code if e.key not in known]
    assert not absent, f"not in {po.name} (python scripts/i18n.py extract): {absent[:5]}"
    untranslated = [e.msgid for e in code if not known[e.key].translated]
    assert not untranslated, f"no French in {po.name}: {untranslated[:5]}"


def test_the_catalogue_holds_only_the_code_s_messages():
    used = {e.key for e in CODE}
    stale = [e.msgid for e in ENTRIES if e.key not in used]
    assert not stale, f"in {PO.name} but no longer in the code (python scripts/i18n.py extract): {stale[:5]}"


@pytest.mark.parametrize("entry", ENTRIES + CLICK_ENTRIES, ids=lambda e: e.msgid[:50])
def test_translation_keeps_the_placeholders(entry):
    """A translation has the placeholders of its English text, no more, no fewer: a missing
    one would drop a file name, an extra one cannot be filled."""
    english = tool.placeholders(entry.msgid if entry.plural is None else entry.plural)
    for text in entry.msgstr:
        french = tool.placeholders(text)
        if english is None:   # a literal brace in a hint: the same braces
            assert text.count("{") == entry.msgid.count("{"), text
        elif not english:   # click's one %-format text: the same %(name)s
            assert sorted(re.findall(r"%\(\w+\)s", text)) == sorted(re.findall(r"%\(\w+\)s", entry.msgid)), text
        elif entry.plural is not None and text is entry.msgstr[0]:
            singular = tool.placeholders(entry.msgid)   # the singular may leave {n} out
            assert singular <= french <= singular | english, text
        else:
            assert french == english, f"{entry.msgid!r}: {english} but the French has {french}"


@pytest.mark.parametrize("header", [HEADER, CLICK_HEADER], ids=["cnsx", "click"])
def test_french_plural_rule(header):
    # French: 0 and 1 are singular (0 fichier, 1 fichier, 2 fichiers).
    assert header["Plural-Forms"] == "nplurals=2; plural=(n > 1);"
    assert header["Language"] == "fr"
    assert header["Content-Type"] == "text/plain; charset=UTF-8"


@pytest.mark.parametrize("po", [PO, CLICK_PO], ids=lambda p: p.stem)
def test_the_committed_mo_is_the_compiled_po(po):
    assert po.with_suffix(".mo").read_bytes() == tool.compiled(po), "run python scripts/i18n.py compile"


@pytest.mark.parametrize("domain", CATALOGUES)
def test_python_s_gettext_reads_what_the_compiler_writes(domain):
    """The compiler's output, read back by the standard library's reader, gives each msgstr."""
    po, entries, _code = CATALOGUES[domain]
    catalogue = gettext.GNUTranslations(io.BytesIO(tool.compiled(po)))
    assert catalogue.info()["language"] == "fr"
    for e in entries:
        if e.plural is None:
            assert catalogue.gettext(e.msgid) == e.msgstr[0]
        else:
            assert catalogue.ngettext(e.msgid, e.plural, 1) == e.msgstr[0]
            assert catalogue.ngettext(e.msgid, e.plural, 0) == e.msgstr[0]
            assert catalogue.ngettext(e.msgid, e.plural, 2) == e.msgstr[1]


@pytest.mark.parametrize("po", [PO, CLICK_PO], ids=lambda p: p.stem)
def test_gnu_msgfmt_accepts_the_catalogue(tmp_path, po):
    """GNU msgfmt, a second reader, checks the file and each python-brace-format entry; what
    it compiles holds the same translations as ours."""
    if shutil.which("msgfmt") is None:
        pytest.skip("msgfmt is not installed (Debian: gettext)")
    theirs = tmp_path / po.with_suffix(".mo").name
    proc = subprocess.run(["msgfmt", "--check-format", "--check-domain", "-o", str(theirs), str(po)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    ours = gettext.GNUTranslations(io.BytesIO(po.with_suffix(".mo").read_bytes()))
    gnu = gettext.GNUTranslations(theirs.open("rb"))
    assert ours._catalog == gnu._catalog  # noqa: SLF001 - the two parsed catalogues, compared whole


def test_brace_format_flags_are_right():
    text = PO.read_text("utf-8")
    assert '#, python-brace-format\nmsgid "{where} must be a table"' in text
    assert '#, python-brace-format\nmsgid "e.g. dieticians' not in text  # TOML braces, not placeholders


def test_a_marker_takes_only_literals(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "m.py").write_text('from cns_exchange.i18n import _\nname = "x"\nm = _(f"{name} is bad")\n')
    with pytest.raises(ValueError, match=r"m.py:3: _\(\) takes string literals"):
        tool.extract(package)


def _rebinds_underscore(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == "_" and isinstance(node.ctx, (ast.Store, ast.Del)):
            lines.append(node.lineno)
        elif isinstance(node, ast.ExceptHandler) and node.name == "_":
            lines.append(node.lineno)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines += [node.lineno for a in node.args.args + node.args.kwonlyargs if a.arg == "_"]
    return lines


def test_no_module_hides_the_marker():
    """``for _, code in ...`` in a module that imports ``_`` would make _() that loop's value,
    or an UnboundLocalError in the function: nowhere."""
    found = []
    for path in sorted((ROOT / "cns_exchange").rglob("*.py")):
        tree = ast.parse(path.read_text("utf-8"))
        imports = any(isinstance(n, ast.ImportFrom) and n.module == "cns_exchange.i18n" and any(a.name == "_" for a in n.names)
                      for n in ast.walk(tree))
        if imports:
            found += [f"{path.relative_to(ROOT)}:{line}" for line in _rebinds_underscore(tree)]
    assert not found, f"'_' bound again: {found}"


# --- Msg: English as data, translated when shown ----------------------------------------------


@pytest.fixture
def french(monkeypatch):
    monkeypatch.setenv("LANG", "fr_LU.UTF-8")
    yield
    i18n.choose(None)


def test_a_message_is_its_english_text():
    m = _("{where} must be a table").format(where="config.toml: practice")
    assert m == "config.toml: practice must be a table" and isinstance(m, str)
    assert json.dumps({"message": m}) == '{"message": "config.toml: practice must be a table"}'
    assert f"[{m}]" == "[config.toml: practice must be a table]"


def test_a_message_takes_named_placeholders_only():
    with pytest.raises(TypeError, match="named placeholders"):
        _("{where} must be a table").format("x")


def test_a_message_survives_pickle_and_copy(french):
    """Issues come back from worker processes pickled, and go to JSON through dataclasses.asdict
    (a deep copy): their messages still translate."""
    m = _("{where} must be a table").format(where="c.toml")
    for again in (pickle.loads(pickle.dumps(m)), copy.deepcopy(m)):
        assert again == m and isinstance(again, Msg)
        assert tr(again) == "c.toml doit être une table"


def test_tr_translates_a_message_and_its_values(french):
    inner = _("none")
    outer = _("{file}: no profile '{profile}' (profiles: {known})").format(file="c.toml", profile="x", known=inner)
    assert tr(outer) == "c.toml : pas de profil « x » (profils : aucun)"
    assert outer == "c.toml: no profile 'x' (profiles: none)"


def test_tr_of_plain_text(french):
    assert tr("fix the value") == "corrigez la valeur"      # a msgid written plainly still translates
    assert tr("not a message of cnsx") == "not a message of cnsx"
    assert tr("") == ""


def test_plurals(french):
    one, two, none = (ngettext("{n} file", "{n} files", n).format(n=n) for n in (1, 2, 0))
    assert (one, two, none) == ("1 file", "2 files", "0 files")
    # Shown through a real plural of the catalogue (the first one the code has).
    plural = next(e for e in ENTRIES if e.plural is not None)
    n0 = ngettext(plural.msgid, plural.plural, 0)
    assert tr(n0) == plural.msgstr[0]        # French: 0 is singular
    assert tr(ngettext(plural.msgid, plural.plural, 5)) == plural.msgstr[1]


@pytest.mark.parametrize("environment, expected", [
    ({"LANG": "fr_LU.UTF-8"}, "fr"),
    ({"LANG": "fr_FR"}, "fr"),
    ({"LANG": "fr"}, "fr"),
    ({"LANG": "C"}, "en"),
    ({"LANG": "POSIX"}, "en"),
    ({"LANG": "C.UTF-8"}, "en"),
    ({"LANG": "de_LU.UTF-8"}, "en"),          # no German: English
    ({"LANG": "en_GB.UTF-8"}, "en"),
    ({}, "en"),
    ({"LANGUAGE": "de:fr", "LANG": "C"}, "fr"),  # LANGUAGE lists preferences, first known wins
    ({"LC_ALL": "C", "LANG": "fr_LU.UTF-8"}, "en"),
    ({"LC_MESSAGES": "fr_BE.UTF-8", "LANG": "C"}, "fr"),
])
def test_language_from_the_environment(monkeypatch, environment, expected):
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert i18n.language() == expected


def test_the_choice_beats_the_environment(monkeypatch):
    monkeypatch.setenv("LANG", "fr_LU.UTF-8")
    try:
        i18n.choose("en")
        assert i18n.language() == "en" and tr(_("fix the value")) == "fix the value"
        monkeypatch.setenv("LANG", "C")
        i18n.choose("fr")
        assert i18n.language() == "fr" and tr(_("fix the value")) == "corrigez la valeur"
    finally:
        i18n.choose(None)
    with pytest.raises(ValueError):
        i18n.choose("de")


# --- real runs -------------------------------------------------------------------------------


def _cnsx(args, cwd: Path, language_env: dict[str, str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")}
    env.update(language_env)
    return subprocess.run([sys.executable, "-m", "cns_exchange", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def broken(tmp_path) -> Path:
    """An invoice with an unknown act code: schema violation (XSD01)."""
    text = (EXAMPLES / "123456_FAC_20261120_000001.xml").read_text("utf-8")
    path = tmp_path / "123456_FAC_20261120_000009.xml"
    path.write_text(text.replace("<CodeActe>ZD11</CodeActe>", "<CodeActe>ZD99</CodeActe>", 1), "utf-8")
    return path


def test_validate_speaks_french_under_a_french_locale(broken, current_tariffs):
    r = _cnsx(["validate", broken.name], broken.parent, {"LANG": "fr_LU.UTF-8"})
    assert r.returncode == 3
    assert " : erreur XSD01 : " in r.stderr   # French spaces before each colon of the line
    assert "conseil : corrigez l'élément nommé dans le message ; le XSD de la version est dans schemas/" in r.stderr
    assert "hint:" not in r.stderr


@pytest.mark.parametrize("environment", [{}, {"LANG": "C"}, {"LANG": "C.UTF-8"}, {"LANG": "de_DE.UTF-8"}])
def test_validate_speaks_english_by_default(broken, current_tariffs, environment):
    r = _cnsx(["validate", broken.name], broken.parent, environment)
    assert r.returncode == 3
    assert re.search(r"\S: error XSD01: ", r.stderr)
    assert "hint: fix the element named in the message; the XSD of the version is in schemas/" in r.stderr


def test_the_config_s_language_beats_the_locale(broken, current_tariffs, isolated_config):
    config = isolated_config / "config.toml"
    config.write_text('language = "fr"\n')
    r = _cnsx(["validate", broken.name], broken.parent, {"LANG": "C"})
    assert r.returncode == 3 and "conseil : corrigez l'élément" in r.stderr
    config.write_text('language = "en"\n')
    r = _cnsx(["validate", broken.name], broken.parent, {"LANG": "fr_LU.UTF-8"})
    assert r.returncode == 3 and "hint: fix the element" in r.stderr


def test_cnsx_language_in_the_environment(broken, current_tariffs):
    r = _cnsx(["validate", broken.name], broken.parent, {"LANG": "C", "CNSX_LANGUAGE": "fr"})
    assert "conseil : corrigez l'élément" in r.stderr


@pytest.mark.parametrize("args, french, english", [
    (["--nope"], "Erreur : Option inconnue : '--nope'.", "Error: No such option '--nope'."),
    (["valdate"], "Erreur : Commande inconnue : 'valdate'.", "Error: No such command 'valdate'."),
    (["validate"], "Erreur : Argument manquant 'FILE...'.", "Error: Missing argument 'FILE...'."),
    (["status", "--year", "abc"], "Valeur invalide pour '--year' : 'abc' n'est pas",
     "Invalid value for '--year': 'abc' is not"),
])
def test_click_s_usage_errors_in_the_environment_s_language(tmp_path, args, french, english):
    """click builds these (cnsx never sees their text): they come from click.po all the same,
    with click's 'Usage' and 'Try ... for help' lines."""
    r = _cnsx(args, tmp_path, {"LANG": "fr_LU.UTF-8"})
    assert r.returncode == 2, r.stderr
    assert french in r.stderr and "Essayez 'cnsx" in r.stderr and "pour l'aide." in r.stderr
    assert "Error" not in r.stderr and "Try " not in r.stderr
    r = _cnsx(args, tmp_path, {"LANG": "C.UTF-8"})
    assert r.returncode == 2 and english in r.stderr and "Try 'cnsx" in r.stderr, r.stderr


def test_click_s_domain_is_given_back_after_a_run(run):
    """The default gettext domain is click.po's only while cnsx's command line runs."""
    before = gettext.textdomain()
    run(["--nope"])
    assert gettext.textdomain() == before


def test_an_unknown_language_in_the_config(tmp_path, isolated_config):
    (isolated_config / "config.toml").write_text('language = "de"\n')
    r = _cnsx(["validate", str(EXAMPLES / "CNS_ACR_20261120_000001.xml")], tmp_path, {"LANG": "fr_LU.UTF-8"})
    assert r.returncode == 4
    # Said in the environment's language: the config's own is not known.
    assert "erreur :" in r.stderr and "language doit être l'une des valeurs en, fr" in r.stderr


def test_a_config_error_in_french(tmp_path):
    r = _cnsx(["--config", "none.toml", "validate", "x.xml"], tmp_path, {"LANG": "fr_LU.UTF-8"})
    assert r.returncode == 4
    assert r.stderr == ("erreur : le fichier de configuration none.toml n'existe pas\n"
                        "    conseil : vérifiez --config / CNSX_CONFIG\n")


def test_build_invoice_with_a_bad_row_in_french(tmp_path, current_tariffs):
    (tmp_path / "sessions.csv").write_text(
        "certificate_number;matricule;session_date;act_code\n"
        "TPC-2026-000001;1893120105733;2026-11-02;ZD11\n", "utf-8")   # C2 wrong
    args = ["build-invoice", "sessions.csv", "--provider", PROVIDER, "--created", CREATED, "--no-certificate-check"]
    fr = _cnsx(args, tmp_path, {"LANG": "fr_LU.UTF-8"})
    en = _cnsx(args, tmp_path, {"LANG": "C"})
    assert fr.returncode == en.returncode == 3
    assert fr.stdout == en.stdout == ""
    assert "erreur MAT03" in fr.stderr and "conseil : ressaisissez le matricule depuis la carte du patient" in fr.stderr
    assert "error MAT03" in en.stderr and "hint: re-type the matricule from the patient's card" in en.stderr


def test_json_output_is_english_in_any_language(broken, current_tariffs):
    """Machine output is the same whatever the language: codes, messages and hints in English."""
    fr = _cnsx(["validate", "--json", broken.name], broken.parent, {"LANG": "fr_LU.UTF-8"})
    en = _cnsx(["validate", "--json", broken.name], broken.parent, {"LANG": "C"})
    assert fr.returncode == en.returncode == 3
    assert fr.stdout == en.stdout
    [report] = json.loads(fr.stdout)
    [issue] = [i for i in report["issues"] if i["code"] == "XSD01"]
    assert issue["hint"] == "fix the element named in the message; the XSD of the version is in schemas/"
    assert "conseil" in fr.stderr or "erreur" in fr.stderr


def test_joined_messages_are_each_translated(french):
    joined = i18n.join("; ", [_("fix the value"), "ZD11", _("swap them")])
    assert joined == "fix the value; ZD11; swap them"
    assert tr(joined) == "corrigez la valeur; ZD11; intervertissez-les"   # the separator is the caller's
    assert pickle.loads(pickle.dumps(joined)) == joined
    outer = _("the tariff table is refused: {problems}; nothing was written").format(problems=joined)
    assert tr(outer) == ("la table des tarifs est refusée : corrigez la valeur; ZD11; intervertissez-les ; "
                         "rien n'a été écrit")


def test_amounts_and_days_are_values_written_the_language_s_way(french, monkeypatch):
    """An amount (Decimal) and a day (date) go into a message as values: English as data
    ('1234.56', ISO days, as in --json), French where it is shown ('1 234,56', dd/mm/yyyy)."""
    from datetime import date, datetime, timezone

    from cns_exchange.domain.model import money
    from cns_exchange.pdf.layout import euros

    gross = _("{amount} EUR gross").format(amount=money(123456))
    day = _("no tariff table is in force on {day}").format(day=date(2026, 11, 1))
    assert (gross, day) == ("1234.56 EUR gross", "no tariff table is in force on 2026-11-01")
    assert json.dumps([gross, day]) == '["1234.56 EUR gross", "no tariff table is in force on 2026-11-01"]'
    assert tr(gross) == "1\u00a0234,56 EUR brut" and tr(_("{amount} EUR gross").format(amount=money(-50))) == "-0,50 EUR brut"
    assert tr(day) == "aucune table des tarifs n'est en vigueur le 01/11/2026"
    assert euros(123456) == i18n.french_number(money(123456))   # the printed documents' amounts, the same way
    # A moment, and text (an option's argument as typed, a figure quoted from a file), stay as they are.
    moment = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)
    assert tr(_("no tariff table is in force on {day}").format(day=moment)).endswith(f"le {moment}")
    assert tr(_("no tariff table is in force on {day}").format(day="2026-11-01")).endswith("le 2026-11-01")
    # Joined amounts, each shown the French way, with the separator's translation.
    paid = _("{what}, not one amount for each amount billed ({billed} paid as {paid}): not a tariff change; "
             "ask the CNS why").format(what="x", billed=money(5555), paid=i18n.join(_(" and "), [money(4888), money(5000)]))
    assert "(55.55 paid as 48.88 and 50.00)" in paid
    assert "(55,55 payé 48,88 et 50,00)" in tr(paid)
    monkeypatch.setenv("LANG", "C")
    assert (tr(gross), tr(day), tr(paid)) == (gross, day, paid)


def test_reason_keeps_an_exception_s_message_translatable(french):
    from cns_exchange.errors import ConfigError

    assert tr(i18n.reason(ValueError(_("element {name} missing").format(name="Patient")))) == "élément Patient absent"
    assert tr(i18n.reason(ConfigError(_("upgrade cnsx")))) == "mettez cnsx à jour"
    assert i18n.reason(ValueError("plain")) == "plain"


def test_every_problem_of_a_refused_tariff_table_in_french(run, isolated_config):
    """In-process, the config's language = "fr": the refused table's problems, joined in one
    message, are each said in French (and the next test, with no such config, is English again)."""
    (isolated_config / "config.toml").write_text('language = "fr"\n')
    r = run("tariffs", "add", "--valid-from", "2026-11-01", "--source", "letter",
            "--price", "ZD11=0", "--price", "ZD12=abc", "--price", "ZD13=55.55", "--price", "ZD21=55.55")
    assert r.exit_code == 3 and r.stdout == ""
    assert ("erreur : la table des tarifs est refusée : --price ZD11 « 0 » n'est pas positif; "
            "--price ZD12 « abc » n'est pas un nombre (écrivez p. ex. 88.89) ; rien n'a été écrit") in r.stderr
    assert "conseil : corrigez les valeurs et relancez la commande" in r.stderr


def test_english_again_after_a_french_config(run):
    r = run("tariffs", "add", "--valid-from", "2026-11-01", "--source", "letter", "--price", "ZD11=0")
    assert r.exit_code == 3 and "error: the tariff table is refused: --price ZD11 '0' is not positive" in r.stderr
