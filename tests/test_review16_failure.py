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
from tests.conftest import TODAY
from tests.test_review13_kidney import LABS
from tests.test_rules_second_pass import ALN, PID, ROMO, ago, cards, cond, given, med, obs, record

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


def test_two_fractures_in_the_first_year_of_therapy_are_two_on_therapy_in_true_words():
    """second-pass 4: "or two fractures on therapy" sets no 12-month bar (review 18). Fractures 1
    and 5 months into a course started 6 months ago fire, and the card no longer says "each 12
    months or more into the course" (review 17: its own facts said 1 and 5 months)."""
    got = cards(record(med(ALN, 180), cond(VERTEBRAL, 150, cid="v"), cond(HIP, 30, cid="h")))
    card = got["C-TX-FAILURE"]
    assert card["summary"].startswith(f"Two fractures on alendronate ({ago(150)} and {ago(30)})")
    assert "12 months or more" not in card["detail"] and "), during the course, and" in card["detail"]
    assert "C-MON-ONTX" not in got


def test_an_early_and_a_new_late_fracture_are_two_during_the_course():
    """One fracture 3 months in, one new 14 months in: two fractures on therapy (second-pass 4),
    in true words ("during the course": the first was not 12 months in)."""
    got = cards(record(med(ALN, 500), cond(VERTEBRAL, 410, cid="v"), cond(HIP, 80, cid="h")))
    assert got["C-TX-FAILURE"]["summary"].startswith(f"Two fractures on alendronate ({ago(410)} and {ago(80)})")
    assert "), during the course, and" in got["C-TX-FAILURE"]["detail"]


def test_the_fracture_that_led_to_treatment_is_not_on_it():
    """Quiet control: a fracture on the day the course started, then one 3 months in (new, single,
    too early to hold against the drug: C-MON-ONTX's)."""
    assert "C-TX-FAILURE" not in cards(record(med(ALN, 120), cond(VERTEBRAL, 120, cid="v"), cond(HIP, 30, cid="h")))


def test_two_old_fractures_on_a_stopped_drug_stay_quiet():
    """Quiet control: the drug was stopped (the failure was acted on); neither fracture is recent."""
    stopped = med(ALN, 4000, "stopped")
    assert "C-TX-FAILURE" not in cards(record(stopped, cond(VERTEBRAL, 3000, cid="v"), cond(HIP, 900, cid="h")))


def test_a_single_new_fracture_keeps_the_new_fracture_wording():
    card = cards(record(med(ALN, 2920), cond(VERTEBRAL, 400)))["C-TX-FAILURE"]
    assert card["summary"].startswith("Fracture on alendronate")
    assert f"There is a new vertebral fracture on {ago(400)}, 12 months or more into the course" in card["detail"]


def _patient_view(client, resources):
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
    path = next(p for p in fx.realworld_paths() if p.name.startswith("43b6ae50"))
    got = _patient_view(client, fx.load_realworld(path, today=dt.date.today()))  # the app judges as of today
    card = got["C-TX-FAILURE"]
    assert card["indicator"] == "warning" and card["summary"].startswith("Two fractures on alendronate (")
    assert "C-HOLIDAY" not in got


# ---------------------------------------------------------------------------
# 2. Twelve romosozumab doses given and the order still active (chart e28c, last dose 30 days ago):
# nothing was said until a 13th dose was on record. The active order invites a 13th, beyond the
# EVENITY label's 12 (SAFE-9), as a draft does on the order hooks; the catalogue lists
# C-SAFE-ROMO-LIMIT on every hook, so it speaks on patient-view: stop, follow with an
# antiresorptive (its follow-on orders). C-ANABOLIC-FOLLOW-ON waits until the order is stopped.
# ---------------------------------------------------------------------------


EGFR = obs("98979-8", 10, 70, "mL/min/{1.73_m2}")


def _romo(n, last=30, status="active"):
    """n monthly doses given, the last `last` days ago, under one order of that status."""
    return (med(ROMO, last + 30 * n, status, rid="romo-order"), *(given(ROMO, last + 30 * k) for k in range(n)))


def test_twelve_doses_with_the_order_still_active_draw_the_limit_card():
    card = cards(record(*LABS, EGFR, *_romo(12)))["C-SAFE-ROMO-LIMIT"]
    assert card["indicator"] == "warning"
    assert f"12 monthly doses given since {ago(360)}, last on {ago(30)}" in card["detail"]
    assert "The romosozumab order is still active: stop it" in card["detail"]
    labels = [s["label"] for s in card["suggestions"]]
    assert any("alendronate" in label for label in labels) and any("denosumab" in label for label in labels)


def test_twelve_doses_four_months_on_with_the_order_active_draw_one_warning():
    got = cards(record(*_romo(12, last=120)))
    assert "C-SAFE-ROMO-LIMIT" in got and "C-ANABOLIC-FOLLOW-ON" not in got


def test_eleven_doses_with_the_order_active_stay_quiet():
    """Quiet control: the course is not complete."""
    got = cards(record(*_romo(11)))
    assert not {"C-SAFE-ROMO-LIMIT", "C-ANABOLIC-FOLLOW-ON"} & set(got)


def test_twelve_doses_with_the_order_completed_are_left_to_the_follow_on_cards():
    """Quiet control: no active order invites a 13th; at four months C-ANABOLIC-FOLLOW-ON speaks."""
    assert "C-SAFE-ROMO-LIMIT" not in cards(record(*_romo(12, status="completed")))
    late = cards(record(*_romo(12, last=120, status="completed")))
    assert "C-ANABOLIC-FOLLOW-ON" in late and "C-SAFE-ROMO-LIMIT" not in late


def test_chart_e28c_through_the_app(client):
    """e28c: woman of 74, osteoporosis, 12 romosozumab doses, the order active, last dose 30 days ago
    (dates moved from the tests' TODAY to the app's)."""
    patient = {"resourceType": "Patient", "id": PID, "gender": "female", "birthDate": "1952-01-01"}
    chart = [dict(r, subject={"reference": f"Patient/{PID}"}) for r in (cond("M81.0", 400), *LABS, EGFR, *_romo(12))]
    got = _patient_view(client, [patient, *fx.shift_dates(chart, (dt.date.today() - TODAY).days)])
    card = got["C-SAFE-ROMO-LIMIT"]
    assert card["indicator"] == "warning" and "The romosozumab order is still active" in card["detail"]


def test_two_fractures_on_zoledronic_acid_in_its_effect_window_name_the_last_dose():
    """The drug's effect window (a yearly infusion covers 12 months), the last dose 400 days ago: two
    fractures on it, the newest recent; the card says when the last dose was, not that it goes on."""
    from tests.test_rules_second_pass import ZOL
    doses = [given(ZOL, d) for d in (1130, 765, 400)]
    card = cards(record(*doses, cond(VERTEBRAL, 700, cid="v"), cond(HIP, 60, cid="h")))["C-TX-FAILURE"]
    assert card["summary"].startswith(f"Two fractures on zoledronic acid ({ago(700)} and {ago(60)})")
    assert f"the last dose was on {ago(400)}" in card["detail"] and "goes on" not in card["detail"]
