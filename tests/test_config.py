"""Config file, profiles and precedence (flag > environment > file > default)."""

from __future__ import annotations

import pytest

from cns_exchange.config import DEFAULT_MAX_XML_BYTES, load_settings
from cns_exchange.errors import ConfigError

CONFIG = """
provider = "111111"
max_xml_bytes = 1000
default_profile = "production"

[profiles.production]
provider = "222222"

[profiles.test]
provider = "333333"
max_xml_bytes = 2000
"""


def test_no_config_file_gives_defaults(isolated_config):
    settings = load_settings()
    assert settings.provider is None
    assert settings.max_xml_bytes == DEFAULT_MAX_XML_BYTES
    assert settings.nomenclature_dirs == [isolated_config / "nomenclature"]


def test_default_profile_env_and_flag(isolated_config, monkeypatch):
    (isolated_config / "config.toml").write_text(CONFIG)
    assert (load_settings().provider, load_settings().max_xml_bytes) == ("222222", 1000)
    monkeypatch.setenv("CNSX_PROFILE", "test")
    assert (load_settings().provider, load_settings().max_xml_bytes) == ("333333", 2000)
    assert load_settings(profile="production").provider == "222222"  # flag beats environment


def test_explicit_config_path(tmp_path, monkeypatch):
    path = tmp_path / "elsewhere.toml"
    path.write_text('provider = "444444"\n')
    assert load_settings(str(path)).provider == "444444"
    monkeypatch.setenv("CNSX_CONFIG", str(path))
    assert load_settings().provider == "444444"


@pytest.mark.parametrize("text, message", [
    ("max_xml_bytes = -1\n", "max_xml_bytes must be a positive integer"),
    ("profiles = 3\n", "'profiles' must be a table"),
    ("x = \n", "not valid TOML"),
])
def test_bad_config(isolated_config, text, message):
    (isolated_config / "config.toml").write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_settings()
    assert str(isolated_config / "config.toml") in info.value.message


def test_profile_without_file(isolated_config):
    with pytest.raises(ConfigError, match="no config file"):
        load_settings(profile="test")
