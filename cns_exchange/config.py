"""Configuration: a TOML file with profiles, located by flag, environment or platformdirs.

Precedence is flag > environment > file > default. Every setting may sit at the top of the
file (shared by all profiles) or in a ``[profiles.NAME]`` table; the environment variable
``CNSX_<SETTING>`` (e.g. ``CNSX_REMOTE``) overrides both. Secrets are never read from the file:
a profile names where a secret comes from (``env``, ``keyring`` or ``prompt``).
"""

from __future__ import annotations

import os
import stat
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import unquote, urlsplit

from cns_exchange import i18n
from cns_exchange.errors import ConfigError
from cns_exchange.i18n import _

DEFAULT_MAX_XML_BYTES = 512 * 1024 * 1024
DEFAULT_MAX_PDF_BYTES = 20 * 1024 * 1024     # a prescription scan; a PDF built from images too
SECRET_SOURCES = ("env", "keyring", "prompt")
AFTER_FETCH = ("keep", "delete", "archive")

#: Settings, their kind and default. Paths are expanded (~) and made absolute.
SETTINGS: dict[str, tuple[str, object]] = {
    "provider": ("str", None),
    "max_xml_bytes": ("int", DEFAULT_MAX_XML_BYTES),
    "max_pdf_bytes": ("int", DEFAULT_MAX_PDF_BYTES),   # largest prescription PDF build-request accepts
    "remote": ("str", None),                 # sftp://user@host:port  or  file:///path
    "upload_dir": ("str", "upload"),         # remote folder the practice deposits into
    "download_dir": ("str", "download"),     # remote folder the CNS leaves return files in
    "known_hosts": ("path", None),           # OpenSSH known_hosts file (default ~/.ssh/known_hosts)
    "host_key": ("str", None),               # pinned fingerprint, e.g. SHA256:...
    "key_file": ("path", None),              # private key for public-key authentication
    "key_passphrase": ("secret", None),      # env (CNSX_KEY_PASSPHRASE) | keyring | prompt
    "use_agent": ("bool", False),            # try the ssh-agent's keys
    "password": ("secret", None),            # env (CNSX_PASSWORD) | keyring | prompt
    "outbox": ("path", None),
    "inbox": ("path", None),
    "archive": ("path", None),
    "errors": ("path", None),
    "database": ("path", None),
    "after_fetch": ("str", "keep"),          # keep | delete | archive (on the server)
    "remote_archive_dir": ("str", None),
    "timeout": ("int", 30),                  # seconds, connection and each request
    "retries": ("int", 4),                   # attempts after a retryable failure
    "backoff": ("int", 2),                   # seconds before the first retry, doubled each time
    "encoding": ("str", None),               # of the practice's input files (default: detected)
    "columns": ("table", None),              # the practice's own header names -> cnsx's columns
    "language": ("str", None),               # en | fr (default: LANGUAGE, LC_ALL, LC_MESSAGES, LANG; else en)
}
TOP_ONLY = {"default_profile", "profiles", "practice"}
#: The values an integer setting may take (None: no upper bound). Beyond them a number stops
#: meaning anything (a timeout of 10^20 s, 10^20 retries) and only overflows a library.
INT_RANGES: dict[str, tuple[int, int | None]] = {
    "max_xml_bytes": (1, None),
    "max_pdf_bytes": (1, None),
    "timeout": (1, 3600),       # an hour for one request is already no answer
    "retries": (0, 100),
    "backoff": (0, 60),         # the wait between two attempts is at most 60 s anyway
}


def config_dir() -> Path:
    """Return the config folder: $CNSX_CONFIG_DIR, else the platform's user config folder."""
    env = os.environ.get("CNSX_CONFIG_DIR")
    if env:
        return Path(env)
    from platformdirs import user_config_dir

    return Path(user_config_dir("cnsx", appauthor=False))


def config_file(explicit: str | None = None) -> Path:
    """Return the config file's path: ``explicit`` (--config), else $CNSX_CONFIG, else
    config.toml in :func:`config_dir`."""
    explicit = explicit or os.environ.get("CNSX_CONFIG")
    return Path(explicit) if explicit else config_dir() / "config.toml"


def data_dir() -> Path:
    """Return the folder for local state by default: $CNSX_DATA_DIR, else the platform's."""
    env = os.environ.get("CNSX_DATA_DIR")
    if env:
        return Path(env)
    from platformdirs import user_data_dir

    return Path(user_data_dir("cnsx", appauthor=False))


