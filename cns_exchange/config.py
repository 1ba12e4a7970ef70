"""Configuration: a TOML file with profiles, located by flag, environment or platformdirs.

Precedence is flag > environment > file > default. Only the settings the offline commands
need are read here; the transport adds its own keys to the same profiles.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from cns_exchange.errors import ConfigError

DEFAULT_MAX_XML_BYTES = 512 * 1024 * 1024
KNOWN_KEYS = {"provider", "max_xml_bytes", "default_profile", "profiles"}
PROFILE_KEYS = {"provider", "max_xml_bytes"}


def config_dir() -> Path:
    """Return the config folder: $CNSX_CONFIG_DIR, else the platform's user config folder."""
    env = os.environ.get("CNSX_CONFIG_DIR")
    if env:
        return Path(env)
    from platformdirs import user_config_dir

    return Path(user_config_dir("cnsx", appauthor=False))


@dataclass
class Settings:
    """Resolved settings for one run."""

    provider: str | None = None
    max_xml_bytes: int = DEFAULT_MAX_XML_BYTES
    profile: str | None = None
    path: Path | None = None
    folder: Path = field(default_factory=config_dir)

    @property
    def nomenclature_dirs(self) -> list[Path]:
        return [self.folder / "nomenclature"]

    @property
    def schema_dirs(self) -> list[Path]:
        return [self.folder / "schemas"]


def load_settings(path: str | None = None, profile: str | None = None) -> Settings:
    """Read the config file (if any) and return the settings of the selected profile.

    ``path`` and ``profile`` are the command-line values (None when not given). Raises
    ConfigError for an unreadable file, bad TOML, an unknown profile or a bad value.
    """
    folder = config_dir()
    explicit = path or os.environ.get("CNSX_CONFIG")
    file = Path(explicit) if explicit else folder / "config.toml"
    if explicit:
        folder = file.parent if not os.environ.get("CNSX_CONFIG_DIR") else folder
    settings = Settings(folder=folder)
    profile = profile or os.environ.get("CNSX_PROFILE")
    if not file.exists():
        if explicit:
            raise ConfigError(f"config file {file} does not exist", "check --config / CNSX_CONFIG")
        if profile:
            raise ConfigError(f"profile '{profile}' asked for, but there is no config file at {file}", "create one or drop --profile")
        return settings
    try:
        raw = tomllib.loads(file.read_text("utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read ({exc})", "check the file's permissions") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML ({exc})", "fix the syntax") from None
    settings.path = file
    _check_keys(raw, KNOWN_KEYS, file, "")
    _apply(settings, raw, file, "")
    profiles = raw.get("profiles", {})
    if not isinstance(profiles, dict):
        raise ConfigError(f"{file}: 'profiles' must be a table", "write [profiles.NAME] sections")
    profile = profile or raw.get("default_profile")
    if profile:
        if profile not in profiles:
            known = ", ".join(sorted(profiles)) or "none"
            raise ConfigError(f"{file}: no profile '{profile}' (profiles: {known})", "check --profile / CNSX_PROFILE")
        if not isinstance(profiles[profile], dict):
            raise ConfigError(f"{file}: profiles.{profile} must be a table", f"write it as [profiles.{profile}]")
        _check_keys(profiles[profile], PROFILE_KEYS, file, f"profiles.{profile}.")
        _apply(settings, profiles[profile], file, f"profiles.{profile}.")
        settings.profile = profile
    return settings


def _check_keys(raw: dict, known: set[str], file: Path, prefix: str) -> None:
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{file}: unknown setting {', '.join(prefix + k for k in unknown)}",
                          f"check the spelling; known: {', '.join(sorted(known))} (docs/cli.md)")


def _apply(settings: Settings, raw: dict, file: Path, prefix: str) -> None:
    if "provider" in raw:
        settings.provider = str(raw["provider"])
    if "max_xml_bytes" in raw:
        value = raw["max_xml_bytes"]
        if not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{file}: {prefix}max_xml_bytes must be a positive integer", "fix the value")
        settings.max_xml_bytes = value
