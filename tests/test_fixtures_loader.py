import datetime as dt

from cds_service import fixtures as fx


def test_shift_dates_moves_full_dates_only():
    data = {"a": "2025-06-01", "b": "2025-05-31T10:00:00Z", "c": "1950", "d": "1950-05",
            "e": ["2024-02-28"], "f": "not-a-date", "meta": {"tag": [{"code": "2025-06-01"}]}}
    out = fx.shift_dates(data, 2)
    assert out["a"] == "2025-06-03" and out["b"] == "2025-06-02T10:00:00Z"
    assert out["c"] == "1950" and out["d"] == "1950-05" and out["f"] == "not-a-date"
    assert out["e"] == ["2024-03-01"]
    assert out["meta"]["tag"][0]["code"] == "2025-06-01"
    assert data["a"] == "2025-06-01"  # input untouched


def test_every_fixture_loads_and_shifts_to_today():
    names = fx.patient_names()
    assert names
    today = dt.date(2031, 1, 15)
    for name in names:
        raw = fx.load_patient(name, today=fx.anchor_date(fx.load_patient(name, today=dt.date(2025, 6, 1))))
        assert raw["type"] == "transaction"
        shifted = fx.load_patient(name, today=today)
        delta = (today - fx.anchor_date(raw)).days
        birth_raw = next(e["resource"]["birthDate"] for e in raw["entry"] if e["resource"]["resourceType"] == "Patient")
        birth_new = next(e["resource"]["birthDate"] for e in shifted["entry"] if e["resource"]["resourceType"] == "Patient")
        assert (dt.date.fromisoformat(birth_new) - dt.date.fromisoformat(birth_raw)).days == delta


def test_prefetch_and_drafts_split():
    bundle = {"resourceType": "Bundle", "type": "transaction", "meta": {"tag": [
        {"system": fx.ANCHOR_SYSTEM, "code": "2025-06-01"},
        {"system": fx.EXPECT_SYSTEM, "code": "order-sign:C-MASSAGE-SAFETY"},
        {"system": fx.FORBID_SYSTEM, "code": "patient-view:C-TX-BP"}]},
        "entry": [{"resource": {"resourceType": "Patient", "id": "p"}},
                  {"resource": {"resourceType": "MedicationRequest", "id": "m", "status": "active"}},
                  {"resource": {"resourceType": "ServiceRequest", "id": "s", "status": "draft"}},
                  {"resource": {"resourceType": "ServiceRequest", "id": "placed", "status": "active"}}]}
    pf = fx.prefetch_from_bundle(bundle)
    assert pf["patient"]["id"] == "p"
    assert [e["resource"]["id"] for e in pf["medicationRequests"]["entry"]] == ["m"]
    assert pf["procedures"]["entry"] == []
    assert [e["resource"]["id"] for e in pf["serviceRequests"]["entry"]] == ["placed"]  # drafts are not on record
    assert [r["id"] for r in fx.drafts_from_bundle(bundle)] == ["s"]
    assert fx.draft_orders_bundle(bundle)["entry"][0]["resource"]["id"] == "s"
    assert fx.expectations(bundle, "order-sign") == ({"C-MASSAGE-SAFETY"}, set())
    assert fx.expectations(bundle, "patient-view") == (set(), {"C-TX-BP"})