@dataclass
class Remote:
    """Where the CNS drop box is: ``scheme`` 'sftp' or 'file'."""

    scheme: str
    host: str = ""
    port: int = 22
    user: str = ""
    path: str = ""

    def __str__(self) -> str:
        if self.scheme == "file":
            return f"file://{self.path}"
        return f"sftp://{self.user}@{self.host}:{self.port}"


def parse_remote(url: str, where: str = "remote") -> Remote:
    """Parse ``sftp://user@host[:port]`` or ``file:///path``; ConfigError otherwise."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ConfigError(_("{where}: '{url}' is not a file:///absolute/path URL").format(where=where, url=url),
                              _("e.g. file:///srv/cns-dropbox"))
        return Remote("file", path=unquote(parts.path))
    if parts.scheme == "sftp":
        if parts.password is not None:
            raise ConfigError(_("{where}: the URL holds a password").format(where=where),
                              _("remove it: passwords come from CNSX_PASSWORD, the keyring or a prompt"))
        if not parts.hostname or not parts.username:
            raise ConfigError(_("{where}: '{url}' needs a user and a host: sftp://user@host:port").format(where=where, url=url),
                              _("fix the remote URL"))
        try:
            port = parts.port or 22
        except ValueError:
            raise ConfigError(_("{where}: '{url}' has an invalid port").format(where=where, url=url),
                              _("fix the remote URL")) from None
        return Remote("sftp", host=parts.hostname, port=port, user=unquote(parts.username))
    raise ConfigError(_("{where}: '{url}' is neither sftp:// nor file://").format(where=where, url=url),
                      _("e.g. sftp://user@host:22 or file:///srv/dropbox"))


@dataclass(frozen=True)
class Practice:
    """The practice's identity, printed on the documents it hands out (fee notes, summaries):
    the ``[practice]`` table of the config file."""

    name: str
    address: tuple[str, ...] = ()              # its lines
    phone: str = ""
    iban: str = ""                             # checked, in groups of four
    dieticians: dict[str, str] = field(default_factory=dict)   # provider code -> name


PRACTICE_KEYS = tuple(f.name for f in fields(Practice))


def parse_practice(raw: object, file: Path) -> Practice:
    """The ``[practice]`` table as a Practice; ConfigError naming the key for an unknown key,
    a missing name, a value of the wrong type, an IBAN that fails its check digits, or a
    dietician whose provider code is not digits."""
    where = f"{file}: practice"
    if not isinstance(raw, dict):
        raise ConfigError(_("{where} must be a table").format(where=where), _("write it as [practice]"))
    unknown = sorted(set(raw) - set(PRACTICE_KEYS))
    if unknown:
        raise ConfigError(_("{where}: unknown key {key}").format(where=where, key=unknown[0]),
                          _("keys: {keys} (docs/cli.md)").format(keys=", ".join(PRACTICE_KEYS)))

    def text(key: str, required: bool = False) -> str:
        value = raw.get(key, "")
        if not isinstance(value, str) or (required and not value.strip()):
            wanted = _("{where}.{key} must be a non-empty string") if required else _("{where}.{key} must be a string")
            raise ConfigError(wanted.format(where=where, key=key), _("fix the value"))
        return value.strip()

    address = raw.get("address", [])
    if isinstance(address, str):
        address = address.splitlines()
    if not isinstance(address, list) or not all(isinstance(line, str) for line in address):
        raise ConfigError(_("{where}.address must be a string or a list of lines").format(where=where),
                          _('e.g. ["12, rue X", "L-1234 Luxembourg"]'))
    iban = text("iban")
    if iban:
        from cns_exchange.domain.identifiers import checked_iban

        shown = checked_iban(iban)
        if shown is None:
            raise ConfigError(_("{where}.iban '{iban}' is not a valid IBAN (country, length or check digits)")
                              .format(where=where, iban=iban), _("copy it again from the bank's statement"))
        iban = shown
    dieticians = raw.get("dieticians", {})
    if not isinstance(dieticians, dict):
        raise ConfigError(_("{where}.dieticians must be a table of provider code = name").format(where=where),
                          _('e.g. dieticians = { "123456" = "Anne Muller" }'))
    for code, name in dieticians.items():
        if not code.isascii() or not code.isdigit() or not isinstance(name, str) or not name.strip():
            raise ConfigError(_("{where}.dieticians: '{code}' must be a provider code (digits) with a name")
                              .format(where=where, code=code), _('e.g. "123456" = "Anne Muller"'))
    return Practice(text("name", required=True), tuple(line.strip() for line in address if line.strip()), text("phone"),
                    iban, {code: name.strip() for code, name in dieticians.items()})


@dataclass
class Settings:
    """Resolved settings for one run."""

    values: dict[str, object] = field(default_factory=lambda: {k: default for k, (_kind, default) in SETTINGS.items()})
    profile: str | None = None
    path: Path | None = None
    folder: Path = field(default_factory=config_dir)
    shared_file: bool = False  # the config file can be read by others
    practice: Practice | None = None  # the [practice] table, if any

    def __getattr__(self, name: str):
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def nomenclature_dirs(self) -> list[Path]:
        return [self.folder / "nomenclature"]

    @property
    def schema_dirs(self) -> list[Path]:
        return [self.folder / "schemas"]

    def remote_url(self) -> Remote:
        """Return the profile's remote; ConfigError if there is none."""
        if not self.values["remote"]:
            raise ConfigError(_("no remote is configured"),
                              _('set remote = "sftp://user@host:22" in the profile (cnsx config init)'))
        return parse_remote(str(self.values["remote"]), self._where("remote"))

    def local_dir(self, name: str) -> Path:
        """Return a local folder setting (outbox, inbox, archive, errors), created 0700."""
        value = self.values[name]
        folder = Path(value) if value else data_dir() / name
        from cns_exchange.fsutil import private_dir

        return private_dir(folder)

    def database_path(self) -> Path:
        value = self.values["database"]
        return Path(value) if value else data_dir() / "practice.sqlite"

    def _where(self, key: str) -> str:
        return f"{self.path}: {key}" if self.path else key


