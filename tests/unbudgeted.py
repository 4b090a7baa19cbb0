"""The app as the clinical review tests use it: no card budget, so every card the
rules choose is shown and a test reads the card it is about, whatever else fires."""

from __future__ import annotations

import datetime as dt

from cds_service import fixtures as fx
from cds_service.app import create_app
from tests.conftest import TEST_SECRET
from tests.test_fixture_scenarios import SERVICE_IDS, hook_body


def unbudgeted_client(tmp_path_factory, name: str):
    app = create_app({"CDS_DATABASE_URL": f"sqlite:///{tmp_path_factory.mktemp(name)}/cds.db",
                      "CDS_AUTH_REQUIRED": "false", "CDS_PATIENT_HASH_SECRET": TEST_SECRET,
                      "CDS_ALLOWED_FHIR_SERVERS": "https://fhir.example.org/r4", "CDS_INFO_CARD_BUDGET": "1000",
                      "CDS_ROUTINE_CARD_BUDGET": "1000"})
    app.testing = True
    return app.test_client()


def fixture_cards(client, name: str, hook: str = "patient-view", today: dt.date | None = None) -> dict:
    """Card id -> card for fixture patient `name` on `hook`."""
    bundle = fx.load_patient(name, today=today or dt.date.today())
    resp = client.post(f"/cds-services/{SERVICE_IDS[hook]}", json=hook_body(bundle, hook))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return {c["source"]["topic"]["code"]: c for c in resp.get_json()["cards"]}
