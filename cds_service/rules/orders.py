"""FHIR orders that several rules build in code (no cards here): the PROLIA24
plan for denosumab in advanced kidney disease, pre-dose labs, vitamin D
repletion. Card templates in cards/ hold the orders only one card uses; an
order several cards share lives here once, so the cards cannot drift apart.

Codes: LOINC 17861-6 calcium V, 1751-7 albumin (confirmed), 2160-0 creatinine V,
62292-8 25-OH vitamin D V?, 2731-8 intact PTH U, 1649-3 calcitriol
(1,25-dihydroxyvitamin D3) V? (one public LOINC table); SNOMED 306286007
referral to nephrologist V (VSAC Referral 2.16.840.1.113883.3.464.1003.101.12.1046).
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from cds_service.fhir import terminology as t
from cds_service.fhir.validation import fhir_problems
from cds_service.rules.base import Action, Suggestion

if TYPE_CHECKING:
    from cds_service.record import PatientRecord

PROLIA24_TEXT = (
    "**Denosumab in advanced kidney disease (Prolia boxed warning, January 2024):** severe, sometimes "
    "fatal hypocalcemia with eGFR below 30 or on dialysis, most of all with CKD-mineral bone disorder "
    "(CKD-MBD). Before starting, evaluate CKD-MBD (intact PTH, calcium, 25-OH vitamin D and "
    "1,25-(OH)2 vitamin D); after each dose check calcium weekly for the first month, then monthly; "
    "treatment is supervised by a clinician with expertise in CKD-MBD (nephrology or a bone specialist).")


def lab_order(loinc: str, display: str, text: str, *, note: str | None = None,
              timing: dict[str, Any] | None = None) -> dict[str, Any]:
    order: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "intent": "order",
        "category": [{"coding": [{"system": t.SNOMED, "code": "108252007", "display": "Laboratory procedure"}]}],
        "code": {"coding": [{"system": t.LOINC, "code": loinc, "display": display}], "text": text},
    }
    if timing:
        order["occurrenceTiming"] = timing
    if note:
        order["note"] = [{"text": note}]
    return order


def referral(snomed: str, display: str, text: str, reason: str) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "intent": "order",
        "code": {"coding": [{"system": t.SNOMED, "code": snomed, "display": display}], "text": text},
        "reasonCode": [{"text": reason}],
    }


# SNOMED referrals, V (VSAC Referral 2.16.840.1.113883.3.464.1003.101.12.1046)
ENDOCRINOLOGY = ("306278007", "Referral to endocrinologist")
ORTHOPAEDICS = ("308481009", "Referral to orthopedic surgeon")
ORAL_SURGERY = ("406158007", "Referral to oral surgeon")
NEPHROLOGY = ("306286007", "Referral to nephrologist")
DIETITIAN = ("103699006", "Patient referral to dietitian")
OCCUPATIONAL_THERAPY = ("308453003", "Referral to occupational therapist")
PSYCHOLOGIST = ("308459004", "Referral to psychologist")
# V [CQF]: the code of C-EXERCISE's pt-referral (cards/C-EXERCISE.yaml); C-FALLS offers it in code
PHYSICAL_THERAPY = ("444831000124102", "Referral for physical therapy")


def referral_suggestion(code: tuple[str, str], text: str, reason: str, recommended: bool = False) -> Suggestion:
    """One referral (ServiceRequest) as a suggestion."""
    return Suggestion(text, (Action("create", text, resource=referral(code[0], code[1], text, reason)),), recommended)


def pregnancy_referral(reason: str) -> Suggestion:
    """The bone specialist referral of a pregnancy (C-SAFE-PREGNANCY, and the denosumab course cards
    beside it): one wording, so the engine offers it once a screen (engine.offer_each_order_once)."""
    return referral_suggestion(ENDOCRINOLOGY, "Refer to endocrinology to plan bone treatment around the pregnancy",
                               reason, True)


def stop_actions(record: PatientRecord, agent: str, name: str, reason: str) -> tuple[Action, ...]:
    """Stop the patient's active (or on-hold) MedicationRequests for `agent`: one FHIR
    `update` action each (CDS Hooks: the resource to update), carrying the EHR's own order
    with status `stopped` and `reason` as its statusReason, nothing else changed. None for
    a drug on record only as a statement or a dose given (no order to stop), an oncology
    product's order (Xgeva, Zometa: oncology's plan, left out of osteoporosis logic; brief
    8.6, review 17), or an order that would not validate as FHIR R4 once changed (the card
    then says it in words)."""
    exposure = record.medications.get(agent)
    if exposure is None:
        return ()
    actions = []
    in_force = dict(record.orders_in_force)
    for ref in dict.fromkeys(ev.ref for ev in exposure.events
                             if ev.resource_type == "MedicationRequest" and not ev.oncology):
        order = in_force.get(ref)
        if order is None:
            continue
        stopped = copy.deepcopy(dict(order))
        stopped["status"] = "stopped"
        stopped["statusReason"] = {"text": reason}
        if "subject" not in stopped and record.patient_id:  # as card_render fills a suggested order's
            stopped["subject"] = {"reference": f"Patient/{record.patient_id}"}
        if fhir_problems(stopped) is None:
            actions.append(Action("update", f"Mark the {name} order {ref} stopped ({reason})",
                                  resource=stopped))
    return tuple(actions)


def stop_suggestion(record: PatientRecord, agent: str, name: str, label: str, reason: str,
                    recommended: bool = False) -> Suggestion | None:
    """A suggestion that stops the patient's active `agent` (called `name` in the text)
    orders (stop_actions), or None when there is none to stop."""
    actions = stop_actions(record, agent, name, reason)
    return Suggestion(label, actions, recommended) if actions else None


def calcium_order(note: str, timing: dict[str, Any] | None = None) -> dict[str, Any]:
    return lab_order("17861-6", "Calcium [Mass/volume] in Serum or Plasma", "Serum calcium (with albumin)",
                     note=note, timing=timing)


def ckd_mbd_lab_actions(calcium_note: str,
                        calcium_label: str = "Serum calcium with albumin before the dose") -> tuple[Action, ...]:
    """The CKD-MBD work-up of the PROLIA24 plan: intact PTH, 25-OH D, 1,25-(OH)2 D, calcium."""
    return (
        Action("create", "Intact PTH (CKD-mineral bone disorder work-up)",
               resource=lab_order("2731-8", "Parathyrin.intact [Mass/volume] in Serum or Plasma", "Intact PTH")),
        Action("create", "25-OH vitamin D",
               resource=lab_order("62292-8", "25-Hydroxyvitamin D2+25-Hydroxyvitamin D3 [Mass/volume] in Serum "
                                             "or Plasma", "25-OH vitamin D")),
        Action("create", "1,25-dihydroxyvitamin D",
               resource=lab_order("1649-3", "Calcitriol [Mass/volume] in Serum or Plasma",
                                  "1,25-dihydroxyvitamin D (calcitriol)")),
        Action("create", calcium_label, resource=calcium_order(calcium_note)),
    )


def nephrology_referral(description: str, reason: str) -> Action:
    """Referral to nephrology or a bone specialist with CKD-MBD expertise (PROLIA24; KDIGO 2017)."""
    return Action("create", description, resource=referral(
        *NEPHROLOGY, "Referral to nephrology or a bone specialist with CKD-MBD expertise", reason))


def _to_do(actions: tuple[Action, ...], done: Collection[str]) -> tuple[Action, ...]:
    """`actions` less the one-off orders whose code is in `done` (facts.ckd_mbd_done: on record
    recently; review 14). Scheduled calcium checks after a dose are never "done"."""
    return tuple(a for a in actions if not (
        a.resource and "occurrenceTiming" not in a.resource
        and ((a.resource.get("code") or {}).get("coding") or [{}])[0].get("code") in done))


def prolia24_actions(*, work_up: bool = True, after_dose: bool = True,
                     done: Collection[str] = ()) -> tuple[Action, ...]:
    """The PROLIA24 plan as orders: the CKD-MBD work-up (PTH, 25-OH D, 1,25-(OH)2 D,
    calcium), calcium weekly x 4 then monthly after a dose, and a nephrology / bone
    specialist referral; less what `done` names (facts.ckd_mbd_done)."""
    actions: list[Action] = []
    if work_up:
        actions += ckd_mbd_lab_actions("Before the denosumab dose; with albumin for corrected calcium.")
    if after_dose:
        actions += [
            Action("create", "Serum calcium weekly for 4 weeks after the dose",
                   resource=calcium_order("Weekly for the first month after each denosumab dose (Prolia 2024 "
                                          "boxed warning).",
                                          {"repeat": {"count": 4, "frequency": 1, "period": 1, "periodUnit": "wk"}})),
            Action("create", "Serum calcium monthly after the first month",
                   resource=calcium_order("Monthly from the second month after each denosumab dose until the next "
                                          "dose.", {"repeat": {"count": 5, "frequency": 1, "period": 1,
                                                               "periodUnit": "mo"}})),
        ]
    actions.append(nephrology_referral("Referral to nephrology (CKD-mineral bone disorder) to supervise denosumab",
                                       "Denosumab in advanced CKD: evaluate and manage CKD-mineral bone disorder "
                                       "(Prolia boxed warning 2024)"))
    return _to_do(tuple(actions), done)


def ckd_mbd_work_up(why: str, done: Collection[str] = ()) -> tuple[Action, ...]:
    """Before any osteoporosis drug in CKD 4-5 or on dialysis (review 13; AACE20, ES19, KDIGO 2017
    CKD-MBD: calcium, phosphate and PTH read together, with ALP and vitamin D): the PROLIA24
    work-up plus phosphate and alkaline phosphatase, and the CKD-MBD referral. `why`: the
    referral's reason; `done`: codes on record recently, left out (facts.ckd_mbd_done). LOINC
    2777-1 phosphate, 6768-6 ALP as C-LAB-BASELINE orders them (V?)."""
    return _to_do(ckd_mbd_lab_actions("CKD-mineral bone disorder work-up; with albumin for corrected calcium.",
                               "Serum calcium with albumin") + (
        Action("create", "Serum phosphate", resource=lab_order(
            "2777-1", "Phosphate [Mass/volume] in Serum or Plasma", "Serum phosphate")),
        Action("create", "Alkaline phosphatase", resource=lab_order(
            "6768-6", "Alkaline phosphatase [Enzymatic activity/volume] in Serum or Plasma", "Alkaline phosphatase")),
        nephrology_referral("Referral to nephrology or a bone specialist (CKD-mineral bone disorder)", why),
    ), done)


def prolia24_suggestion(label: str, *, dose: dict[str, Any] | None = None, work_up: bool = True,
                        after_dose: bool = True, recommended: bool = True,
                        done: Collection[str] = ()) -> Suggestion:
    """One suggestion carrying the PROLIA24 plan, with the denosumab dose first when given; with
    nothing left to order (all `done`) it has no actions and the card shows none."""
    actions = ((Action("create", "Denosumab 60 mg subcutaneously (next dose)", resource=dose),) if dose else ())
    return Suggestion(label, actions + prolia24_actions(work_up=work_up, after_dose=after_dose, done=done),
                      recommended)


def medication_order(rxnorm: str, display: str, text: str, dosage: dict[str, Any],
                     **extra: Any) -> dict[str, Any]:
    """A MedicationRequest order for one RxNorm product with one dosage instruction."""
    return {
        "resourceType": "MedicationRequest",
        "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": t.RXNORM, "code": rxnorm, "display": display}],
                                      "text": text},
        "dosageInstruction": [dosage],
        **extra,
    }


def _per(period_unit: str, **bounds: Any) -> dict[str, Any]:
    return {"repeat": {"frequency": 1, "period": 1, "periodUnit": period_unit, **bounds}}


def denosumab_dose(note: str, on: dt.date | None = None) -> dict[str, Any]:
    """Denosumab 60 mg once (RxNorm 993452, confirmed); `on`: not before that date (the next
    dose of a course not yet due: earlier is C-SAFE-DOSE-INTERVAL)."""
    when = f" on or after {on} (6 months after the last dose)" if on else ""
    return medication_order("993452", "1 ML denosumab 60 MG/ML Prefilled Syringe", "denosumab 60 mg/mL prefilled syringe", {
        "text": f"60 mg subcutaneously once{when}. {note}", "route": {"text": "subcutaneous"},
        **({"timing": {"event": [on.isoformat()]}} if on else {}),
        "doseAndRate": [{"doseQuantity": {"value": 60, "unit": "mg", "system": t.UCUM, "code": "mg"}}]})


def alendronate_weekly(patient_instruction: str) -> dict[str, Any]:
    """Alendronate 70 mg weekly (RxNorm 904431, corrected in the brief's addendum)."""
    return medication_order("904431", "alendronic acid 70 MG Oral Tablet", "alendronate 70 mg oral tablet", {
        "text": "1 tablet (70 mg) by mouth once weekly.", "patientInstruction": patient_instruction,
        "timing": _per("wk"), "route": {"text": "oral"},
        "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet"}}]},
        dispenseRequest={"quantity": {"value": 4, "unit": "tablet"}, "numberOfRepeatsAllowed": 11})


