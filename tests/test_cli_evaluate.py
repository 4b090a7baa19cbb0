"""`cds-service evaluate`: a patient Bundle through the real service, printed for reviewers."""

import datetime as dt
import json
from pathlib import Path

from cds_service import fixtures as fx
from cds_service.cli import main, plain_text

FIXTURE = str(fx.fixtures_dir() / "patients" / "c-exercise-osteoporosis-vertebral-fracture.json")


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_readable_output_names_cards_facts_orders_and_override_reasons(capsys):
    code, out, _ = run(capsys, "evaluate", FIXTURE, "--today", "2025-06-01", "--all")
    assert code == 0
    assert "patient pv-ex-01" in out and "dates shifted from anchor 2025-06-01 to 2025-06-01" in out
    assert "[INFO] C-EXERCISE: Bone health: prescribe" in out
    assert "[INFO] C-FALLS: Fall prevention" in out
    assert "Lumbar spine T-score -2.8 on 2025-01-20" in out
    assert "create ServiceRequest: SNOMED 444831000124102 Referral for physical therapy" in out
    assert "create ServiceRequest: LOINC 73830-2 Fall risk assessment" in out
    assert "Override reasons: Already in an exercise programme; Patient declined" in out
    assert "**" not in out  # detail printed as plain text


def test_delete_targets_print_whole_references(capsys):
    """The delete action's resourceId is one relative reference (a string): printed whole,
    not one character at a time ("delete M, e, d, i, ...")."""
    code, out, _ = run(capsys, "evaluate", "c-safe-renal-alendronate-egfr-34", "--hook", "order-sign",
                       "--today", "2025-06-01")
    assert code == 0
    assert "delete MedicationRequest/" in out and "delete M, e" not in out


def test_patient_view_shows_what_the_service_sends_within_the_info_budget(capsys):
    _, everything, _ = run(capsys, "evaluate", FIXTURE, "--today", "2025-06-01", "--all")
    _, sent, _ = run(capsys, "evaluate", FIXTURE, "--today", "2025-06-01")
    assert everything.count("[INFO]") > 2
    assert sent.count("[INFO]") == 2
    assert "held back by the info budget (CDS_INFO_CARD_BUDGET=2, CDS_ROUTINE_CARD_BUDGET=1): " in sent.splitlines()[0]


def test_today_shifts_the_fixture_dates(capsys):
    _, out, _ = run(capsys, "evaluate", FIXTURE, "--today", "2026-06-01")
    assert "Lumbar spine T-score -2.8 on 2026-01-20" in out and "2025-01-20" not in out


def test_json_is_the_cds_hooks_response(capsys):
    code, out, _ = run(capsys, "evaluate", "c-falls-osteopenia-age-65", "--today", "2025-06-01", "--json", "--all")
    assert code == 0
    cards = json.loads(out)["cards"]
    ids = [c["source"]["topic"]["code"] for c in cards]
    assert "C-FALLS" in ids and "C-EXERCISE" in ids
    assert all(c["uuid"] and c["indicator"] in ("info", "warning", "critical") for c in cards)
    falls = cards[ids.index("C-FALLS")]
    res = falls["suggestions"][0]["actions"][0]["resource"]
    assert res["subject"] == {"reference": "Patient/pv-fall-01"} and res["authoredOn"] == "2025-06-01"


def test_order_hook_uses_the_bundle_drafts(capsys, tmp_path):
    bundle = fx.load_patient("tx-bp-postmenopausal-osteoporosis", today=dt.date(2025, 6, 1))
    bundle["entry"].append({"resource": {
        "resourceType": "MedicationRequest", "id": "d1", "status": "draft", "intent": "order",
        "subject": {"reference": "Patient/pv-tx-bp-01"},
        "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                  "code": "904431"}]}}})
    path = tmp_path / "with-draft.json"
    path.write_text(json.dumps(bundle))
    code, out, _ = run(capsys, "evaluate", str(path), "--hook", "order-sign", "--today", "2025-06-01")
    assert code == 0 and "| order-sign |" in out and "1 draft order(s)" in out
    # the same Bundle on patient-view: the draft is not prefetch data (no "on alendronate" reasoning)
    _, pv, _ = run(capsys, "evaluate", str(path), "--today", "2025-06-01")
    assert "C-TX-BP" in pv


def test_bundle_without_anchor_is_evaluated_as_written(capsys, tmp_path):
    bundle = json.loads(Path(FIXTURE).read_text())
    bundle["meta"]["tag"] = []
    path = tmp_path / "plain.json"
    path.write_text(json.dumps(bundle))
    _, out, _ = run(capsys, "evaluate", str(path), "--today", "2026-06-01")
    assert "no anchor tag" in out and "Lumbar spine T-score -2.8 on 2025-01-20" in out


def test_bad_input_is_a_clear_error(capsys, tmp_path):
    code, _, err = run(capsys, "evaluate", str(tmp_path / "missing.json"))
    assert code == 2 and "missing.json" in err
    (tmp_path / "obs.json").write_text(json.dumps({"resourceType": "Observation"}))
    code, _, err = run(capsys, "evaluate", str(tmp_path / "obs.json"))
    assert code == 2 and "not a FHIR Bundle" in err


def test_plain_text_strips_markdown():
    assert plain_text("**Bold** and `code` and [link](https://x.org)\n\n\n\nend") == \
        "Bold and code and link (https://x.org)\n\nend"
