"""Settings come from the environment; bad values fail loudly at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from cds_service.cli import settings_table
from cds_service.config import SANDBOX_FHIR_SERVER, SETTINGS, SettingsError, _float, load_settings

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
    # Non-finite numbers, for every number setting.
    *[{setting.env: word} for setting in SETTINGS if setting.parse is _float for word in ("inf", "-inf", "nan")],
    {"CDS_DATABASE_TIMEOUT_SECONDS": "0"},
    # Ranges and orders that cannot hold.
    {"CDS_CALCIUM_UPPER_MG_DL": "8.5"},
    {"CDS_CALCIUM_UPPER_MG_DL": "7", "CDS_CALCIUM_LOWER_MG_DL": "9"},
    {"CDS_CALCIUM_LOWER_MG_DL": "0"},
    {"CDS_DXA_INTERVAL_MONTHS": "6"},
    {"CDS_OSTEOPENIA_DXA_YEARS": "5,3,2"},
    {"CDS_OSTEOPENIA_DXA_YEARS": "0,3,5"},
    # Database URLs the service cannot use: refused by every command and by create_app.
    {"CDS_DATABASE_URL": "foo://"},
    {"CDS_DATABASE_URL": "postgresql+foo://u@db.example/cds"},
    {"CDS_DATABASE_URL": "sqlite://"},
    {"CDS_DATABASE_URL": "sqlite:///:memory:"},
    {"CDS_DATABASE_URL": "sqlite:///file::memory:?uri=true"},
    # Beyond PostgreSQL's 32-bit millisecond timeouts (every call would be 503).
    {"CDS_DATABASE_TIMEOUT_SECONDS": "2200000"},
    {"CDS_DATABASE_TIMEOUT_SECONDS": "1e9"},
    {"CDS_DATABASE_TIMEOUT_SECONDS": "3601"},
    # A plain-http FHIR server every fetch would refuse (412), but for loopback in development.
    {"CDS_ALLOWED_FHIR_SERVERS": "http://fhir.internal.example/r4"},
    {"CDS_ALLOWED_FHIR_SERVERS": "https://fhir.example.org/r4,http://127.0.0.1:8081/fhir"},
    {"CDS_PROFILE": "development", "CDS_ALLOWED_FHIR_SERVERS": "http://fhir.internal.example/r4"},
    # CORS origins a browser's Origin header could never match.
    {"CDS_CORS_ORIGINS": "https://ehr.example.org/"},
    {"CDS_CORS_ORIGINS": "ehr.example.org"},
    {"CDS_CORS_ORIGINS": "https://ehr.example.org/app"},
    {"CDS_CORS_ORIGINS": "https://EHR.example.org"},
    {"CDS_CORS_ORIGINS": "https://ehr.example.org:443"},
    {"CDS_CORS_ORIGINS": "https://*.example.org"},
    {"CDS_JWT_MAX_LIFETIME_SECONDS": "0"},
    {"CDS_JWT_MAX_LIFETIME_SECONDS": "864000"},
])
def test_bad_values_are_refused_with_the_setting_named(env):
    with pytest.raises(SettingsError, match=list(env)[-1]):
        load_settings(environ=env)


def test_bad_entries_are_named_with_the_fix():
    with pytest.raises(SettingsError) as info:
        load_settings(environ={"CDS_CORS_ORIGINS": "https://a.example.org,https://ehr.example.org/",
                               "CDS_ALLOWED_FHIR_SERVERS": "https://ok.example/r4,http://fhir.internal.example/r4",
                               "CDS_DATABASE_TIMEOUT_SECONDS": "1e9"})
    text = str(info.value)
    assert "entry 'https://ehr.example.org/'" in text and "write 'https://ehr.example.org'" in text
    assert "entry 'http://fhir.internal.example/r4': plain http is never fetched" in text
    assert "must be at most 3600 s" in text


@pytest.mark.parametrize("env", [
    # Controls: what the checks above must keep accepting.
    {"CDS_DATABASE_TIMEOUT_SECONDS": "3600"},
    {"CDS_DATABASE_TIMEOUT_SECONDS": "0.5"},
    {"CDS_ALLOWED_FHIR_SERVERS": "https://fhir.example.org/r4"},
    {"CDS_ALLOWED_FHIR_SERVERS": "http://127.0.0.1:8081/fhir", "CDS_ALLOW_LOOPBACK_HTTP": "true"},
    {"CDS_PROFILE": "development", "CDS_ALLOWED_FHIR_SERVERS": "http://localhost:8081/fhir"},
    {"CDS_CORS_ORIGINS": "*"},
    {"CDS_CORS_ORIGINS": "https://ehr.example.org, http://localhost:3000,http://[::1]:8080"},
    {"CDS_CORS_ORIGINS": ""},
    {"CDS_JWT_MAX_LIFETIME_SECONDS": "300"},
])
def test_good_values_are_accepted(env):
    load_settings(environ=env)


def test_the_app_factory_refuses_an_unusable_database_url_in_one_line(tmp_path):
    from cds_service.app import create_app

    for url, expected in (("foo://", "foo databases are not supported"),
                          ("sqlite://", "an in-memory SQLite database is not supported")):
        with pytest.raises(SettingsError) as caught:
            create_app({"CDS_DATABASE_URL": url, "CDS_PATIENT_HASH_SECRET": "s" * 40})
        assert caught.value.problems == [f"CDS_DATABASE_URL: {caught.value.problems[0].split(': ', 1)[1]}"]
        assert expected in str(caught.value)


def test_the_defaults_pass_the_range_checks():
    s = load_settings(environ={})
    assert s.calcium_lower_mg_dl < s.calcium_upper_mg_dl and s.dxa_duplicate_months <= s.dxa_interval_months
    assert load_settings(environ={"CDS_CALCIUM_LOWER_MG_DL": "8.6", "CDS_CALCIUM_UPPER_MG_DL": "10.2",
                                  "CDS_OSTEOPENIA_DXA_YEARS": "2,2,5"}).calcium_upper_mg_dl == 10.2


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