def pth_analog_daily(agent: str) -> dict[str, Any]:
    """Teriparatide 20 mcg daily (pen SCD 1435115, confirmed) or abaloparatide 80 mcg
    daily (pen 1921082: weakly sourced, the text names the drug too)."""
    code, display, text, mcg = {
        "teriparatide": ("1435115", "teriparatide 0.02 MG/ACTUAT pen injector (28 actuations)",
                         "teriparatide 20 mcg/dose pen injector", 20),
        "abaloparatide": ("1921082", "abaloparatide pen injector", "abaloparatide 80 mcg/dose pen injector", 80),
    }[agent]
    return medication_order(code, display, text, {
        "text": f"{mcg} mcg subcutaneously once daily (lifetime PTH-analog limit: 24 months in total).",
        "timing": _per("d"), "route": {"text": "subcutaneous"},
        "doseAndRate": [{"doseQuantity": {"value": mcg, "unit": "mcg", "system": t.UCUM, "code": "ug"}}]})


def follow_on_suggestions(kinds: tuple[str, ...], patient_instruction: str) -> tuple[Suggestion, ...]:
    """The antiresorptive that follows an anabolic course (ACP23 Rec 3): "denosumab"
    (every 6 months, calcium before the first dose) and/or "alendronate" (weekly)."""
    out = []
    for kind in kinds:
        if kind == "denosumab":
            dose = denosumab_dose("Repeat every 6 months; check serum calcium before each dose.")
            dose["dosageInstruction"][0]["timing"] = {"repeat": {"frequency": 1, "period": 6, "periodUnit": "mo"}}
            out.append(Suggestion("Order denosumab 60 mg every 6 months to follow on, with a calcium check", (
                Action("create", "Denosumab 60 mg subcutaneously every 6 months", resource=dose),
                Action("create", "Serum calcium before the first dose",
                       resource=calcium_order("Before the first denosumab dose."))), not out))
        elif kind == "alendronate":
            out.append(Suggestion("Order alendronate 70 mg once weekly to follow on", (
                Action("create", "Alendronate 70 mg by mouth once weekly, with administration instructions",
                       resource=alendronate_weekly(patient_instruction)),), not out))
    return tuple(out)


