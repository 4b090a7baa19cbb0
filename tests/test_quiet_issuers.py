"""The quieting key is tied to the verified client: one trusted EHR (issuer B)
naming another's fhirServer and patient id cannot quiet that patient's cards
for the other (issuer A) with its own feedback. Without authentication the
key is as it was: fhirServer and patient id."""

from __future__ import annotations

import json

import sqlalchemy as sa

from cds_service.patient_key import patient_key
from cds_service.protocol.runtime import runtime
from cds_service.store import issued_cards
from jwt_for_tests import BASE, ISS, auth, client_key, token
from test_quiet_by_default import FB, FHIR, INFO_CARD, INFO_PATIENT, PV, cards_of, pv_body
from tests.conftest import TEST_SECRET

ISS_B = "https://clinic-b.example.org"


def two_issuer_app(make_app, tmp_path, key_a, key_b):
    trust = tmp_path / "issuers.json"
    trust.write_text(json.dumps({ISS: {"jwks": {"keys": [key_a[1]]}}, ISS_B: {"jwks": {"keys": [key_b[1]]}}}))
    return make_app(CDS_AUTH_REQUIRED="true", CDS_TRUSTED_ISSUERS=str(trust), CDS_PUBLIC_BASE_URL=BASE)


class Client:
    """One EHR: its issuer, key and tenant, signing each call."""

    def __init__(self, app, key, iss, tenant="hospital-a"):
        self.http, self.key, self.iss, self.tenant = app.test_client(), key, iss, tenant

    def headers(self, path):
        return auth(token(self.key, path, iss=self.iss, tenant=self.tenant))

    def cards(self, body):
        outer = self

        class Signed:  # cards_of posts with the test client; sign each call
            def post(self, path, json):
                return outer.http.post(path, json=json, headers=outer.headers(path))

        return cards_of(Signed(), body)

    def override_all(self, cards):
        feedback = [{"card": c["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-30T10:00:00Z"}
                    for c in cards.values()]
        resp = self.http.post(FB, json={"feedback": feedback}, headers=self.headers(FB))
        assert resp.status_code == 200 and resp.get_json()["stored"] == len(feedback), resp.get_data(as_text=True)


def test_another_issuer_naming_the_same_fhir_server_and_patient_quiets_nothing(make_app, tmp_path):
    key_a, key_b = client_key(), client_key()
    app = two_issuer_app(make_app, tmp_path, key_a, key_b)
    a, b = Client(app, key_a, ISS), Client(app, key_b, ISS_B)
    a_other_tenant = Client(app, key_a, ISS, tenant="hospital-b")
    body = pv_body(INFO_PATIENT, fhir_server=FHIR)
    assert INFO_CARD in a.cards(body)

    # B sends A's fhirServer and patient id, and overrides every card it is shown.
    b.override_all(b.cards(body))
    assert INFO_CARD not in b.cards(body)  # quiet for B itself
    assert INFO_CARD in a.cards(body)  # not for A
    a_other_tenant.override_all(a_other_tenant.cards(body))
    assert INFO_CARD in a.cards(body)  # nor by another tenant of A's issuer

    a.override_all(a.cards(body))  # A's own feedback still quiets A's card
    assert INFO_CARD not in a.cards(body)
    # A trailing slash on fhirServer is the same server.
    assert INFO_CARD not in a.cards(pv_body(INFO_PATIENT, fhir_server=FHIR + "/"))


def test_without_authentication_the_key_is_fhir_server_and_patient_id(make_app):
    app = make_app()
    body = pv_body(INFO_PATIENT, fhir_server=FHIR)
    resp = app.test_client().post(PV, json=body)
    assert resp.status_code == 200
    with runtime(app).store.engine.connect() as conn:
        keys = set(conn.execute(sa.select(issued_cards.c.patient_key)).scalars())
    assert keys == {patient_key(TEST_SECRET.encode(), FHIR, body["context"]["patientId"])}


def _signed_and_unsigned(make_app, tmp_path):
    """CDS_AUTH_REQUIRED=false with one trusted issuer: a client with its JWT, and one without."""
    key = client_key()
    trust = tmp_path / "issuers.json"
    trust.write_text(json.dumps({ISS: {"jwks": {"keys": [key[1]]}}}))
    app = make_app(CDS_TRUSTED_ISSUERS=str(trust), CDS_PUBLIC_BASE_URL=BASE)
    return Client(app, key, ISS), app.test_client()


def test_an_unsigned_call_cannot_use_a_signed_clients_key(make_app, tmp_path):
    # CDS_AUTH_REQUIRED=false: a call with a verified JWT and one without are two namespaces.
    signed, unsigned = _signed_and_unsigned(make_app, tmp_path)
    body = pv_body(INFO_PATIENT, fhir_server=FHIR)
    resp = unsigned.post(PV, json=body)
    feedback = [{"card": c["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-30T10:00:00Z"}
                for c in resp.get_json()["cards"]]
    assert unsigned.post(FB, json={"feedback": feedback}).status_code == 200
    assert INFO_CARD in signed.cards(body)


def test_feedback_on_another_clients_card_uuid_is_not_stored_and_quiets_nothing(make_app, tmp_path):
    """Issuer B (or another tenant of A's issuer) who learns a card uuid A was
    shown cannot quiet A's patient with it, nor pre-empt A's own entry."""
    key_a, key_b = client_key(), client_key()
    app = two_issuer_app(make_app, tmp_path, key_a, key_b)
    a, b = Client(app, key_a, ISS), Client(app, key_b, ISS_B)
    a_other_tenant = Client(app, key_a, ISS, tenant="hospital-b")
    body = pv_body(INFO_PATIENT, fhir_server=FHIR)
    card = a.cards(body)[INFO_CARD]
    entry = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-30T10:00:00Z"}
    for other in (b, a_other_tenant):
        resp = other.http.post(FB, json={"feedback": [entry]}, headers=other.headers(FB))
        # As for a card this service never issued to the caller, but nothing is stored.
        assert resp.status_code == 200 and resp.get_json() == {"stored": 0, "duplicates": 0, "unknownCards": 1}
    assert runtime(app).store.feedback_rows(card["uuid"]) == []
    assert INFO_CARD in a.cards(body)  # A's patient is not quieted

    # Control: A's own entry, identical to the ones refused, is stored and quiets.
    resp = a.http.post(FB, json={"feedback": [entry]}, headers=a.headers(FB))
    assert resp.get_json() == {"stored": 1, "duplicates": 0, "unknownCards": 0}
    assert INFO_CARD not in a.cards(body)


def test_an_unsigned_caller_cannot_give_feedback_on_a_signed_clients_card(make_app, tmp_path):
    # CDS_AUTH_REQUIRED=false: the unsigned caller is a client of its own.
    signed, unsigned = _signed_and_unsigned(make_app, tmp_path)
    body = pv_body(INFO_PATIENT, fhir_server=FHIR)
    card = signed.cards(body)[INFO_CARD]
    entry = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-30T10:00:00Z"}
    assert unsigned.post(FB, json={"feedback": [entry]}).get_json()["unknownCards"] == 1
    assert INFO_CARD in signed.cards(body)
    # Control: unsigned cards take unsigned feedback.
    own = cards_of(unsigned, body)[INFO_CARD]
    resp = unsigned.post(FB, json={"feedback": [{**entry, "card": own["uuid"]}]})
    assert resp.get_json() == {"stored": 1, "duplicates": 0, "unknownCards": 0}
    assert INFO_CARD not in cards_of(unsigned, body)


def test_another_clients_feedback_sent_to_another_service_cannot_pre_empt_the_real_entry(make_app, tmp_path):
    key_a, key_b = client_key(), client_key()
    app = two_issuer_app(make_app, tmp_path, key_a, key_b)
    a, b = Client(app, key_a, ISS), Client(app, key_b, ISS_B)
    body = pv_body(INFO_PATIENT, fhir_server=FHIR)
    card = a.cards(body)[INFO_CARD]
    entry = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-30T10:00:00Z"}
    wrong = "/cds-services/osteoporosis-order-sign/feedback"
    resp = b.http.post(wrong, json={"feedback": [entry]}, headers=b.headers(wrong))
    assert resp.get_json() == {"stored": 0, "duplicates": 0, "unknownCards": 1}
    # Control: A's own entry on the right service is stored (not a "duplicate") and quiets.
    resp = a.http.post(FB, json={"feedback": [entry]}, headers=a.headers(FB))
    assert resp.get_json() == {"stored": 1, "duplicates": 0, "unknownCards": 0}
    assert INFO_CARD not in a.cards(body)
