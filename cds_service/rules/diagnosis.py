"""Diagnosis and risk stratification helpers (brief section 2). No cards here.

`assess(record, settings)` is the one entry point the other rule modules use:
which guideline group the patient is in, the DX-1..DX-4 diagnosis, the risk
category of brief 2.2, and the patient facts behind each, ready for card text.

Sources: WHO / AACE20 / BHOF22 (DX-1..3), ISCD via AACE20 (DX-4), AACE20 and
the seed for very high risk (union, US default), NOGG22 as an optional profile.
"""

from __future__ import annotations

import dataclasses

from cds_service.fhir import terminology as t
from cds_service.record import BmdScore, Fracture, PatientRecord, within_months
from cds_service.rules.memo import per_call
from cds_service.rules.settings import ClinicalSettings

# Guideline groups
ADULT = "adult"      # postmenopausal women and men >= 50: T-score / FRAX logic (DX-1..3)
YOUNG = "young"      # premenopausal women, men < 50, women of unknown menopausal status 45-49: DX-4
UNKNOWN = "unknown"  # sex or age not known: no classification

# Diagnoses
OSTEOPOROSIS, OSTEOPENIA, NORMAL, LOW_FOR_AGE, NOT_KNOWN = (
    "osteoporosis", "osteopenia", "normal", "below_expected_for_age", "unknown")
# Risk categories (brief 2.2)
LOW, HIGH, VERY_HIGH, NOT_ASSESSED = "low", "high", "very_high", "not_assessed"


@dataclasses.dataclass(frozen=True)
class Assessment:
    group: str
    diagnosis: str
    risk: str
    reasons: tuple[str, ...]       # facts behind the diagnosis
    vhr_reasons: tuple[str, ...]   # facts behind very high risk (empty unless VHR)

    @property
    def treatable(self) -> bool:
        """High or very high risk in the adult group: drug cards may fire."""
        return self.group == ADULT and self.risk in (HIGH, VERY_HIGH)


def guideline_group(record: PatientRecord) -> str:
    if record.sex == "female":
        if record.menopausal_status == "postmenopausal":
            return ADULT
        if record.menopausal_status == "premenopausal" or (record.age is not None and 45 <= record.age < 50):
            return YOUNG  # brief 1: 45-49 unknown status -> Z-score logic (conservative)
        return UNKNOWN
    if record.sex == "male" and record.age is not None:
        return ADULT if record.age >= 50 else YOUNG
    return UNKNOWN


