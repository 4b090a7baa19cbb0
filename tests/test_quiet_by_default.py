"""Quiet by default through HTTP (issue 12): feedback quiets a card for that
patient, critical cards never, a new trigger wakes it, other patients are
untouched; the info-card budget. Two app instances share one database
(SQLite file, and PostgreSQL when CDS_TEST_POSTGRES_URL is set), as replicas do.

The passing of time is simulated by moving the stored quieting rows back,
as if the feedback had been given that many days ago.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import uuid

import pytest
import sqlalchemy as sa

from cds_service import fixtures as fx
from cds_service.protocol.runtime import runtime
from cds_service.store import quieted_cards
from tests.conftest import TEST_SECRET

PV = "/cds-services/osteoporosis-patient-view"
FB = PV + "/feedback"
FHIR = "https://fhir.example.org/r4"
PG_URL = os.environ.get("CDS_TEST_POSTGRES_URL")
TODAY = dt.date.today()  # the hooks evaluate on today's date; fixtures are shifted to it

# Fixture patients and a card each gets on patient-view today.
INFO_PATIENT, INFO_CARD = "tx-bp-postmenopausal-osteoporosis", "C-TX-BP"
WARNING_PATIENT, WARNING_CARD = "c-tx-anabolic-man-recent-vertebral-fracture", "C-TX-ANABOLIC"
# A warning card, a test card and routine cards, and no fall or fracture in the last 12 months
# (after one, the falls card ranks as a test card: test_review2_edge_cases).
BUDGET_PATIENT = "c-safe-anabolic-contra-romosozumab-man"
CRITICAL_PATIENT, CRITICAL_CARD = "c-dmab-overdue-7-months-1-week", "C-DMAB-OVERDUE"
VITD_PATIENT, VITD_CARD = "c-vitd-low-insufficient-20-ng", "C-VITD-LOW"


def pv_body(name: str, *, patient_id: str | None = None, fhir_server: str = FHIR, extra: list | None = None):
    prefetch = fx.prefetch_from_bundle(fx.load_patient(name, today=TODAY))
    if patient_id:  # the same chart under another patient's id, references included
        old = prefetch["patient"]["id"]
        prefetch = json.loads(json.dumps(prefetch).replace(f'"Patient/{old}"', f'"Patient/{patient_id}"'))
        prefetch["patient"]["id"] = patient_id
    for resource in extra or ():
        key = {"Observation": "observations", "Condition": "conditions"}[resource["resourceType"]]
        prefetch[key]["entry"].append({"resource": resource})
    return {"hookInstance": str(uuid.uuid4()), "hook": "patient-view", "fhirServer": fhir_server,
            "context": {"patientId": prefetch["patient"]["id"], "userId": "Practitioner/example"},
            "prefetch": prefetch}


def cards_of(client, body) -> dict[str, dict]:
    resp = client.post(PV, json=copy.deepcopy(body) | {"hookInstance": str(uuid.uuid4())})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return {c["source"]["topic"]["code"]: c for c in resp.get_json()["cards"]}


def send_feedback(client, card: dict, outcome: str) -> None:
    entry = {"card": card["uuid"], "outcome": outcome, "outcomeTimestamp": "2026-01-01T10:00:00Z"}
    if outcome == "overridden":
        entry["overrideReason"] = {"reason": card["overrideReasons"][0]} if card.get("overrideReasons") else {}
    else:
        entry["acceptedSuggestions"] = [{"id": card["suggestions"][0]["uuid"]}] if card.get("suggestions") else []
    resp = client.post(FB, json={"feedback": [entry]})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json()["unknownCards"] == 0


def age_feedback(app, days: int, *, cards_too: bool = False) -> None:
    """As if every feedback so far had been given `days` earlier; with
    `cards_too`, the cards acted on were issued then as well (so data dated
    after that is new to the clinician). The fixture's own data must be older
    than that, or it would count as a new trigger."""
    engine = runtime(app).store.engine
    delta = dt.timedelta(days=days)
    with engine.begin() as conn:
        for row in conn.execute(sa.select(quieted_cards)).mappings().all():
            conn.execute(quieted_cards.update().where(quieted_cards.c.id == row["id"]).values(
                issued_at=row["issued_at"] - (delta if cards_too else dt.timedelta()),
                decided_at=row["decided_at"] - delta))


# These tests are about quieting: routine cards compete on value alone here (their
# turn-taking is tested on its own below).
NO_ROUTINE_TURNS = {"CDS_ROUTINE_CARD_BUDGET": "2"}


@pytest.fixture(params=["sqlite", "postgresql"])
def two_apps(request, make_app, tmp_path):
    """Two app instances (replicas) sharing one database."""
    if request.param == "sqlite":
        yield make_app(**NO_ROUTINE_TURNS), make_app(**NO_ROUTINE_TURNS)
        return
    if not PG_URL:
        pytest.skip("CDS_TEST_POSTGRES_URL not set (no PostgreSQL reachable)")
    schema = f"q_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    apps = make_app(CDS_DATABASE_URL=url, **NO_ROUTINE_TURNS), make_app(CDS_DATABASE_URL=url, **NO_ROUTINE_TURNS)
    try:
        yield apps
    finally:
        for app in apps:
            runtime(app).store.engine.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.mark.parametrize("outcome", ["overridden", "accepted"])
def test_feedback_quiets_the_card_for_that_patient_only(two_apps, outcome):
    a, b = (app.test_client() for app in two_apps)
    body = pv_body(INFO_PATIENT)
    first = cards_of(a, body)
    assert INFO_CARD in first
    send_feedback(b, first[INFO_CARD], outcome)  # feedback reaches the other replica

    for client in (a, b):
        again = cards_of(client, body)
        assert INFO_CARD not in again
        # The budget slot it freed goes to the next info card.
        assert len([c for c in again.values() if c["indicator"] == "info"]) == len(
            [c for c in first.values() if c["indicator"] == "info"])
    # Another patient, and the same patient id on another FHIR server, still get it.
    assert INFO_CARD in cards_of(a, pv_body(INFO_PATIENT, patient_id="someone-else"))
    assert INFO_CARD in cards_of(b, pv_body(INFO_PATIENT, fhir_server="https://other.example.org/fhir"))


def test_critical_card_is_never_quieted(two_apps):
    a, b = (app.test_client() for app in two_apps)
    body = pv_body(CRITICAL_PATIENT)
    card = cards_of(a, body)[CRITICAL_CARD]
    assert card["indicator"] == "critical"
    send_feedback(b, card, "overridden")
    assert CRITICAL_CARD in cards_of(b, body)
    send_feedback(a, cards_of(a, body)[CRITICAL_CARD], "accepted")
    assert CRITICAL_CARD in cards_of(a, body)
    with runtime(two_apps[0]).store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(quieted_cards)).scalar() == 0


def test_new_trigger_after_the_override_brings_the_card_back(two_apps):
    a, b = (app.test_client() for app in two_apps)
    body = pv_body(VITD_PATIENT)
    card = cards_of(a, body)[VITD_CARD]
    assert card["indicator"] == "info"
    send_feedback(a, card, "overridden")
    age_feedback(two_apps[0], 10, cards_too=True)  # the fixture's newest data is older than that
    assert VITD_CARD not in cards_of(b, body)  # time alone wakes nothing

    yesterday = (TODAY - dt.timedelta(days=1)).isoformat()
    lab = next(e["resource"] for e in body["prefetch"]["observations"]["entry"]
               if e["resource"]["code"]["coding"][0]["code"] == "62292-8")
    new_lab = dict(copy.deepcopy(lab), id="lab-25ohd-new", effectiveDateTime=yesterday,
                   valueQuantity=dict(lab["valueQuantity"], value=22))
    back = cards_of(b, pv_body(VITD_PATIENT, extra=[new_lab]))
    assert VITD_CARD in back
    assert yesterday in back[VITD_CARD]["detail"]  # the new lab is what the card used
    # The other replica sees the same.
    assert VITD_CARD in cards_of(a, pv_body(VITD_PATIENT, extra=[new_lab]))


def test_quiet_periods_info_180_days_warning_30(two_apps):
    a, _ = (app.test_client() for app in two_apps)
    info_body, warning_body = pv_body(INFO_PATIENT), pv_body(WARNING_PATIENT)
    send_feedback(a, cards_of(a, info_body)[INFO_CARD], "overridden")
    warning = cards_of(a, warning_body)[WARNING_CARD]
    assert warning["indicator"] == "warning"
    send_feedback(a, warning, "overridden")
    age_feedback(two_apps[0], 29)
    assert WARNING_CARD not in cards_of(a, warning_body)
    age_feedback(two_apps[0], 2)  # 31 days
    assert WARNING_CARD in cards_of(a, warning_body)
    assert INFO_CARD not in cards_of(a, info_body)
    age_feedback(two_apps[0], 148)  # 179 days
    assert INFO_CARD not in cards_of(a, info_body)
    age_feedback(two_apps[0], 2)  # 181 days
    assert INFO_CARD in cards_of(a, info_body)


def test_quiet_periods_are_settings(make_app):
    client = make_app(CDS_QUIET_INFO_DAYS="0").test_client()
    body = pv_body(INFO_PATIENT)
    send_feedback(client, cards_of(client, body)[INFO_CARD], "overridden")
    assert INFO_CARD in cards_of(client, body)  # 0: feedback never quiets info cards


def test_order_hooks_are_never_quieted(client):
    """An order hook's card answers the order being placed now."""
    bundle = fx.load_patient("c-safe-renal-alendronate-egfr-34", today=TODAY)
    prefetch = fx.prefetch_from_bundle(bundle)
    body = {"hookInstance": str(uuid.uuid4()), "hook": "order-sign", "fhirServer": FHIR,
            "context": {"patientId": prefetch["patient"]["id"], "userId": "Practitioner/example",
                        "draftOrders": fx.draft_orders_bundle(bundle)},
            "prefetch": prefetch}
    url = "/cds-services/osteoporosis-order-sign"
    cards = {c["source"]["topic"]["code"]: c for c in client.post(url, json=body).get_json()["cards"]}
    assert cards, "the fixture fires an order-sign card"
    card_id, card = next(iter(cards.items()))
    resp = client.post(url + "/feedback", json={"feedback": [
        {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-01-01T10:00:00Z"}]})
    assert resp.status_code == 200
    again = client.post(url, json=dict(body, hookInstance=str(uuid.uuid4()))).get_json()["cards"]
    assert card_id in {c["source"]["topic"]["code"] for c in again}


def test_info_budget_keeps_the_most_valuable_and_never_drops_warnings(make_app):
    body = pv_body(BUDGET_PATIENT)
    everything = cards_of(make_app(CDS_INFO_CARD_BUDGET="100", CDS_ROUTINE_CARD_BUDGET="100").test_client(), body)
    info = [cid for cid, c in everything.items() if c["indicator"] == "info"]
    assert len(info) > 2, "the fixture fires more info cards than the default budget"

    default = cards_of(make_app(**NO_ROUTINE_TURNS).test_client(), body)
    from cds_service.rules.catalogue import value_rank

    assert [cid for cid, c in default.items() if c["indicator"] == "info"] == sorted(info, key=value_rank)[:2]
    assert WARNING_CARD in default

    none = cards_of(make_app(CDS_INFO_CARD_BUDGET="0").test_client(), body)
    assert set(none) == {cid for cid, c in everything.items() if c["indicator"] != "info"}


def test_every_card_links_to_its_guidance_page(make_app):
    client = make_app(CDS_PUBLIC_BASE_URL="https://cds.example.org/").test_client()
    for card_id, card in cards_of(client, pv_body(WARNING_PATIENT)).items():
        link = card["links"][-1]
        assert link["type"] == "absolute"
        assert link["url"] == f"https://cds.example.org/guidance/{card_id}"
        assert client.get(link["url"].removeprefix("https://cds.example.org")).status_code == 200
    # Without CDS_PUBLIC_BASE_URL: the request's own root.
    plain = make_app().test_client()
    card = next(iter(cards_of(plain, pv_body(INFO_PATIENT)).values()))
    assert card["links"][-1]["url"].startswith("http://localhost/guidance/")


def test_production_refuses_to_start_without_the_secret(tmp_path):
    from cds_service.app import create_app
    from cds_service.config import SettingsError

    db = f"sqlite:///{tmp_path}/p.db"
    with pytest.raises(SettingsError, match="CDS_PATIENT_HASH_SECRET"):
        create_app({"CDS_DATABASE_URL": db})
    with pytest.raises(SettingsError, match="at least 32"):
        create_app({"CDS_DATABASE_URL": db, "CDS_PATIENT_HASH_SECRET": "short"})
    create_app({"CDS_DATABASE_URL": db, "CDS_PATIENT_HASH_SECRET": TEST_SECRET})


def test_serve_refuses_to_start_without_the_secret(monkeypatch, capsys):
    from cds_service.cli import main

    monkeypatch.delenv("CDS_PATIENT_HASH_SECRET", raising=False)
    monkeypatch.delenv("CDS_PROFILE", raising=False)
    assert main(["serve", "--port", "1"]) == 2
    assert "CDS_PATIENT_HASH_SECRET" in capsys.readouterr().err


def test_development_secret_survives_a_restart(tmp_path):
    """The development profile keeps its secret beside the SQLite file, so a
    restarted service (or another worker) still knows the quieted cards."""
    from cds_service.app import create_app

    settings = {"CDS_PROFILE": "development", "CDS_DATABASE_URL": f"sqlite:///{tmp_path}/dev.db"}
    first = create_app(settings).test_client()
    body = pv_body(INFO_PATIENT)
    send_feedback(first, cards_of(first, body)[INFO_CARD], "overridden")
    secret_file = tmp_path / "dev.db.patient-hash-secret"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    restarted = create_app(settings).test_client()
    assert INFO_CARD not in cards_of(restarted, body)


def test_purge_deletes_by_age(make_app, tmp_path, monkeypatch, capsys):
    from cds_service.cli import main
    from cds_service.store import feedback, issued_cards

    app = make_app()
    client = app.test_client()
    body = pv_body(INFO_PATIENT)
    send_feedback(client, cards_of(client, body)[INFO_CARD], "overridden")
    engine = runtime(app).store.engine
    old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=800)
    with engine.begin() as conn:  # the first call's cards and feedback become 800 days old
        conn.execute(issued_cards.update().values(issued_at=old))
        conn.execute(feedback.update().values(received_at=old))
        conn.execute(quieted_cards.update().values(decided_at=old))
    cards_of(client, body)  # fresh cards, kept

    monkeypatch.setenv("CDS_DATABASE_URL", f"sqlite:///{tmp_path}/cds.db")
    assert main(["purge"]) == 0
    deleted = json.loads(capsys.readouterr().out)["deleted"]
    assert deleted["feedback"] == 1 and deleted["quietedCards"] == 1 and deleted["issuedCards"] >= 1
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(feedback)).scalar() == 0
        kept = conn.execute(sa.select(issued_cards.c.issued_at)).scalars().all()
    assert kept and all(t.replace(tzinfo=dt.timezone.utc) > old for t in kept)


def test_store_down_shows_every_card_rather_than_none(app, monkeypatch):
    def broken(*args, **kwargs):
        raise sa.exc.OperationalError("SELECT", {}, Exception("database is down"))

    monkeypatch.setattr(runtime(app).store, "quiet_marks", broken)
    assert INFO_CARD in cards_of(app.test_client(), pv_body(INFO_PATIENT))


# --- "New trigger" per card (second-pass 7): what wakes a quieted card, and what does not ---

def _obs(oid, code, value, unit, day, subject):
    return {"resourceType": "Observation", "id": oid, "status": "final", "subject": {"reference": subject},
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]}, "effectiveDateTime": day,
            "valueQuantity": {"value": value, "unit": unit}}