def predose_lab_actions(*, kidney: bool, calcium: bool) -> tuple[Action, ...]:
    """C-SAFE-PREDOSE-LABS: the missing pre-dose labs as orders."""
    actions = []
    if kidney:
        actions.append(Action("create", "Serum creatinine (eGFR / creatinine clearance) before the dose",
                               resource=lab_order("2160-0", "Creatinine [Mass/volume] in Serum or Plasma",
                                                  "Serum creatinine with eGFR",
                                                  note="Before zoledronic acid or denosumab.")))
    if calcium:
        actions += [
            Action("create", "Serum calcium before the dose",
                   resource=calcium_order("Before zoledronic acid or denosumab.")),
            Action("create", "Albumin (to correct the calcium)",
                   resource=lab_order("1751-7", "Albumin [Mass/volume] in Serum or Plasma", "Serum albumin")),
        ]
    return tuple(actions)


def cholecalciferol_repletion() -> dict[str, Any]:
    """TX-8 repletion order (D3 50,000 IU weekly x 8: dose from memory, U in the brief;
    the clinician confirms). RxNorm 2418 cholecalciferol (V)."""
    return medication_order("2418", "cholecalciferol", "cholecalciferol (vitamin D3) 50,000 IU", {
        "text": "50,000 IU by mouth once weekly for 8 weeks, then 800-1000 IU daily; recheck 25-OH vitamin D.",
        "timing": _per("wk", boundsDuration={"value": 8, "unit": "wk", "system": t.UCUM, "code": "wk"}),
        "route": {"text": "oral"},
        "doseAndRate": [{"doseQuantity": {"value": 50000, "unit": "IU", "system": t.UCUM, "code": "[iU]"}}]})