def load_settings(path: str | None = None, profile: str | None = None) -> Settings:
    """Read the config file (if any) and return the settings of the selected profile.

    ``path`` and ``profile`` are the command-line values (None when not given). Raises
    ConfigError for an unreadable file, bad TOML, an unknown profile or setting, a bad
    value, or a secret written in the file. Messages are shown in the settings' ``language``
    from then on (i18n.choose); until it is known, in the environment's.
    """
    i18n.choose(None)
    folder = config_dir()
    explicit = path or os.environ.get("CNSX_CONFIG")
    file = config_file(explicit)
    if explicit and not os.environ.get("CNSX_CONFIG_DIR"):
        folder = file.parent
    settings = Settings(folder=folder)
    profile = profile or os.environ.get("CNSX_PROFILE")
    raw: dict = {}
    if file.exists():
        try:
            text = file.read_text("utf-8")
            settings.shared_file = bool(file.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(_("{file}: cannot read ({error})").format(file=file, error=exc),
                              _("check the file's permissions")) from None
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(_("{file}: not valid TOML ({error})").format(file=file, error=exc), _("fix the syntax")) from None
        settings.path = file
    elif explicit:
        raise ConfigError(_("config file {file} does not exist").format(file=file), _("check --config / CNSX_CONFIG"))
    elif profile:
        raise ConfigError(_("profile '{profile}' asked for, but there is no config file at {file}").format(profile=profile, file=file),
                          _("create one (cnsx config init) or drop --profile"))
    _apply(settings, {k: v for k, v in raw.items() if k not in TOP_ONLY}, file, "")
    if "practice" in raw:
        settings.practice = parse_practice(raw["practice"], file)
    profiles = raw.get("profiles", {})
    if not isinstance(profiles, dict):
        raise ConfigError(_("{file}: 'profiles' must be a table").format(file=file), _("write [profiles.NAME] sections"))
    profile = profile or raw.get("default_profile")
    if profile:
        if profile not in profiles:
            known = ", ".join(sorted(profiles)) or _("none")
            raise ConfigError(_("{file}: no profile '{profile}' (profiles: {known})").format(file=file, profile=profile, known=known),
                              _("check --profile / CNSX_PROFILE"))
        if not isinstance(profiles[profile], dict):
            raise ConfigError(_("{file}: profiles.{profile} must be a table").format(file=file, profile=profile),
                              _("write it as [profiles.{profile}]").format(profile=profile))
        _apply(settings, profiles[profile], file, f"profiles.{profile}.")
        settings.profile = profile
    env = {key: os.environ[f"CNSX_{key.upper()}"] for key in SETTINGS if f"CNSX_{key.upper()}" in os.environ
           and key not in ("password", "key_passphrase", "columns")}
    _apply(settings, env, Path("environment"), "CNSX_", from_env=True)
    i18n.choose(settings.values["language"])   # type: ignore[arg-type]
    _check_exposure(settings, file)
    return settings


def _apply(settings: Settings, raw: dict, file: Path, prefix: str, from_env: bool = False) -> None:
    for key, value in raw.items():
        name = f"{prefix}{key.upper() if from_env else key}"
        if key not in SETTINGS:
            raise ConfigError(_("{file}: unknown setting {name}").format(file=file, name=name),
                              _("check the spelling; settings: {settings} (docs/cli.md)").format(settings=", ".join(sorted(SETTINGS))))
        kind = SETTINGS[key][0]
        settings.values[key] = _convert(kind, key, value, f"{file}: {name}", from_env)


def _convert(kind: str, key: str, value: object, where: str, from_env: bool) -> object:
    if kind == "int":
        try:
            number = int(value) if from_env else value
        except ValueError:
            number = None
        low, high = INT_RANGES[key]
        if not isinstance(number, int) or isinstance(number, bool) or number < low or (high is not None and number > high):
            if high is not None:
                wanted = _("{where} must be an integer from {low} to {high}").format(where=where, low=low, high=high)
            elif low == 0:
                wanted = _("{where} must be a non-negative integer").format(where=where)
            else:
                wanted = _("{where} must be a positive integer").format(where=where)
            raise ConfigError(wanted, _("fix the value"))
        return number
    if kind == "bool":
        if from_env:
            return str(value).lower() in ("1", "true", "yes")
        if not isinstance(value, bool):
            raise ConfigError(_("{where} must be true or false").format(where=where), _("fix the value"))
        return value
    if kind == "table":
        if not isinstance(value, dict) or not all(isinstance(k, str) and k.strip() and isinstance(v, str) and v.strip()
                                                  for k, v in value.items()):
            raise ConfigError(_("{where} must be a table of names").format(where=where),
                              _('e.g. [columns] then "N° dossier" = "request_ref"'))
        return dict(value)
    if key == "provider" and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(_("{where} must be a non-empty string").format(where=where), _("fix the value"))
    if kind == "path":
        return Path(value).expanduser().absolute()
    if kind == "secret":
        if value not in SECRET_SOURCES:
            raise ConfigError(_("{where}: secrets are never written in the config file").format(where=where),
                              _("write where it comes from instead: {sources}").format(sources=", ".join(SECRET_SOURCES)))
        return value
    if key == "after_fetch" and value not in AFTER_FETCH:
        raise ConfigError(_("{where} must be one of {values}").format(where=where, values=", ".join(AFTER_FETCH)),
                          _("fix the value"))
    if key == "language" and value not in i18n.LANGUAGES:
        raise ConfigError(_("{where} must be one of {values}").format(where=where, values=", ".join(i18n.LANGUAGES)),
                          _("fix the value"))
    if key == "remote":
        parse_remote(value, where)
    return value


def _check_exposure(settings: Settings, file: Path) -> None:
    """Refuse a config others can read that names a key with no passphrase source."""
    if settings.shared_file and settings.values["key_file"] and not settings.values["key_passphrase"]:
        raise ConfigError(
            _("{file} can be read by other users and names the key file {key_file} with no passphrase source")
            .format(file=file, key_file=settings.values["key_file"]),
            _('chmod 600 {file}, or protect the key with a passphrase and set key_passphrase = "env" (or keyring, prompt)')
            .format(file=file),
        )


#: The provider code ``cnsx config init`` writes when given none: a placeholder to fill in.
PLACEHOLDER_PROVIDER = "000000"

#: The commented starter config of ``cnsx config init`` (docs/cli.md, Configuration).
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


def write_starter_config(path: Path, provider: str = PLACEHOLDER_PROVIDER) -> None:
    """Write :data:`STARTER_CONFIG` for ``provider`` to ``path`` (0600, its folder made 0700),
    never over an existing file. Raises UsageError for a provider code that is not valid (it
    goes into the file as TOML text: only a valid code may) or a file already there."""
    from cns_exchange.errors import UsageError
    from cns_exchange.fsutil import private_dir

    if provider != PLACEHOLDER_PROVIDER:
        from cns_exchange.domain.identifiers import check_provider

        problems = check_provider(provider)
        if problems:
            raise UsageError(_("--provider: {problem}").format(problem=problems[0][1]),
                             _("pass the code the CNS issued to the practice (6 to 8 digits)"))
    if path.exists():
        raise UsageError(_("{file} exists already; cnsx config init never replaces it").format(file=path),
                         _("edit it, or pass --config NEW_PATH"))
    private_dir(path.parent)
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(STARTER_CONFIG.format(provider=provider))
