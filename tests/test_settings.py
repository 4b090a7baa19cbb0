"""Settings come from the environment; bad values fail loudly at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from cds_service.cli import settings_table
from cds_service.config import SANDBOX_FHIR_SERVER, SETTINGS, SettingsError, load_settings

README = Path(__file__).resolve().parents[1] / "README.md"


def test_production_defaults_are_closed():
    s = load_settings(environ={})
    assert s.profile == "production"
    assert s.auth_required is True
    assert s.allowed_fhir_servers == ()
    assert s.allow_loopback_http is False
    assert s.database_url.startswith("sqlite:///")


def test_development_profile_opens_what_the_sandbox_needs():
    s = load_settings(environ={"CDS_PROFILE": "development"})
    assert s.auth_required is False
    assert SANDBOX_FHIR_SERVER in s.allowed_fhir_servers
    assert s.allow_loopback_http is True


def test_environment_is_read_and_overrides_win():
    env = {"CDS_ALLOWED_FHIR_SERVERS": "https://a.example/fhir, https://b.example/r4", "CDS_FHIR_RETRIES": "5"}
    s = load_settings(environ=env)
    assert s.allowed_fhir_servers == ("https://a.example/fhir", "https://b.example/r4")
    assert s.fhir_retries == 5
    assert load_settings({"CDS_FHIR_RETRIES": "1"}, environ=env).fhir_retries == 1
    assert load_settings({"fhir_retries": 3}, environ=env).fhir_retries == 3


def test_explicit_setting_beats_the_development_default():
    s = load_settings(environ={"CDS_PROFILE": "development", "CDS_AUTH_REQUIRED": "true"})
    assert s.auth_required is True


@pytest.mark.parametrize("env", [
    {"CDS_AUTH_REQUIRED": "perhaps"},
    {"CDS_FHIR_RETRIES": "many"},
    {"CDS_PROFILE": "staging"},
    {"CDS_MAX_BODY_BYTES": "0"},
])
def test_bad_values_are_refused_with_the_setting_named(env):
    with pytest.raises(SettingsError, match=next(iter(env))):
        load_settings(environ=env)


def test_unknown_override_is_refused():
    with pytest.raises(SettingsError):
        load_settings({"CDS_NOPE": "1"}, environ={})


def test_readme_settings_table_is_current():
    """The README table is exactly what `cds-service settings` prints."""
    text = README.read_text()
    table = text.split("<!-- settings-table:start -->\n", 1)[1].split("\n<!-- settings-table:end -->", 1)[0]
    assert table == settings_table(), "run `cds-service settings` and paste it into the README"
    for setting in SETTINGS:
        assert f"| `{setting.env}` |" in table
