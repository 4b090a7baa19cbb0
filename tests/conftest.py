from __future__ import annotations

import datetime as dt

import pytest

from cds_service.app import create_app
from cds_service.config import load_settings

TODAY = dt.date(2025, 6, 1)
TEST_SECRET = "test-patient-hash-secret-0123456789abcdef"  # production needs CDS_PATIENT_HASH_SECRET


@pytest.fixture
def make_app(tmp_path):
    """Build an app on a fresh SQLite file; keyword overrides are settings."""

    def factory(**overrides):
        settings = {
            "CDS_DATABASE_URL": f"sqlite:///{tmp_path}/cds.db",
            "CDS_AUTH_REQUIRED": "false",
            "CDS_PATIENT_HASH_SECRET": TEST_SECRET,
            "CDS_ALLOWED_FHIR_SERVERS": "https://fhir.example.org/r4",
        }
        settings.update(overrides)
        app = create_app(settings)
        app.testing = True
        return app

    return factory


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def settings():
    return load_settings(environ={})


def coding(system, code, display=None):
    c = {"system": system, "code": code}
    if display:
        c["display"] = display
    return {"coding": [c]}