def _condition(cid, code, day, subject):
    return {"resourceType": "Condition", "id": cid, "subject": {"reference": subject}, "onsetDateTime": day,
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": code}]}}


@pytest.mark.parametrize("patient,card_id,same_reason,new_reason", [
    # a repeat DXA is no new reason to advise exercise; a fall is
    ("c-exercise-osteopenia-no-spinal-precautions", "C-EXERCISE",
     lambda s, d: _obs("dxa-new", "38267-1", -1.9, "{T-score}", d, s), lambda s, d: _condition("fall", "Z91.81", d, s)),
    # a repeat DXA is no new reason for calcium and vitamin D; a new fracture is
    ("tx-bp-postmenopausal-osteoporosis", "C-SUPP-CAVD",
     lambda s, d: _obs("dxa-new", "38267-1", -2.8, "{T-score}", d, s), lambda s, d: _condition("vfx", "S32.010A", d, s)),
    # a re-recorded smoking status is no new reason to repeat the advice; a new alcohol diagnosis is
    ("c-lifestyle-smoker-osteoporosis", "C-LIFESTYLE",
     lambda s, d: {**_obs("smoke-new", "72166-2", 0, "", d, s), "valueQuantity": None,
                   "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "449868002"}]}},
     lambda s, d: _condition("alc", "F10.10", d, s)),
    # on treatment: a normal calcium wakes nothing, a new low one is the new trigger
    ("c-mon-ontx-low-calcium-on-denosumab", "C-MON-ONTX",
     lambda s, d: _obs("egfr-new", "98979-8", 70, "mL/min/{1.73_m2}", d, s),
     lambda s, d: _obs("ca-new", "17861-6", 7.9, "mg/dL", d, s)),
])
def test_each_card_wakes_on_its_own_new_trigger(make_app, patient, card_id, same_reason, new_reason):
    app = make_app(CDS_INFO_CARD_BUDGET="1000", CDS_ROUTINE_CARD_BUDGET="1000")
    client = app.test_client()
    body = pv_body(patient)
    subject = f"Patient/{body['context']['patientId']}"
    send_feedback(client, cards_of(client, body)[card_id], "overridden")
    age_feedback(app, 10, cards_too=True)  # the fixture's own data is older than that
    yesterday = (TODAY - dt.timedelta(days=1)).isoformat()
    assert card_id not in cards_of(client, pv_body(patient, extra=[same_reason(subject, yesterday)]))
    assert card_id in cards_of(client, pv_body(patient, extra=[new_reason(subject, yesterday)]))


def test_routine_cards_wait_for_decision_cards_and_take_turns(make_app):
    """A routine card (calcium and vitamin D, exercise, falls, lifestyle) is held
    while a drug-decision or test card is shown, and at most one is shown per
    chart open; it comes back when nothing more valuable is on screen."""
    from cds_service.rules.catalogue import is_routine

    body = pv_body(BUDGET_PATIENT)
    everything = cards_of(make_app(CDS_INFO_CARD_BUDGET="100", CDS_ROUTINE_CARD_BUDGET="100").test_client(), body)
    info = [cid for cid, c in everything.items() if c["indicator"] == "info"]
    routine = [cid for cid in info if is_routine(cid)]
    assert routine and len(routine) < len(info), "the fixture fires routine and decision info cards"
    default = cards_of(make_app().test_client(), body)
    assert not any(is_routine(cid) for cid in default)
    assert WARNING_CARD in default
    # Only routine cards chosen (a treated patient): one of them per chart open (whose turn it is today).

    only_routine = pv_body("c-supp-cavd-statements-completed")
    chosen = cards_of(make_app(CDS_INFO_CARD_BUDGET="100", CDS_ROUTINE_CARD_BUDGET="100").test_client(),
                      only_routine)
    assert len(chosen) >= 2 and all(is_routine(cid) for cid in chosen)
    shown = cards_of(make_app().test_client(), only_routine)
    assert len(shown) == 1 and set(shown) <= set(chosen)
    assert len(cards_of(make_app(CDS_ROUTINE_CARD_BUDGET="2").test_client(), only_routine)) == 2


def test_routine_cards_take_turns_by_day():
    """Unit level (the day is an argument): over as many days as there are
    routine cards, each is first in line once; decision cards keep their place."""
    from cds_service.card_policy import CardPolicy, apply
    from cds_service.rules.base import Finding

    findings = [Finding("C-TX-BP"), Finding("C-SUPP-CAVD"), Finding("C-EXERCISE"), Finding("C-FALLS")]
    policy = CardPolicy(info_budget=2, routine_budget=1)
    routine_only = findings[1:]
    firsts = set()
    for offset in range(3):
        day = dt.date(2026, 1, 1) + dt.timedelta(days=offset)
        shown, held = apply(routine_only, day, policy, lambda f: "info")
        assert len(shown) == 1 and len(held) == 2
        firsts.add(shown[0].card_id)
        with_decision, _ = apply(findings, day, policy, lambda f: "info")
        assert [f.card_id for f in with_decision] == ["C-TX-BP"]
    assert firsts == {"C-SUPP-CAVD", "C-EXERCISE", "C-FALLS"}


# --- A new trigger by content (review 21, second-pass 7: "a new diagnosis, a lab crossing a
# threshold"): coded data the card acted on did not rest on wakes it, dated or not ---

def _coded(cid, code, subject, **dates):
    return {"resourceType": "Condition", "id": cid, "subject": {"reference": subject},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": code}]}, **dates}


def _back_dated(cid, code, subject):
    """Entered today with an onset years ago: how EHRs back-enter a history."""
    return _coded(cid, code, subject, onsetDateTime="2019-05-01", recordedDate=TODAY.isoformat())


def _quieted(a, b, patient: str, card_id: str) -> str:
    """`card_id` overridden for `patient` through client `a`, and quiet at the next view of the
    same chart through `b`; returns the patient's reference."""
    body = pv_body(patient)
    send_feedback(a, cards_of(a, body)[card_id], "overridden")
    assert card_id not in cards_of(b, body)
    return f"Patient/{body['context']['patientId']}"


def test_a_back_dated_diagnosis_the_card_rests_on_wakes_it(two_apps):
    """A vertebral fracture from 2019 entered today: older than the card acted on, so no
    newer date, but the drug card now rests on it. An unrelated diagnosis, entered the
    same way, wakes nothing."""
    a, b = (app.test_client() for app in two_apps)
    subject = _quieted(a, b, INFO_PATIENT, INFO_CARD)
    assert INFO_CARD not in cards_of(b, pv_body(INFO_PATIENT, extra=[_back_dated("htn", "I10", subject)]))
    back = cards_of(b, pv_body(INFO_PATIENT, extra=[_back_dated("vfx", "S32.010A", subject)]))
    assert INFO_CARD in back
    assert "S32.010A" in back[INFO_CARD]["detail"]  # the new diagnosis is what the card rests on
    assert INFO_CARD in cards_of(a, pv_body(INFO_PATIENT, extra=[_back_dated("vfx", "S32.010A", subject)]))
    # Acted on again, with the fracture: quiet again for that chart, and its follow-up visit's
    # code (the same fracture) wakes nothing.
    send_feedback(a, back[INFO_CARD], "accepted")
    assert INFO_CARD not in cards_of(b, pv_body(INFO_PATIENT, extra=[_back_dated("vfx", "S32.010A", subject)]))
    assert INFO_CARD not in cards_of(b, pv_body(INFO_PATIENT, extra=[_back_dated("vfx", "S32.010A", subject),
                                                                     _back_dated("vfx-d", "S32.010D", subject)]))


def test_an_undated_diagnosis_the_card_rests_on_wakes_it(make_app):
    """C-LIFESTYLE wakes on a new alcohol diagnosis (its rule's trigger): one with no date
    at all (no onset, no recordedDate) had no date to be newer. An undated unrelated one
    wakes nothing."""
    client = make_app(CDS_INFO_CARD_BUDGET="1000", CDS_ROUTINE_CARD_BUDGET="1000").test_client()
    patient, card_id = "c-lifestyle-smoker-osteoporosis", "C-LIFESTYLE"
    subject = _quieted(client, client, patient, card_id)
    assert card_id not in cards_of(client, pv_body(patient, extra=[_coded("htn", "I10", subject)]))
    back = cards_of(client, pv_body(patient, extra=[_coded("alc", "F10.10", subject)]))
    assert card_id in back and "F10.10" in back[card_id]["detail"]


def test_feedback_stored_before_the_keys_keeps_the_date_alone(make_app):
    """A quieting row from before migration 0004 (no trigger_keys): a back-dated diagnosis
    does not wake the card (it has no newer date); a newer date does, as before."""
    app = make_app()
    client = app.test_client()
    subject = _quieted(client, client, INFO_PATIENT, INFO_CARD)
    engine = runtime(app).store.engine
    with engine.begin() as conn:
        assert all(conn.execute(sa.select(quieted_cards.c.trigger_keys)).scalars())  # kept with the feedback
        conn.execute(quieted_cards.update().values(trigger_keys=None))
    assert INFO_CARD not in cards_of(client, pv_body(INFO_PATIENT, extra=[_back_dated("vfx", "S32.010A", subject)]))
    age_feedback(app, 10, cards_too=True)
    yesterday = (TODAY - dt.timedelta(days=1)).isoformat()
    new_dxa = _obs("dxa-new", "38267-1", -2.8, "{T-score}", yesterday, subject)
    assert INFO_CARD in cards_of(client, pv_body(INFO_PATIENT, extra=[new_dxa]))


def test_trigger_keys_are_keyed_hashes_not_codes(make_app):
    """What the store keeps of a card's codes: HMACs with the server secret and the patient
    key, different for every patient; no code in clear."""
    from cds_service.store import issued_cards

    app = make_app()
    client = app.test_client()
    stored = []
    for pid in (None, "someone-else"):
        extra = [_back_dated("vfx", "S32.010A", f"Patient/{pid or pv_body(INFO_PATIENT)['context']['patientId']}")]
        cards_of(client, pv_body(INFO_PATIENT, patient_id=pid, extra=extra))
        with runtime(app).store.engine.begin() as conn:
            row = conn.execute(sa.select(issued_cards.c.trigger_keys).where(issued_cards.c.card_id == INFO_CARD)
                               ).scalars().all()
            conn.execute(issued_cards.delete())
        [keys] = [json.loads(r) for r in row]
        assert keys and all(len(k) == 32 for k in keys) and "S32.010A" not in json.dumps(keys)
        stored.append(set(keys))
    assert not stored[0] & stored[1]


def _egfr(oid, value, subject):
    return _obs(oid, "98979-8", value, "mL/min/{1.73_m2}", TODAY.isoformat(), subject)


def test_kidney_function_in_a_worse_band_the_day_of_the_feedback_wakes_the_renal_card(two_apps):
    """C-SAFE-RENAL (warning, alendronate at an eGFR of 34) overridden today; an eGFR of 25
    the same day has no newer date, but crosses into CKD stage 4 (band "severe"): the card
    comes back. 33 (the same band) wakes nothing."""
    a, b = (app.test_client() for app in two_apps)
    patient, card_id = "c-safe-renal-active-alendronate-egfr-34", "C-SAFE-RENAL"
    assert cards_of(a, pv_body(patient))[card_id]["indicator"] == "warning"
    subject = _quieted(a, b, patient, card_id)
    assert card_id not in cards_of(b, pv_body(patient, extra=[_egfr("egfr-33", 33, subject)]))
    back = cards_of(b, pv_body(patient, extra=[_egfr("egfr-25", 25, subject)]))
    assert card_id in back and "eGFR 25" in back[card_id]["summary"]


def test_the_renal_card_acted_on_at_signing_stays_quiet_on_patient_view(make_app):
    """Feedback on an order hook's card quiets the same card id on patient-view: the renal
    card keeps the same trigger tokens on both hooks (its kidney band), so the chart-open card
    is not taken for a new trigger; a worse band still is."""
    client = make_app().test_client()
    patient, card_id = "c-safe-renal-active-alendronate-egfr-34", "C-SAFE-RENAL"
    body = pv_body(patient)
    subject = f"Patient/{body['context']['patientId']}"
    draft = {"resourceType": "MedicationRequest", "id": "draft-aln", "status": "draft", "intent": "order",
             "subject": {"reference": subject}, "medicationCodeableConcept": {"coding": [
                 {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "904431"}]}}
    sign = dict(body, hook="order-sign", hookInstance=str(uuid.uuid4()),
                context=dict(body["context"], draftOrders={"resourceType": "Bundle", "type": "collection",
                                                           "entry": [{"resource": draft}]}))
    url = "/cds-services/osteoporosis-order-sign"
    resp = client.post(url, json=sign)
    card = next(c for c in resp.get_json()["cards"] if c["source"]["topic"]["code"] == card_id)
    assert card["indicator"] == "warning"
    resp = client.post(url + "/feedback", json={"feedback": [
        {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-01-01T10:00:00Z"}]})
    assert resp.status_code == 200
    assert card_id not in cards_of(client, body)
    assert card_id in cards_of(client, pv_body(patient, extra=[_egfr("egfr-25", 25, subject)]))
