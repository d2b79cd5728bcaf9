"""Configuration is declared in one place and documented in the README."""

import re
from pathlib import Path

import settings

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_configuration_table_is_generated_from_settings():
    text = README.read_text()
    table = re.search(r"<!-- settings-table -->\n(.*)\n<!-- /settings-table -->", text, re.S).group(1)
    assert table == settings.markdown_table(), "run: python -m scripts.readme_settings"


def test_environment_values_are_coerced_to_the_declared_types():
    config = settings.load({"TAIL_LOG_TTL": "7", "REDIS_TIMEOUT": "0.25", "METABASE_AUTH": "off"})
    assert config.TAIL_LOG_TTL == 7
    assert config.REDIS_TIMEOUT == 0.25
    assert config.auth_enabled is False


def test_empty_environment_gives_the_documented_defaults():
    assert settings.load({}) == settings.Settings()