def _uniq(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


@per_call
def latest_t_scores(record: PatientRecord) -> dict[str, BmdScore]:
    """record.latest_t_scores(), once per call (the drug-start facts and lowest_t read it)."""
    return record.latest_t_scores()


@per_call
def lowest_t(record: PatientRecord) -> BmdScore | None:
    """record.lowest_t, once per call (assess, very_high_risk_reasons and monitoring read it),
    from latest_t_scores as the record's own property reads it."""
    latest = latest_t_scores(record)
    return min(latest.values(), key=lambda b: b.value) if latest else None


@per_call
def assess(record: PatientRecord, settings: ClinicalSettings) -> Assessment:
    group = guideline_group(record)
    fractures = record.fragility_fractures()
    if group == YOUNG:
        return _assess_young(record, fractures)
    if group == UNKNOWN:
        return Assessment(group, NOT_KNOWN, NOT_ASSESSED, (), ())

    reasons: list[str] = []
    lowest = lowest_t(record)
    ever = record.lowest_t_ever
    in_between = lowest is not None and -2.5 < lowest.value < -1.0
    mof = record.latest_frax("mof", settings.frax_max_age_months)
    hip = record.latest_frax("hip", settings.frax_max_age_months)

    # DX-1.1: lowest T <= -2.5 now, or ever (AACE20: the diagnosis persists).
    if lowest is not None and lowest.value <= -2.5:
        reasons.append(lowest.fact())
    elif ever is not None and ever.value <= -2.5:
        reasons.append(f"{ever.fact()} (osteoporosis, diagnosis persists)")
    # DX-1.2: low-trauma hip or vertebral fracture regardless of BMD; and
    # fractures coded as osteoporotic (M80.-, Z87.310, SNOMED osteoporotic).
    named: set[str] = set()  # the resources behind the fractures named here
    for f in fractures:
        if f.site in (t.HIP, t.VERTEBRAL) or f.fragility == "specific":
            reasons.append(f.fact())
            named.update((f.ref, *f.refs))
    # DX-1.3: osteopenic T plus humerus, pelvis or distal forearm fragility fracture.
    if in_between:
        for f in fractures:
            if f.site in (t.HUMERUS, t.PELVIS, t.WRIST) and f.fragility != "specific":
                reasons += [lowest.fact(), f.fact()]  # type: ignore[union-attr]
    # DX-1.4: osteopenic T plus FRAX at treatment threshold.
    if in_between:
        if mof and mof.percent >= settings.frax_mof_threshold:
            reasons += [lowest.fact(), mof.fact()]  # type: ignore[union-attr]
        if hip and hip.percent >= settings.frax_hip_threshold:
            reasons += [lowest.fact(), hip.fact()]  # type: ignore[union-attr]
    # DX-1.5: an active osteoporosis Condition. An osteoporotic fracture code (VSAC Osteoporosis
    # With Current Fracture: 431031001, M80.0-) already named above as its fracture is not
    # "osteoporosis on the problem list" too (review 16 e46: a hip fracture read so).
    for hit in record.condition_hits("osteoporosis"):
        if hit.ref not in named:
            reasons.append(f"Osteoporosis on the problem list ({hit.code})")

    if reasons:
        vhr = very_high_risk_reasons(record, settings, fractures)
        return Assessment(group, OSTEOPOROSIS, VERY_HIGH if vhr else HIGH, _uniq(reasons), vhr)
    if in_between:
        return Assessment(group, OSTEOPENIA, LOW, (lowest.fact(),), ())  # type: ignore[union-attr]
    if record.has("osteopenia"):
        hit = record.condition_hits("osteopenia")[0]
        return Assessment(group, OSTEOPENIA, LOW, (f"Osteopenia on the problem list ({hit.code})",), ())
    if lowest is not None and lowest.value >= -1.0:
        return Assessment(group, NORMAL, LOW, (lowest.fact(),), ())
    return Assessment(group, NOT_KNOWN, NOT_ASSESSED, (), ())


def _assess_young(record: PatientRecord, fractures: list[Fracture]) -> Assessment:
    """DX-4: no T-score classification and no FRAX; Z <= -2.0 is 'below the
    expected range for age'; osteoporosis needs a fragility fracture."""
    if fractures:
        return Assessment(YOUNG, OSTEOPOROSIS, NOT_ASSESSED, _uniq([f.fact() for f in fractures]), ())
    low = [z for z in record.z_scores() if z.value <= -2.0]
    if low:
        return Assessment(YOUNG, LOW_FOR_AGE, NOT_ASSESSED, _uniq([z.fact() for z in low]), ())
    return Assessment(YOUNG, NOT_KNOWN, NOT_ASSESSED, (), ())


@per_call
def injurious_falls(record: PatientRecord, settings: ClinicalSettings) -> list[str]:
    """AACE20 "history of injurious falls" (second-pass 5): a fall coded with injury, or a
    fall dated within injurious_fall_link_days of a fracture (a fall-related fracture). A
    positive fall-risk screen is not one, nor is a "history of falling" code beside a
    fracture from another year."""
    out = [f"Fall with injury ({h.code or 'coded'}) on {h.date or 'an unknown date'}"
           for h in record.condition_hits("injurious_fall", active_only=False)[:1]]
    link = settings.injurious_fall_link_days
    for fall in record.condition_hits("falls", active_only=False):
        for f in record.fractures:
            if fall.date and f.date and abs((f.date - fall.date).days) <= link:
                gap = abs((f.date - fall.date).days)
                when = "the same day as" if gap == 0 else f"{gap} days from"
                site = "" if f.site == t.OTHER else f"{f.site} "
                return out + [f"Injurious fall: fall ({fall.code or 'coded'}) on {fall.date}, {when} the "
                              f"{site}fracture ({f.code})"]
    return out


def very_high_risk_reasons(record: PatientRecord, settings: ClinicalSettings,
                           fractures: list[Fracture] | None = None) -> tuple[str, ...]:
    """Brief 2.2, VHR = AACE20 union SEED (+ ES19, + NOGG22 with vhr_profile="nogg")."""
    today = record.today
    fractures = record.fragility_fractures() if fractures is None else fractures
    out: list[str] = []
    lowest = lowest_t(record)
    # AACE20: fracture within the past 12 months (also SEED "recent vertebral fracture").
    for f in fractures:
        if within_months(f.date, today, settings.recent_fracture_months):
            out.append(f"Recent {f.fact()[0].lower()}{f.fact()[1:]}")
    # AACE20: fracture while on approved osteoporosis therapy / on long-term glucocorticoids.
    for f in fractures:
        if f.date is None:
            continue
        for e in record.exposures(t.OSTEOPOROSIS_DRUG_CLASSES):
            if e.start and e.start < f.date and (e.active or (e.stopped and f.date <= e.stopped)):
                out.append(f"{f.fact()} while on {e.agent.replace('_', ' ')}")
        steroid = record.medications.get("corticosteroid")
        if steroid and steroid.start and steroid.start < f.date and record.long_term_corticosteroid:
            out.append(f"{f.fact()} while on long-term glucocorticoids")
    # AACE20: multiple fractures.
    if len({(f.site, f.date) for f in fractures}) >= 2:
        out.append(f"{len(fractures)} fragility fractures on record")
    # AACE20: T-score < -3.0.
    if lowest is not None and lowest.value < settings.vhr_t_score:
        out.append(lowest.fact())
    # AACE20: history of injurious falls (second-pass 5). A positive fall-risk screen alone
    # no longer counts (the brief's "positive fall-risk assessment" made too many patients
    # very high risk and sent them to anabolic-first orders; the review was right).
    if settings.vhr_include_falls:
        out += injurious_falls(record, settings)
    # AACE20: FRAX MOF > 30% or hip > 4.5%.
    mof = record.latest_frax("mof", settings.frax_max_age_months)
    hip = record.latest_frax("hip", settings.frax_max_age_months)
    if mof and mof.percent > settings.frax_vhr_mof:
        out.append(mof.fact())
    if hip and hip.percent > settings.frax_vhr_hip:
        out.append(hip.fact())
    # SEED: hip fracture with T <= -2.5; ES19: multiple vertebral fractures with T <= -2.5.
    if lowest is not None and lowest.value <= -2.5:
        if any(f.site == t.HIP for f in fractures):
            out.append(f"Hip fracture with {lowest.fact()}")
        if len([f for f in fractures if f.site == t.VERTEBRAL]) >= 2:
            out.append(f"Multiple vertebral fractures with {lowest.fact()}")
    if settings.vhr_profile == "nogg":  # NOGG22 (memory, U); high-dose steroid and FRAX x1.6 not implemented
        vertebral = [f for f in fractures if f.site == t.VERTEBRAL]
        for f in vertebral:
            if within_months(f.date, today, 24):
                out.append(f"Vertebral fracture within 2 years: {f.fact()}")
        if len(vertebral) >= 2:
            out.append(f"{len(vertebral)} vertebral fractures")
        if lowest is not None and lowest.value <= -3.5:
            out.append(lowest.fact())
    return _uniq(out)
