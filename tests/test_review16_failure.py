"""Review 16 (branch failfix): C-TX-FAILURE's two-fracture clause and C-SAFE-ROMO-LIMIT on
patient-view at the 12th dose. Each fix with a chart that makes the fixed rule fire and a quiet
control. Charts are built with tests.test_rules_second_pass's helpers and judged by the engine as
the app runs it (engine.evaluate, strict); dates count back from TODAY. The real-world chart goes
through the Flask app. Sources: second-pass.md section 4 (C-TX-FAILURE), SAFE-9 and the
catalogue (C-SAFE-ROMO-LIMIT on every hook), EVENITY label (12 monthly doses)."""

from __future__ import annotations

import datetime as dt
import uuid

from cds_service import fixtures as fx
from cds_service.fhir.prefetch import render_template
from cds_service.services.prefetch_templates import PREFETCH
from fhir_test_server import FhirStore
from tests.test_rules_second_pass import ALN, ago, cards, cond, med, record

VERTEBRAL = "M80.08XA"
HIP = "M80.051A"

# ---------------------------------------------------------------------------
# 1. Two fragility fractures on the same, still active antiresorptive are a failure not acted on,
# whatever their age (second-pass 4: "... or two fractures on therapy"). Review 13's window
# (CDS_TX_FAILURE_WINDOW_MONTHS, 24) was applied to this clause too, so a man with fractures in
# 2017 and 2024 on 23 years of alendronate got only C-HOLIDAY's "review how long to go on".
# A fracture counts on therapy 12 months or more into the course (tx_failure_months), as in the
# single-fracture clause; the window stays for that clause.
# ---------------------------------------------------------------------------


def test_two_old_fractures_on_active_alendronate_are_a_treatment_failure():
    got = cards(record(med(ALN, 4000), cond(VERTEBRAL, 3000, cid="v"), cond(HIP, 900, cid="h")))
    card = got["C-TX-FAILURE"]
    assert card["indicator"] == "warning"
    assert card["summary"].startswith(f"Two fractures on alendronate ({ago(3000)} and {ago(900)})")
    assert "new" not in card["summary"] + card["detail"].split("**Patient data used:**")[0]
    assert f"hip fracture on {ago(900)}" in card["detail"] and f"vertebral fracture on {ago(3000)}" in card["detail"]


def test_a_very_long_course_with_two_old_fractures_gets_no_holiday_card():
    """23 years of alendronate: C-HOLIDAY steps aside for the failure card, which names the length."""
    got = cards(record(med(ALN, 8400), cond(VERTEBRAL, 3300, cid="v"), cond(HIP, 900, cid="h")))
    assert "C-HOLIDAY" not in got
    assert "Oral bisphosphonate for 23." in got["C-TX-FAILURE"]["detail"]


def test_one_old_fracture_beyond_the_window_stays_quiet():
    """Quiet control: a single fracture 4 years ago on alendronate (review 13) is not new."""
    assert "C-TX-FAILURE" not in cards(record(med(ALN, 2920), cond(VERTEBRAL, 1460)))


def test_a_fracture_in_the_first_year_does_not_make_two_on_therapy():
    """Quiet control: the fracture 3 months into the course (the one that led to treatment) is not on
    therapy; the other, 4 years ago, is single and old."""
    assert "C-TX-FAILURE" not in cards(record(med(ALN, 3000), cond(VERTEBRAL, 2900, cid="v"),
                                              cond(HIP, 1460, cid="h")))


def test_two_old_fractures_on_a_stopped_drug_stay_quiet():
    """Quiet control: the drug was stopped (the failure was acted on); neither fracture is recent."""
    stopped = med(ALN, 4000, "stopped")
    assert "C-TX-FAILURE" not in cards(record(stopped, cond(VERTEBRAL, 3000, cid="v"), cond(HIP, 900, cid="h")))


def test_a_single_new_fracture_keeps_the_new_fracture_wording():
    card = cards(record(med(ALN, 2920), cond(VERTEBRAL, 400)))["C-TX-FAILURE"]
    assert card["summary"].startswith("Fracture on alendronate")
    assert f"There is a new vertebral fracture on {ago(400)}, 12 months or more into the course" in card["detail"]


def _synthea_patient_view(client, name):
    today = dt.date.today()  # the app judges as of today; the corpus is date-shifted to it
    path = next(p for p in fx.realworld_paths() if p.name.startswith(name))
    resources = fx.load_realworld(path, today=today)
    pid = next(r["id"] for r in resources if r["resourceType"] == "Patient")
    store = FhirStore(resources)
    prefetch = {k: store.answer(render_template(tpl, {"patientId": pid})) for k, tpl in PREFETCH.items()}
    body = {"hookInstance": str(uuid.uuid4()), "hook": "patient-view", "fhirServer": "https://fhir.example.org/r4",
            "context": {"patientId": pid, "userId": "Practitioner/example"}, "prefetch": prefetch}
    reply = client.post("/cds-services/osteoporosis-patient-view", json=body)
    assert reply.status_code == 200
    return {c["source"]["topic"]["code"]: c for c in reply.get_json()["cards"]}


def test_synthea_man_with_two_fractures_on_23_years_of_alendronate(client):
    """rw_43b6ae50: man of 83, alendronate since 2003, fractures about 9 and 2.5 years ago."""
    got = _synthea_patient_view(client, "43b6ae50")
    card = got["C-TX-FAILURE"]
    assert card["indicator"] == "warning" and card["summary"].startswith("Two fractures on alendronate (")
    assert "C-HOLIDAY" not in got
