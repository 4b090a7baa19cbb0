"""PatientRecord: the facts the rules need, read from FHIR R4 JSON dicts.

No full model parsing (too slow for ~100 resources per call): each reader
looks at the few fields it needs, tolerantly. A resource whose reader raises
is skipped and counted (`skipped`, ids only). A missing value stays None or
absent ("unknown"); it is never turned into an abnormal one.

Which resources are read is decided first, from the resource type and its
codes alone (WANTS, below): a resource no reader wants is dropped before any
work on it (dates, quantities, text). Binding to the patient comes first, for
every resource of a type the record reads: another patient's resource is
counted as ignored even when no rule would have read it (a client mixing
patients is worth seeing in the metrics), and it costs one reference
comparison.
Free text is matched only for resources none of whose codes is known. To read
a new resource type, add a `_read_<Type>` method to _Builder and a line to
WANTS; to read new codes of a type already read, add their value set to that
line.

Long charts (thousands of resources) make this the costliest step of a call,
so what repeats is worked out once: the value sets of a coding, what a
Procedure's or Condition's code says (by its codings and text), name searches,
lab unit factors (each remembered per set of active value sets, see
_CodeMemo). A resource's concepts, as given, key its plan (_Plan: whether it
is wanted, each concept's value sets, what its reader makes of its code, how
an Observation's results are read), so the second and later resources with
the same codes skip all of that; the usual Observation is planned by its one
system and code. The record types skip the frozen guard per field when built
(_quick_init). tests/test_record_fast_paths.py builds every fixture and
real-world chart with and without these shortcuts: the records are equal.

Units (brief section 1) come from the value sets' `lab-unit` extensions:
25-OH vitamin D ng/mL, calcium mg/dL, albumin g/dL, creatinine mg/dL, FRAX
percent (a fraction is * 100), eGFR mL/min/1.73m2. Corrected calcium = Ca +
0.8 * (4.0 - albumin) with an albumin taken within `albumin_pair_days` of the Ca.
"""

from __future__ import annotations

import bisect
import calendar
import collections
import dataclasses
import datetime as dt
import decimal
import logging
import math
import operator
import re
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from cds_service import plausibility
from cds_service.fhir import deferred
from cds_service.fhir import terminology as t
from cds_service.fhir.patient_binding import FOREIGN_PATIENT, SUBJECT_FIELD, UNRESOLVED_REFERENCE, PatientBinding
from cds_service.rules.settings import DEFAULT, ClinicalSettings

log = logging.getLogger(__name__)

# Reasons in PatientRecord.ignored (and cds_record_ignored_total) for a Patient's gender or
# birthDate that its copies disagree on: not used (finish, _Builder._agreed).
PATIENT_GENDER_CONFLICT = "patient-gender-conflict"
PATIENT_BIRTHDATE_CONFLICT = "patient-birthdate-conflict"

DIAGNOSTIC_SITES = ("LS", "FN", "TH", "RADIUS")  # sites that count for the lowest T-score
_DIAGNOSTIC_SET = frozenset(DIAGNOSTIC_SITES)  # the default of t_scores and z_scores, not built per call
SITE_NAMES = {"LS": "Lumbar spine", "FN": "Femoral neck", "TH": "Total hip",
              "RADIUS": "1/3 radius", "CALCANEUS": "Calcaneus"}
FRAGILITY_SPECIFIC, PROBABLE, UNPROVEN = "specific", "probable", "unproven"
ACTIVE_CLINICAL = {"active", "recurrence", "relapse"}


# ---------------------------------------------------------------------------
# What the reader reads (the one place; see the module docstring)
# ---------------------------------------------------------------------------

# Observations read by code: value set -> what it is. Labs go under PatientRecord.labs by name.
LAB_SETS: dict[str, str] = {
    "lab-egfr": "egfr", "lab-calcium-total": "calcium", "lab-calcium-corrected": "calcium_corrected",
    "lab-albumin": "albumin", "lab-vitamin-d-25oh": "vitamin_d", "lab-pth": "pth",
    "lab-creatinine": "creatinine", "obs-body-weight": "weight", "obs-bmi": "bmi", "lab-alp": "alp",
    "lab-calcium-ionized": "calcium_ionized", "lab-creatinine-clearance": "crcl",
}
T_SCORE_SETS, Z_SCORE_SETS = "dxa-t-score-", "dxa-z-score-"  # + site: ls, fn, th, radius, calcaneus
DXA_RESULT_SETS = ("dxa-bmd", "dxa-study")                    # a DXA was done on that date
PREGNANCY_TEST_SETS = ("lab-hcg-qualitative", "obs-pregnancy-status")  # positive / negative
HCG_QUANTITATIVE_SET = "lab-hcg-quantitative"
SMOKING_SET, FALL_RISK_SET = "obs-smoking-status", "obs-fall-risk-assessment"
FES_I_SETS = (t.FES_I, t.SHORT_FES_I)  # fear of falling: no LOINC code known, read by name too
FRACTURE_SETS = "fracture-"           # a fracture finding (code or value), as Conditions are
# Tests read only as done on a date (C-SECONDARY-EVAL leaves a test on record out of its panel):
# value set -> name under PatientRecord.tests_done. Any result counts; its value is not read.
TEST_DONE_SETS: dict[str, str] = {
    "lab-phosphate": "phosphate", "lab-tsh": "tsh", "lab-blood-count": "blood_count",
    "lab-protein-electrophoresis": "protein_electrophoresis", "lab-celiac-ttg-iga": "celiac",
    "lab-urine-calcium-24h": "urine_calcium", "lab-testosterone": "testosterone",
    "lab-calcitriol": "calcitriol",  # the CKD-MBD work-up leaves a recent one out (review 14)
}
OBSERVATION_SETS: tuple[str, ...] = (
    *LAB_SETS, T_SCORE_SETS, Z_SCORE_SETS, *DXA_RESULT_SETS, *t.FRAX_SETS, *PREGNANCY_TEST_SETS,
    HCG_QUANTITATIVE_SET, SMOKING_SET, FALL_RISK_SET, *FES_I_SETS, *TEST_DONE_SETS)
# lab-calcium-ionized is read apart (calcium_ionized, mmol/L): the calcium limits are for total
# (or corrected) calcium, so it is never one of those; rules.facts.low_calcium reads its own limit.


@dataclasses.dataclass(frozen=True)
class Want:
    """Which resources of one type a reader wants. `sets`: value-set ids (or id prefixes)
    whose codes make a resource wanted; `where`: the CodeableConcepts holding those codes;
    `names`: for a resource none of whose codes is in `sets`, a test on the lower-cased
    text of those concepts (drugs by name, local T-score codes by their name). No `sets`:
    every resource of the type is read."""

    sets: tuple[str, ...] = ()
    where: Callable[[Mapping[str, Any]], tuple[Any, ...]] = lambda res: (res.get("code"),)
    names: Callable[[str], bool] | None = None


def _observation_concepts(res: Mapping[str, Any]) -> tuple[Any, ...]:
    components = res.get("component")
    if not components or not isinstance(components, list):
        return res.get("code"), res.get("valueCodeableConcept")
    return (res.get("code"), res.get("valueCodeableConcept"),
            *(c.get("code") for c in components if isinstance(c, dict)))


def medication_concept(res: Mapping[str, Any]) -> Any:
    """The medication of a MedicationRequest/Administration/Statement: its CodeableConcept,
    a contained Medication's code, or the reference's display as text."""
    concept = res.get("medicationCodeableConcept")
    if concept is None and isinstance(res.get("medicationReference"), dict):
        ref = res["medicationReference"]
        target = ref.get("reference") or ""
        if isinstance(target, str) and target.startswith("#"):
            for contained in res.get("contained") or ():
                if isinstance(contained, dict) and contained.get("id") == target[1:]:
                    concept = contained.get("code")
        if concept is None and ref.get("display"):
            concept = {"text": ref["display"]}
    return concept


READ_ALL = Want()
# medication_concept: the usual medicationCodeableConcept first, without the call (a falsy one, as it).
_MEDICATION = Want(("drug-",), lambda res: (res.get("medicationCodeableConcept") or medication_concept(res),),
                   t.drug_names_in)
WANTS: dict[str, Want] = {
    "Patient": READ_ALL,
    "Observation": Want((*OBSERVATION_SETS, FRACTURE_SETS), _observation_concepts, t.observation_names_in),
    "Condition": Want((t.CONDITION_PREFIX, FRACTURE_SETS), names=t.condition_names_in),
    # Operations are read by name and word ending too (massage safety), and a chart holds few.
    "Procedure": READ_ALL,
    "MedicationRequest": _MEDICATION,
    "MedicationAdministration": _MEDICATION,
    "MedicationStatement": _MEDICATION,
    # Care already arranged (second-pass 7): orders and visits of the `order-*` kinds.
    "ServiceRequest": Want(("order-",), lambda res: (res.get("code"), res.get("performerType")), t.care_names_in),
    "Encounter": Want(("order-",), lambda res: (*(res.get("type") if isinstance(res.get("type"), list) else ()),
                                                res.get("serviceType")), t.care_names_in),
}
# A type with a `_read_<Type>` method and no line here is read whole (READ_ALL).


def wanted(resource: Mapping[str, Any]) -> frozenset[str] | None:
    """The value sets (of its type's WANTS line) that a resource's codes are in; an empty
    set for a resource wanted whole or by name; None when no reader wants it."""
    return _codes().wanted(resource)


class _CodeMemo:
    """(resource type, system, code) -> the type's WANTS value sets holding the code: one
    dict read per coding once warm. One per set of active value sets (create_app may
    configure a site's); bounded, since requests carry arbitrary codes."""

    LIMIT = 50_000

    def __init__(self, terminology: Any) -> None:
        self.terminology = terminology
        self.memo: dict[tuple[str, str, str], frozenset[str]] = {}
        self.readings: dict[tuple[Any, ...], Any] = {}
        self.names: dict[tuple[str, str], bool] = {}
        self.factors: dict[tuple[str, str], float | None] = {}
        self.plans: dict[tuple[Any, ...], _Plan] = {}
        self.by_code: dict[tuple[str, str], _Plan] = {}

    def reading(self, read: Callable[[Any], Any], concept: Any) -> Any:
        """read(concept), remembered by all that `read` may look at: the concept's codings
        and its text (terminology reads nothing else of a CodeableConcept). Long charts
        repeat a few codes many times; this saves the name searches of each. Keyed by the
        concept as given when it is plain (_plain: cheaper than lower-casing its text)."""
        plain = _plain(concept)
        key = (read, _concept_key(concept), None) if plain is _NOT_PLAIN else (read, plain)
        found = self.readings.get(key, _UNREAD)
        if found is _UNREAD:
            found = read(concept)
            _store(self.readings, key, found)
        return found

    def factor(self, value_set: str, unit: str) -> float | None:
        """The factor t.convert multiplies a value in `unit` by (None: a unit the set does not
        know), found by converting 1.0: x * (1.0 * f) is x * f exactly."""
        key = (value_set, unit)
        found = self.factors.get(key, _UNREAD)
        if found is _UNREAD:
            found = t.convert(value_set, 1.0, unit)
            _store(self.factors, key, found)
        return found  # type: ignore[return-value]

    def names_in(self, rtype: str, test: Callable[[str], bool], text: str) -> bool:
        """test(text) for a resource none of whose codes is known, remembered by the text."""
        key = (rtype, text)
        found = self.names.get(key)
        if found is None:
            found = test(text)
            _store(self.names, key, found)
        return found

    def sets_of(self, rtype: str, concept: Any) -> frozenset[str]:
        """The value sets of `rtype`'s WANTS line that the codings of a CodeableConcept are in."""
        if not isinstance(concept, dict):
            return _NONE
        found = _NONE
        for coding in concept.get("coding") or ():
            if not isinstance(coding, dict):
                continue
            code, system = coding.get("code"), coding.get("system")
            if not isinstance(code, str):
                continue
            key = (rtype, system if isinstance(system, str) else str(system or ""), code)
            hit = self.memo.get(key)
            if hit is None:
                prefixes = WANTS.get(rtype, READ_ALL).sets
                hit = frozenset(v for v in self.terminology.concepts_for(key[1], code) if v.startswith(prefixes))
                _store(self.memo, key, hit)
            if hit:
                found = found | hit if found else hit
        return found

    def wanted(self, resource: Mapping[str, Any]) -> frozenset[str] | None:
        return self.wanted_by_concept(resource, resource["resourceType"])[0]

    def wanted_by_concept(self, resource: Mapping[str, Any], rtype: str
                          ) -> tuple[frozenset[str] | None, tuple[Any, ...], Sequence[frozenset[str]], _Plan | None]:
        """wanted(), with the concepts looked at, each one's value sets (the Observation
        reader needs them again, per concept) and their plan (None: concepts not plain)."""
        if rtype == "Observation" and resource.get("valueCodeableConcept") is None and not resource.get("component"):
            code = resource.get("code")
            # _by_code's answer for a code it has planned, without the call: one coding whose
            # (system, code) it keeps a plan for (a stored key is two strings). Anything else
            # (a code met first, another shape) goes to _by_code itself.
            plan = None
            if type(code) is dict:
                codings = code.get("coding")
                if type(codings) is list and len(codings) == 1 and type(coding := codings[0]) is dict:
                    try:
                        plan = self.by_code.get((coding.get("system"), coding.get("code")))
                    except TypeError:  # an unhashable system or code: never stored
                        plan = None
            if plan is None:
                plan = self._by_code(code)
            elif plan is _BY_TEXT:
                plan = None
            if plan is not None:
                return plan.found, (code, None), plan.hits, plan
        want = WANTS.get(rtype, READ_ALL)
        if not want.sets:
            return _NONE, (), (), None
        concepts = want.where(resource)
        key = _plain_key(rtype, concepts)
        if key is None:
            found, hits = self._wanted(rtype, want, concepts)
            return found, concepts, hits, None
        plan = self.plans.get(key)
        if plan is None:
            plan = _Plan(*self._wanted(rtype, want, concepts))
            _store(self.plans, key, plan)
        return plan.found, concepts, plan.hits, plan

    def _by_code(self, code: Any) -> _Plan | None:
        """The plan of the usual Observation (its concepts: `code` alone, no value concept, no
        components) by its one coding's system and code: for a code in a value set read,
        nothing else of the concept changes the plan (names are read only for a resource none
        of whose codes is known). None for any other code: planned by _plain_key."""
        if type(code) is not dict:
            return None
        codings = code.get("coding")
        if type(codings) is not list or len(codings) != 1:
            return None
        coding = codings[0]
        if type(coding) is not dict:
            return None
        key = (coding.get("system"), coding.get("code"))
        try:
            plan = self.by_code.get(key)  # a hit's key equals a stored one, two strings: no type checks
        except TypeError:  # an unhashable system or code
            return None
        if plan is None:
            if type(key[0]) is not str or type(key[1]) is not str:
                return None
            found, hits = self._wanted("Observation", WANTS["Observation"], (code, None))
            plan = _Plan(found, hits) if found else _BY_TEXT
            _store(self.by_code, key, plan)
        return None if plan is _BY_TEXT else plan

    def _wanted(self, rtype: str, want: Want, concepts: tuple[Any, ...]
                ) -> tuple[frozenset[str] | None, tuple[frozenset[str], ...]]:
        sets_of = self.sets_of
        hits = tuple(_NONE if concept is None else sets_of(rtype, concept) for concept in concepts)
        found = _NONE
        for hit in hits:
            if hit:
                found = found | hit if found else hit
        if found:
            return found, hits
        if want.names is not None and self.names_in(rtype, want.names, " | ".join(t.concept_text(c) for c in concepts)):
            return _NONE, hits
        return None, hits


class _Plan:
    """What the concepts of a resource say (see _plain_key), worked out for the first
    resource with those concepts and kept for the next: wanted()'s answer, each concept's
    value sets, and what the resource's reader worked out from its one concept (`reading`:
    (read, read(concept)), see _Builder._reading) or, for an Observation, whether a fracture
    set is among its value sets, how each concept's result is read and its usual result
    (`values`, see _Builder._read_Observation)."""

    __slots__ = ("found", "hits", "reading", "values")

    def __init__(self, found: frozenset[str] | None, hits: tuple[frozenset[str], ...]) -> None:
        self.found, self.hits = found, hits
        self.reading: tuple[Callable[[Any], Any], Any] | None = None
        self.values: tuple[bool, tuple[_ValuePlan, ...], _UsualResult | None] | None = None


# A code whose Observation plan depends on more than the code (see _CodeMemo._by_code).
_BY_TEXT = _Plan(None, ())


def _plain(concept: Any) -> Any:
    """All that terminology reads of a CodeableConcept, as a hashable key: its text, then
    each coding's system, code and display, as given. Only when each of those is a string
    or absent (None for no concept at all); _NOT_PLAIN for anything else."""
    if concept is None:
        return None
    if type(concept) is not dict:
        return _NOT_PLAIN
    text = concept.get("text")
    codings = concept.get("coding")
    key: tuple[Any, ...] = (text,)
    if codings is not None:
        if type(codings) is not list:
            return _NOT_PLAIN
        if len(codings) == 1 and type(codings[0]) is dict:  # the usual one coding, without a loop
            coding = codings[0]
            key = (text, coding.get("system"), coding.get("code"), coding.get("display"))
        else:
            for coding in codings:
                if type(coding) is not dict:
                    return _NOT_PLAIN
                key += (coding.get("system"), coding.get("code"), coding.get("display"))
    return key if _PLAIN_PARTS.issuperset(map(type, key)) else _NOT_PLAIN  # each a str or None, in C


_PLAIN_PARTS = frozenset({str, type(None)})


def _plain_key(rtype: str, concepts: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """The key of a resource's plan: its type and its concepts (_plain), or None when one
    of them is not plain (read afresh, as before plans)."""
    if len(concepts) == 2:  # an Observation's code and (usually no) value
        first, second = _plain(concepts[0]), _plain(concepts[1])
        if first is _NOT_PLAIN or second is _NOT_PLAIN:
            return None
        return rtype, first, second
    if len(concepts) == 1:  # a Condition's code, a drug
        concept = concepts[0]
        if type(concept) is dict:  # _plain of the usual one coding, without the call
            codings = concept.get("coding")
            if type(codings) is list and len(codings) == 1 and type(coding := codings[0]) is dict:
                first = (concept.get("text"), coding.get("system"), coding.get("code"), coding.get("display"))
                return (rtype, first) if _PLAIN_PARTS.issuperset(map(type, first)) else None
        first = _plain(concept)
        return None if first is _NOT_PLAIN else (rtype, first)
    key = (rtype, *map(_plain, concepts))
    return None if _NOT_PLAIN in key else key


def _store(cache: dict[Any, Any], key: Any, value: Any) -> None:
    """cache[key] = value, the cache emptied first when full: the code memo's caches are
    bounded (_CodeMemo.LIMIT), since requests carry arbitrary codes. Misses only."""
    if len(cache) >= _CodeMemo.LIMIT:
        cache.clear()
    cache[key] = value


_NONE: frozenset[str] = frozenset()
_UNREAD = object()
# dt.date.min and dt.date.fromordinal once: an attribute of a class is a full look-up each time.
_DAY_ZERO, _from_ordinal = dt.date.min, dt.date.fromordinal
_NOT_PLAIN = object()
_memo: list[_CodeMemo] = []


def _concept_key(concept: Any) -> tuple[tuple[tuple[str, str], ...], str] | None:
    """What terminology reads of a CodeableConcept: (system, code) of each coding, as given,
    and the lower-cased text with the displays (t.concept_text). None for a non-object,
    which every reader takes as a concept without codes or text."""
    if not isinstance(concept, dict):
        return None
    codes = tuple((str(coding.get("system") or ""), coding["code"]) for coding in concept.get("coding") or ()
                  if isinstance(coding, dict) and isinstance(coding.get("code"), str))
    return codes, t.concept_text(concept)


def _codes() -> _CodeMemo:
    """The code memo of the active value sets (a new one when they change)."""
    active = t.terms()
    current = _memo[0] if _memo else None
    if current is None or current.terminology is not active:
        current = _CodeMemo(active)
        _memo[:] = [current]
    return current


# ---------------------------------------------------------------------------
# Record types
# ---------------------------------------------------------------------------


def _quick_init(cls: type) -> type:
    """A frozen dataclass with an __init__ that fills the instance's __dict__ directly.
    The generated one calls object.__setattr__ per field (past the frozen guard), about
    twice as slow: a long chart makes thousands of these. Everything else (frozen
    attributes, equality, hashing, repr, replace()) stays the dataclass's own; a
    default_factory makes a new default per instance and __post_init__ runs last, as
    the dataclass's own __init__ does."""
    fields = dataclasses.fields(cls)
    if any(not f.init for f in fields):
        raise TypeError(f"{cls.__name__}: init=False fields are not handled here")
    namespace: dict[str, Any] = {"_NEW": object()}  # marks a default_factory field not given
    params, stores = [], []
    for f in fields:
        value = f.name
        if f.default is not dataclasses.MISSING:
            namespace[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
        elif f.default_factory is not dataclasses.MISSING:
            namespace[f"_factory_{f.name}"] = f.default_factory
            params.append(f"{f.name}=_NEW")
            value = f"_factory_{f.name}() if {f.name} is _NEW else {f.name}"
        else:
            params.append(f.name)
        stores.append(f"\n    d[{f.name!r}] = {value}")
    post = "\n    self.__post_init__()" if hasattr(cls, "__post_init__") else ""
    exec(f"def __init__(self, {', '.join(params)}):\n    d = self.__dict__{''.join(stores)}{post}\n", namespace)  # noqa: S102
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init  # type: ignore[misc]
    return cls


def _replace(item: Any, **changes: Any) -> Any:
    """dataclasses.replace(item, **changes) for a record type (_quick_init: its fields are
    its __dict__), without replace()'s look at every field of the class (about 5 us a call)."""
    new = object.__new__(type(item))
    new.__dict__.update(item.__dict__, **changes)
    return new


@_quick_init
@dataclasses.dataclass(frozen=True)
class BmdScore:
    site: str        # LS / FN / TH / RADIUS / CALCANEUS
    kind: str        # "T" or "Z"
    value: float
    date: dt.date | None
    ref: str         # "Observation/<id>"

    def fact(self) -> str:
        return f"{SITE_NAMES.get(self.site, self.site)} {self.kind}-score {score_as_written(self.value)} on {_d(self.date)}"


@_quick_init
@dataclasses.dataclass(frozen=True)
class Frax:
    kind: str        # "mof" or "hip"
    percent: float
    date: dt.date | None
    ref: str

    def fact(self) -> str:
        label = "major osteoporotic fracture" if self.kind == "mof" else "hip fracture"
        percent = as_written(self.percent, 1).removesuffix(".0")  # "22%", "3.5%", as the FRAX tool prints
        return f"FRAX 10-year {label} probability {percent}% on {_d(self.date)}"


@_quick_init
@dataclasses.dataclass(frozen=True)
class Fracture:
    """One fracture event. Codings, Conditions and Observations describing the
    same fracture (same site family, or one of them site-unspecified, dated
    within `fracture_event_window_days`) are merged into one event with the
    most specific site, the earliest date and the strongest fragility status."""

    site: str          # terminology.FRACTURE_SITES
    fragility: str     # "specific" (M80/osteoporotic SNOMED/Z87.310), "probable" (S-code at >=50), "unproven"
    date: dt.date | None
    code: str          # the code that gave the site (the first one, when none did)
    ref: str
    codes: tuple[str, ...] = ()  # every code merged into this event (card facts)
    refs: tuple[str, ...] = ()
    # Known only from a follow-up or sequela code (terminology.follow_up_code): `date` is
    # None (the fracture happened earlier, on a day not on record) and this is the day the
    # code was recorded, an upper bound for the age at fracture.
    noted: dt.date | None = None
    # The latest day a later-encounter code of this fracture (ICD-10-CM 7th character D to R:
    # routine or delayed healing, nonunion, malunion; not S, sequela) was recorded: the fracture
    # was still healing then (massage safety). It never dates the fracture (`date`).
    healing: dt.date | None = None

    @property
    def is_fragility(self) -> bool:
        return self.fragility in (FRAGILITY_SPECIFIC, PROBABLE)

    def fact(self) -> str:
        kind = {FRAGILITY_SPECIFIC: "fragility fracture", PROBABLE: "fracture (probable fragility fracture)",
                UNPROVEN: "fracture"}[self.fragility]
        site = "" if self.site == t.OTHER else f"{self.site.capitalize()} "
        text = f"{site}{kind} ({', '.join(self.codes or (self.code,))})".strip()
        when = (f"before {self.noted} (follow-up code; fracture date not on record)"
                if self.date is None and self.noted else f"on {_d(self.date)}")
        return f"{text[0].upper()}{text[1:]} {when}"


@_quick_init
@dataclasses.dataclass(frozen=True)
class EventWindow:
    """When a condition began, as far as its record bounds it when it gives no onset day: a
    partial onset date, an onset period, an onset age or age range (with the birth date: age N
    years is [birth + N, birth + N + 1)), an onset string that is a FHIR date, and its
    abatement and recordedDate (it began before either). FHIR R4 Condition.onset[x],
    abatement[x]."""
    earliest: dt.date | None  # the first day it can have begun (None: no lower bound)
    latest: dt.date           # the last day it can have begun (never after today)
    written: str              # what the record says, for card facts ("onset at age 70, abated 2024-03")


@_quick_init
@dataclasses.dataclass(frozen=True)
class ConditionHit:
    group: str         # a `condition-*` value set as a group name (terminology.group_of)
    date: dt.date | None  # onset (or recorded / performed date)
    active: bool
    code: str
    ref: str
    recorded_only: bool = False  # dated by its recordedDate alone: no onset on record
    window: EventWindow | None = None  # no onset day, but bounds on it (facts.cv_hits reads them)
    abated: dt.date | None = None  # abatement[x] as a day (a period by its end), when one is given
    # The later of onset and recordedDate (when both are given; else `date`): the last day the
    # chart says it was so. facts.coded_hypocalcemia weighs a newer calcium against it (review 20).
    noted: dt.date | None = None


@_quick_init
@dataclasses.dataclass(frozen=True)
class Lab:
    name: str          # LAB_LABELS keys: egfr, creatinine, calcium, calcium_corrected, albumin, ...
    value: float       # normalised unit
    unit: str
    date: dt.date | None
    ref: str
    high: float | None = None  # reference-range upper limit, when the result carries one (ALP)
    flag: str = ""             # interpretation code, upper case (H, HH, L, ...), when given
    comparator: str = ""       # "<", "<=", ">=", ">" when the lab reported a bound ("eGFR >60"), not a value
    low: float | None = None   # reference-range lower limit, when the result carries one (ionized calcium)
    # A bound the lab reported in another unit, as it reported it ("<75 nmol/L"): the value above
    # is converted, and "<30 ng/mL" alone was a number no lab wrote (review 16).
    reported: str = ""

    def fact(self) -> str:
        label = LAB_LABELS.get(self.name, self.name)
        decimals = LAB_DECIMALS.get(self.name, 1)
        cutoffs = _CUTOFFS.get(self.name)
        value = written_beside(self.value, decimals, cutoffs) if cutoffs else as_written(self.value, decimals)
        if self.reported:
            return f"{label} {self.comparator}{value} {self.unit} (reported as {self.reported}) on {_d(self.date)}"
        return f"{label} {self.comparator}{value} {self.unit} on {_d(self.date)}"


# An eGFR reported only as an upper bound above the lowest kidney limit ("<35", "<60"): no eGFR
# reading (rules.facts.kidney reads it as unknown), but below its own value.
EGFR_UPPER_BOUND = "egfr_upper_bound"
LAB_LABELS = {"egfr": "eGFR", EGFR_UPPER_BOUND: "eGFR", "calcium": "Serum calcium", "calcium_corrected": "Corrected calcium",
              "albumin": "Albumin", "vitamin_d": "25-OH vitamin D", "pth": "PTH",
              "creatinine": "Creatinine", "weight": "Body weight", "bmi": "BMI",
              "alp": "Alkaline phosphatase", "calcium_ionized": "Ionized calcium", "crcl": "Creatinine clearance"}
# Decimals clinicians write each value with (T-scores and FRAX: one).
LAB_DECIMALS = {"egfr": 0, EGFR_UPPER_BOUND: 0, "calcium": 1, "calcium_corrected": 1, "albumin": 1, "vitamin_d": 0, "pth": 0,
                "creatinine": 2, "weight": 0, "bmi": 1, "alp": 0, "calcium_ionized": 2, "crcl": 0}


def as_written(value: float, decimals: int) -> str:
    """A value as a clinician writes it: -3.73865 -> "-3.7", -2 -> "-2.0", eGFR 61.6 -> "62"."""
    # Half away from zero on the decimal as written (2.55 -> 2.6), not on its binary approximation.
    # Fast path (cards write several values a call; decimal costs about 1.5 us each): Python
    # writes a float (repr) as the shortest decimal that reads back as the same float, so
    # for a value of modest size that decimal and the float round alike, except at a tie of
    # the written decimal ("2.55" to one place: the float is 2.5499...), left to decimal.
    if type(value) in _FORMATTED and -1e9 < value < 1e9 and 0 <= decimals <= 6:
        written = repr(value)
        point = written.find(".")
        if "e" not in written and not (written[-1] == "5" and point >= 0 and len(written) - point - 2 == decimals):
            text = "%.*f" % (decimals, value)
            return text[1:] if text[0] == "-" and not text.strip("-0.") else text
    text = f"{decimal.Decimal(repr(value)).quantize(decimal.Decimal(1).scaleb(-decimals), decimal.ROUND_HALF_UP)}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


_FORMATTED = frozenset({float, int})  # as_written's fast path (not bool: repr True is no number)


# The T- and Z-score cut-offs as the rules compare with them: DX-1..3 (T <= -2.5 osteoporosis,
# T < -1.0 osteopenia), AACE20 VHR (T < -3.0), DX-4 (Z <= -2.0), MON-6 (T <= -2.0, <= -1.5).
_SCORE_CUTOFFS = ((-1.0, False), (-1.5, True), (-2.0, True), (-2.5, True), (-3.0, False))  # (cut, inclusive)


def score_as_written(value: float) -> str:
    """A T- or Z-score with one decimal, as clinicians write it, or with as many more as keep it on
    the same side of every cut-off (review: -2.45, osteopenia, read "T-score -2.5")."""
    return written_beside(value, 1, _SCORE_CUTOFFS)


# The kidney limits the drug labels set (rules.facts.KidneyReading.below: value < limit): kidney
# failure 15, risedronate/ibandronate 30, alendronate/zoledronic acid 35.
KIDNEY_CUTOFFS = ((15.0, False), (30.0, False), (35.0, False))
# 25-OH vitamin D: deficient below 20, target 30 ng/mL (brief TX-8, SAFE-5; AACE20). 49 nmol/L
# is 19.6 ng/mL: written "20" it contradicted the card's own "below 20 ng/mL" (clinical review 13).
VITAMIN_D_CUTOFFS = ((20.0, False), (30.0, False))
_CUTOFFS = {"egfr": KIDNEY_CUTOFFS, EGFR_UPPER_BOUND: KIDNEY_CUTOFFS, "crcl": KIDNEY_CUTOFFS, "vitamin_d": VITAMIN_D_CUTOFFS}


def written_beside(value: float, decimals: int, cutoffs: tuple[tuple[float, bool], ...]) -> str:
    """as_written with `decimals`, or with as many more as keep the value on the same side of
    every (cut, inclusive) cut-off (clinical review: eGFR 34.6 read "eGFR 35 ... below 35")."""
    for places in range(decimals, 16):
        text = as_written(value, places)
        shown = float(text)
        if all((value <= cut if inclusive else value < cut) == (shown <= cut if inclusive else shown < cut)
               for cut, inclusive in cutoffs):
            return text
    return repr(value)


LAB_UNITS = {"egfr": "mL/min/1.73m2", EGFR_UPPER_BOUND: "mL/min/1.73m2", "calcium": "mg/dL", "calcium_corrected": "mg/dL",
             "albumin": "g/dL", "vitamin_d": "ng/mL", "pth": "pg/mL", "creatinine": "mg/dL",
             "weight": "kg", "bmi": "kg/m2", "alp": "U/L", "calcium_ionized": "mmol/L", "crcl": "mL/min"}


@_quick_init
@dataclasses.dataclass(frozen=True)
class FallConcern:
    """A fear-of-falling score (FES-I 16-64 or Short FES-I 7-28)."""

    date: dt.date | None
    score: float
    short_form: bool
    ref: str


@_quick_init
@dataclasses.dataclass(frozen=True)
class Surgery:
    date: dt.date | None
    name: str
    ref: str


@_quick_init
@dataclasses.dataclass(frozen=True)
class CareEvent:
    """Care on record that may already answer an info card (second-pass 7): an
    order or referral (ServiceRequest), a procedure done, a visit (Encounter)."""

    kind: str             # terminology.CARE_KINDS: the value set it matched, e.g. "order-physical-therapy"
    date: dt.date | None  # order date, performed date or visit start (a booked future visit: today)
    source: str           # ServiceRequest / Procedure / Encounter
    ref: str

    def fact(self) -> str:
        what = {"ServiceRequest": "ordered", "Procedure": "done", "Encounter": "visit"}.get(self.source, "on record")
        return f"{CARE_LABELS.get(self.kind, self.kind)} {what} on {_d(self.date)}"


# A ServiceRequest is care arranged only when it is an order in force (FHIR R4 request-intent,
# request-status). Intents: an order (and its kinds original-, reflex-, filler-, instance-order)
# or a directive authorises care; a proposal, a plan or an option only suggests it (review: a
# PT "proposal" kept C-EXERCISE quiet). Statuses: active and completed. Not draft, revoked,
# entered-in-error; not on-hold (FHIR: the authorisation to act is temporarily withdrawn); not
# unknown (FHIR: the sender does not know which status applies, and most of them mean no care).
# An absent intent (required in R4) is not known to be an order either.
ARRANGING_INTENTS = frozenset({"order", "original-order", "reflex-order", "filler-order", "instance-order",
                               "directive"})
ARRANGED_STATUSES = frozenset({"active", "completed"})

CARE_LABELS = {t.PT_CARE: "Physical therapy", t.EXERCISE_CARE: "Exercise programme",
               t.OT_CARE: "Occupational therapy", t.FALL_ASSESSMENT_CARE: "Fall-risk assessment",
               t.SMOKING_CESSATION_CARE: "Smoking-cessation support", t.DIETITIAN_CARE: "Dietitian",
               t.DXA_CARE: "DXA", t.NEPHROLOGY_CARE: "Nephrology referral"}


@_quick_init
@dataclasses.dataclass(frozen=True)
class MedEvent:
    """One medication resource, as exposure to one agent."""

    agent: str
    drug_class: str
    resource_type: str   # MedicationRequest / MedicationAdministration / MedicationStatement
    ref: str
    status: str
    start: dt.date | None
    end: dt.date | None       # explicit end / stop date, if any
    dose_date: dt.date | None  # administration date (or statement date for a single dose)
    oncology: bool
    status_reason: str = ""    # lower-cased text of statusReason (e.g. intolerance); never logged
    daily_mg: float | None = None  # glucocorticoids: prednisone-equivalent mg/day from the dosage, if readable
    supply_end: dt.date | None = None  # MedicationRequest: last day its dispenses cover (expectedSupplyDuration x fills)
    asserted: dt.date | None = None    # MedicationStatement.dateAsserted: when the statement was last confirmed
    # The product's own dosing interval when it is not the agent's (IV ibandronate, every 3
    # months: t.iv_ibandronate); 0: the agent's (Agent.dosing_interval_days).
    interval_days: int = 0

    @property
    def interval(self) -> int:
        """Days one dose of this product covers."""
        return self.interval_days or t.AGENTS[self.agent].dosing_interval_days


@_quick_init
@dataclasses.dataclass(frozen=True)
class AgentExposure:
    agent: str
    drug_class: str
    active: bool               # active/on-hold request, active statement, or a dose within the dosing interval
    status: str                # status of the latest event
    start: dt.date | None      # earliest start
    last_dose: dt.date | None  # latest administration/statement date, else latest authoredOn
    stopped: dt.date | None    # end date of a stopped/completed course, when not active
    dose_count: int            # distinct administration / single-dose statement dates
    exposure_days: int         # merged exposure intervals
    oncology_only: bool        # every event is an oncology product (Xgeva / Zometa)
    events: tuple[MedEvent, ...]
    # Start dates of completed orders for at most one dose (within one dosing interval), oldest
    # first: each is a dose given on its date when no administration is on record (second-pass 3).
    single_orders: tuple[dt.date, ...] = ()

    @property
    def exposure_months(self) -> float:
        return self.exposure_days / 30.4375


@_quick_init
@dataclasses.dataclass(frozen=True)
class BinaryResult:
    """A positive / negative result: a fall-risk screen, a pregnancy test."""

    date: dt.date | None
    positive: bool | None  # None: result could not be read
    ref: str


FallRisk = BinaryResult
PregnancyTest = BinaryResult


@_quick_init
@dataclasses.dataclass(frozen=True)
class DraftOrder:
    resource_type: str
    id: str
    reference: str             # "MedicationRequest/<id>" for delete actions ("" without an id)
    kind: str                  # medication / dxa / massage / manual_therapy / pt_referral / other
    agents: tuple[str, ...]    # medication agents (empty when the draft names no known drug)
    drug_classes: frozenset[str]
    oncology: bool
    selected: bool             # order-select: in context.selections (always True on order-sign)
    resource: Mapping[str, Any]
    planned: dt.date | None = None  # when the order is for, if it says so (timing event / bounds / occurrence)
    interval_days: int = 0  # the product's own dosing interval (MedEvent.interval_days): IV ibandronate


@_quick_init
@dataclasses.dataclass(frozen=True)
class PatientRecord:
    today: dt.date
    patient_id: str | None
    birth_date: dt.date | None
    age: int | None
    sex: str | None                     # "female" / "male" / other FHIR gender / None
    menopausal_status: str              # postmenopausal / premenopausal / unknown / not_applicable
    bmd: tuple[BmdScore, ...]           # all T- and Z-scores, oldest first
    dxa_dates: tuple[dt.date, ...]      # distinct DXA dates (Observations + Procedures), oldest first
    frax: tuple[Frax, ...]              # oldest first
    fractures: tuple[Fracture, ...]     # oldest first (undated first)
    conditions: Mapping[str, tuple[ConditionHit, ...]]   # group -> hits
    medications: Mapping[str, AgentExposure]              # agent -> exposure
    labs: Mapping[str, tuple[Lab, ...]]  # name -> values, oldest first
    smoker: bool | None                 # None: nothing coded
    smoking_ref: str | None
    alcohol_excess: bool | None
    fall_risk: tuple[FallRisk, ...]
    drafts: tuple[DraftOrder, ...]
    skipped: tuple[str, ...]            # "Type/id" of resources that could not be read
    long_term_corticosteroid: bool
    anticoagulant: bool
    fragile_skin: bool
    smoking_date: dt.date | None = None  # date of the smoking status that set `smoker` (card facts)
    pregnancy_tests: tuple[PregnancyTest, ...] = ()   # oldest first
    fall_concern: tuple[FallConcern, ...] = ()        # FES-I / Short FES-I scores, oldest first
    surgeries: tuple[Surgery, ...] = ()               # surgical Procedures, oldest first
    cancelled_orders: tuple[MedEvent, ...] = ()       # cancelled MedicationRequests: no exposure, but a decision
    # ("Type/id", reason) of resources or values not used: another patient's, no subject,
    # an implausible value or a future date (cds_service.plausibility). Never quoted in a card.
    ignored: tuple[tuple[str, str], ...] = ()
    # "Type/id" of draft orders judged as the patient's though their subject could not be
    # resolved to them (a urn: not in context.draftOrders, an absolute URL with no fhirServer).
    unbound_drafts: tuple[str, ...] = ()
    deceased: bool = False              # Patient.deceased[x] says so: no cards at all
    # The genders copies of the Patient disagree on (sex is then prefetch.patient's, or None),
    # for the safety checks that fail closed on them.
    sex_conflict: tuple[str, ...] = ()
    # The oldest age the birthDates copies of the Patient disagree on give, for the kidney estimate
    # that fails closed on them (facts.cockcroft_gault: the lower clearance).
    oldest_conflicting_age: int | None = None
    care: tuple[CareEvent, ...] = ()    # referrals, procedures and visits that answer info cards, oldest first
    # (TEST_DONE_SETS name, date, "Type/id") of each test's latest dated result, by name
    tests_done: tuple[tuple[str, dt.date, str], ...] = ()
    # ("MedicationRequest/id", the resource as read) of the active / on-hold requests of a
    # recognised drug, as read: a card that stops one (an update action, rules.orders.stop_actions)
    # returns the EHR's own order with only its status changed.
    orders_in_force: tuple[tuple[str, Mapping[str, Any]], ...] = ()

    @property
    def ignored_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, reason in self.ignored:
            counts[reason] = counts.get(reason, 0) + 1
        return counts

    # --- convenience for rules ---------------------------------------------
    @property
    def skipped_count(self) -> int:
        return len(self.skipped)

    def t_scores(self, sites: Iterable[str] = DIAGNOSTIC_SITES) -> list[BmdScore]:
        wanted = _DIAGNOSTIC_SET if sites is DIAGNOSTIC_SITES else set(sites)
        return [b for b in self.bmd if b.kind == "T" and b.site in wanted]

    def z_scores(self, sites: Iterable[str] = DIAGNOSTIC_SITES) -> list[BmdScore]:
        wanted = _DIAGNOSTIC_SET if sites is DIAGNOSTIC_SITES else set(sites)
        return [b for b in self.bmd if b.kind == "Z" and b.site in wanted]

    @property
    def latest_dxa_date(self) -> dt.date | None:
        return self.dxa_dates[-1] if self.dxa_dates else None

    def latest_t_scores(self) -> dict[str, BmdScore]:
        """Site -> T-score from the most recent date that has diagnostic T-scores."""
        scores = [b for b in self.t_scores() if b.date]
        if not scores:
            return {}
        last = max(b.date for b in scores)  # type: ignore[type-var]
        out: dict[str, BmdScore] = {}
        for b in scores:
            if b.date == last and (b.site not in out or b.value < out[b.site].value):
                out[b.site] = b
        return out

    @property
    def lowest_t(self) -> BmdScore | None:
        """Lowest diagnostic T-score at the latest DXA date with T-scores (brief 1)."""
        latest = self.latest_t_scores()
        return min(latest.values(), key=lambda b: b.value) if latest else None

    @property
    def lowest_t_ever(self) -> BmdScore | None:
        scores = self.t_scores()
        return min(scores, key=lambda b: b.value) if scores else None

    def latest_frax(self, kind: str, max_age_months: int | None = None) -> Frax | None:
        for f in reversed(self.frax):
            if f.kind == kind:
                if max_age_months is not None and not within_months(f.date, self.today, max_age_months):
                    return None
                return f
        return None

    def lab(self, name: str, max_age_months: int | None = None) -> Lab | None:
        """Latest value of a lab (None if none, or older than max_age_months)."""
        values = self.labs.get(name, ())
        if not values:
            return None
        latest = values[-1]
        if max_age_months is not None and not within_months(latest.date, self.today, max_age_months):
            return None
        return latest

    def has(self, group: str, *, active_only: bool = True, within_months_: int | None = None) -> bool:
        return bool(self.condition_hits(group, active_only=active_only, within_months_=within_months_))

    def condition_hits(self, group: str, *, active_only: bool = True,
                       within_months_: int | None = None) -> list[ConditionHit]:
        hits = self.conditions.get(group)
        if not hits:  # most groups are absent from a chart: no copy, no filter
            return []
        hits = list(hits)
        if active_only:
            hits = [h for h in hits if h.active]
        if within_months_ is not None:
            hits = [h for h in hits if within_months(h.date, self.today, within_months_)]
        return hits

    def fragility_fractures(self) -> list[Fracture]:
        return [f for f in self.fractures if f.is_fragility]

    def exposures(self, classes: Iterable[str]) -> list[AgentExposure]:
        wanted = classes if type(classes) is frozenset else set(classes)  # rules mostly pass a frozenset
        return [e for e in self.medications.values() if e.drug_class in wanted]

    def active_agents(self, classes: Iterable[str]) -> list[AgentExposure]:
        wanted = classes if type(classes) is frozenset else set(classes)
        return [e for e in self.medications.values() if e.active and e.drug_class in wanted]

    def product_exposure(self, agent: str, oncology: bool) -> AgentExposure | None:
        """`agent`'s exposure through one kind of product only: the oncology products
        (Xgeva, Zometa; oncology=True) or the osteoporosis ones. Denosumab is one agent
        whichever product, so Prolia and Xgeva share one AgentExposure; the Prolia label's
        "patients receiving Prolia should not receive Xgeva" needs them apart (review 18)."""
        e = self.medications.get(agent)
        events = tuple(ev for ev in e.events if ev.oncology == oncology) if e else ()
        return _exposure(agent, events, self.today) if events else None

    def class_exposure_months(self, drug_class: str) -> float:
        """Cumulative months across all agents of a class, overlaps merged
        (e.g. teriparatide + abaloparatide for the PTH-analog 24-month limit)."""
        intervals = [iv for e in self.exposures([drug_class]) for iv in _event_intervals(e.events, self.today)]
        return _merged_days(intervals) / 30.4375

    def test_done(self, name: str, months: float) -> tuple[dt.date, str] | None:
        """(date, ref) of the latest result of a TEST_DONE_SETS test within `months`, else None."""
        done = next(((when, ref) for n, when, ref in self.tests_done if n == name), None)
        return done if done and within_months(done[0], self.today, months) else None

    def care_done(self, kinds: Iterable[str], months: float, *, since: dt.date | None = None) -> list[CareEvent]:
        """Care of these kinds on record within `months` (and on or after `since`), oldest first."""
        wanted = set(kinds)
        return [c for c in self.care if c.kind in wanted and within_months(c.date, self.today, months)
                and (since is None or (c.date is not None and c.date >= since))]

    @property
    def judged_drafts(self) -> list[DraftOrder]:
        """Draft orders the hook asks to judge (selected ones on order-select)."""
        return [d for d in self.drafts if d.selected]

    @property
    def female(self) -> bool:
        return self.sex == "female"

    @property
    def male(self) -> bool:
        return self.sex == "male"

    @property
    def male_on_record(self) -> bool:
        """Male, or male on one copy of the Patient where another disagrees: for a label
        contraindication in men, which fails closed as a deceased copy does."""
        return self.sex == "male" or "male" in self.sex_conflict


# ---------------------------------------------------------------------------
# Small readers
# ---------------------------------------------------------------------------

_DATE_RE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")


class PartialDate(dt.date):
    """A FHIR date given to the year or the month ("2024", "2024-03"): it reads as its first day
    and is quoted as written (review: "2024" was quoted as "2024-01-01", a day no one wrote)."""

    written = ""  # set on what parse_date makes; a date computed from one (+ days) is a full day

    def isoformat(self) -> str:
        return self.written or super().isoformat()

    __str__ = isoformat


def _partial_date(year: int, month: int, written: str) -> dt.date:
    day = PartialDate(year, month, 1)
    day.written = written
    return day


def parse_date(value: Any) -> dt.date | None:
    """FHIR date/dateTime/instant -> date. Partial dates take the first day
    (a year-only onset is read as 1 January: older, so rules stay quiet).
    Remembered by the string (_DATES): a chart repeats its days, and a date is
    the string's alone (a date object is immutable; a PartialDate's `written` is
    set once, by _partial_date)."""
    if type(value) is str:
        day = _DATES.get(value, _UNREAD)
        if day is _UNREAD:
            day = _parse_date(value)
            if len(value) <= _DATE_LENGTH:  # a longer string is no date FHIR writes: not kept
                if len(_DATES) >= _DATES_LIMIT:
                    _DATES.clear()
                _DATES[value] = day
        return day  # type: ignore[return-value]
    return _parse_date(value) if isinstance(value, str) else None


_DATES: dict[str, dt.date | None] = {}
_DATES_LIMIT = 4096  # strings; emptied when full (requests carry arbitrary text)
_DATE_LENGTH = 40    # the longest string kept ("2024-03-05T10:30:00.123456789+05:00" is 35)


def _parse_date(value: str) -> dt.date | None:
    value = value.strip()
    # The usual full date (or dateTime) first, by C code; anything else by the pattern.
    if len(value) >= 10 and value[4] == "-" and value[7] == "-":
        try:
            return dt.date.fromisoformat(value[:10])
        except ValueError:
            pass
    m = _DATE_RE.match(value)
    if not m:
        return None
    try:
        if m.group(3):
            return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        return _partial_date(int(m.group(1)), int(m.group(2) or 1), m.group(0))
    except ValueError:
        return None


def _d(value: dt.date | None) -> str:
    return value.isoformat() if value else "an unknown date"


def months_between(earlier: dt.date, later: dt.date) -> float:
    return (later - earlier).days / 30.4375


def within_months(value: dt.date | None, today: dt.date, months: float) -> bool:
    """True if `value` is known and no more than `months` before today."""
    return value is not None and months_between(value, today) <= months


def add_months(day: dt.date, months: int) -> dt.date:
    y, m = divmod(day.month - 1 + months, 12)
    year, month = day.year + y, m + 1
    last = [31, 29 if year % 4 == 0 and (year % 100 or year % 400 == 0) else 28, 31, 30, 31, 30,
            31, 31, 30, 31, 30, 31][month - 1]
    return dt.date(year, month, min(day.day, last))


def _ref(resource: Mapping[str, Any]) -> str:
    return f"{resource.get('resourceType', '?')}/{resource.get('id', '?')}"


def _first_date(*values: Any) -> dt.date | None:
    for v in values:
        d = parse_date(v)
        if d:
            return d
    return None


def _has_result(holder: Mapping[str, Any]) -> bool:
    """An Observation (or component) that reports something: a value, a component that does,
    or members (a panel). Registered or data-absent results are not a test done, nor a
    valueQuantity with a unit and no number, nor an empty value (FHIR R4 Observation.value[x]:
    the result; dataAbsentReason when there is none). Review: a TSH sent as units only, or a
    panel whose only component was data-absent, left the test out of the panel."""
    for key, value in holder.items():
        if not key.startswith("value") or value in (None, "", {}, []):
            continue
        if key == "valueQuantity" and not (isinstance(value, dict) and isinstance(value.get("value"), (int, float))):
            continue
        return True
    components = holder.get("component") if isinstance(holder.get("component"), list) else []
    return any(isinstance(c, dict) and _has_result(c) for c in components) or bool(holder.get("hasMember"))


def _period_start(period: Any) -> Any:
    return period.get("start") if isinstance(period, dict) else None


def _period_end(period: Any) -> Any:
    return period.get("end") if isinstance(period, dict) else None


def _effective(res: Mapping[str, Any]) -> dt.date | None:
    when = parse_date(res.get("effectiveDateTime"))  # the usual one, first without the rest
    if when:
        return when
    return _first_date(res.get("effectiveDateTime"), _period_start(res.get("effectivePeriod")),
                       _period_end(res.get("effectivePeriod")), res.get("effectiveInstant"), res.get("issued"))


def _quantity(value: Any) -> tuple[float, str] | None:
    """(number, unit) of a Quantity: the usual one (a JSON decimal and a unit) read here,
    anything else by _any_quantity (the same answer for this one, in more steps)."""
    if type(value) is dict:
        number = value.get("value")
        unit = value.get("code") or value.get("unit") or ""
        if type(unit) is str:
            if type(number) is float:
                return (number, unit.strip()) if math.isfinite(number) else None
            if type(number) is int and -_EXACT_INT < number < _EXACT_INT:  # float() exact, never overflows
                return float(number), unit.strip()
    return _any_quantity(value)


_EXACT_INT = 2 ** 53


def _any_quantity(value: Any) -> tuple[float, str] | None:
    if not isinstance(value, dict):
        return None
    number = value.get("value")
    if not isinstance(number, (int, float)) or isinstance(number, bool):
        return None
    unit = value.get("code") or value.get("unit") or ""
    try:
        number = float(number)
    except OverflowError:  # an integer too large for a float
        return None
    # NaN/Infinity (a FHIR server's JSON may carry them) are not values: unknown.
    return (number, str(unit).strip()) if math.isfinite(number) else None


def _collect_entries(value: Any, full_url: Any, out: list[tuple[Any, Any]]) -> None:
    """The (fullUrl, resource) pairs of a prefetch value (a resource, a Bundle of any
    type, None) appended to `out`; fullUrl is None outside a Bundle. A loop, not nested
    generators. On a malformed Bundle it raises, with the entries before the fault
    already in `out`. An entry still kept as text (fhir.deferred) is appended as
    (DEFERRED, its text), unread. _Builder.add_value walks the entries the same way
    (the hot path, with the usual entry read inline, and a Bundle within a Bundle read
    as its own); this walk serves the draft orders."""
    if value is None:
        return
    if not (isinstance(value, dict) and value.get("resourceType") == "Bundle"):
        out.append((full_url, value))
        return
    for entry in value.get("entry") or ():
        if type(entry) is deferred.Deferred:
            out.append((DEFERRED, entry))
        else:
            _collect_entry(entry, out)


def _collect_entry(entry: Any, out: list[tuple[Any, Any]], *, nested_bundles: bool = True) -> Any:
    """One entry's pairs appended to `out`. A Bundle in the entry is walked too, or, with
    nested_bundles False, returned unwalked (the record builder reads it as a Bundle of
    its own, where its `urn:` references resolve)."""
    if isinstance(entry, dict):
        resource = entry.get("resource")
        if resource is not None:
            search = entry.get("search")
            # search-mode "outcome" entries (OperationOutcome) carry no patient data
            if search and search.get("mode") == "outcome":
                return None
            if isinstance(resource, dict) and resource.get("resourceType") == "Bundle":
                if not nested_bundles:
                    return resource
                _collect_entries(resource, entry.get("fullUrl"), out)
            else:
                out.append((entry.get("fullUrl"), resource))
            return None
    if entry is not None:
        out.append((None, entry))  # malformed entry: counted by the caller
    return None


# The fullUrl place of an entry kept as text (fhir.deferred), unread.
DEFERRED = object()
# A searchset entry's usual `search` (a match), compared whole before its mode is read.
_MATCH = {"mode": "match"}


# ---------------------------------------------------------------------------
# Units (brief 1): factors from the value sets, guesses for results without one
# ---------------------------------------------------------------------------

# A result without a unit is in the unit its code implies (the value set's `default-unit`,
# e.g. 14635-7 nmol/L); failing that these guesses from the value, which only one unit
# can explain (a calcium of 2.4 is mmol/L, a creatinine of 80 umol/L, an albumin of 38 g/L);
# failing that the set's reporting unit.
_UNITLESS_GUESS: dict[str, Callable[[float], str]] = {
    "calcium": lambda v: "mmol/L" if v < 4.0 else "",
    "calcium_corrected": lambda v: "mmol/L" if v < 4.0 else "",
    "creatinine": lambda v: "umol/L" if v > 20 else "",
    "albumin": lambda v: "g/L" if v > 10 else "",
}
# Read as reported whatever the unit: labs write BMI units a dozen ways, all one unit. (eGFR's
# units are read by t.convert: mL/min as reported, mL/s x 60, any other unknown.)
_UNITS_NOT_CHECKED = frozenset({"bmi"})


def lab_value(value_set: str, value: float, unit: str, concept: Any) -> float | None:
    """A lab value in the service's unit (the value set's first `lab-unit`); None when
    its unit is not one the value set knows (unknown, never guessed)."""
    name = LAB_SETS.get(value_set, "")
    if name in _UNITS_NOT_CHECKED:
        return value
    default = "" if unit else (t.default_unit(value_set, concept) or _UNITLESS_GUESS.get(name, lambda v: "")(value))
    return t.convert(value_set, value, unit, default)


def _norm_unit(unit: str) -> str:
    return unit.replace(" ", "").lower()


def normalise_frax(value: float, unit: str) -> float | None:
    """Percent. "%" is percent; "1"/fraction units are * 100; with no unit a
    value above 1 is percent and a value <= 1 is ambiguous (hip 0.8% vs a
    fraction 0.008), so unknown rather than guessed."""
    u = _norm_unit(unit)
    if u in ("%", "percent", "{percent}"):
        return value
    if u in ("1", "{fraction}", "{ratio}", "{probability}", "{likelihood}"):
        return value * 100
    if not u:
        return value if value > 1 else None
    return None


_LABS_WITH_RANGE = frozenset({"alp", "calcium_ionized", "pth"})  # read against the lab's own limits (ALP, PTH: upper)


# ---------------------------------------------------------------------------
# The builder
# ---------------------------------------------------------------------------

class _Builder:
    # Slots: more than 30 instance attributes would leave the dict unshared and every
    # attribute read a keyed look-up (the record's hot loop reads several per resource).
    __slots__ = ("today", "settings", "binding", "ignored", "patient", "more_patients", "primary_patient", "bmd", "dxa_dates", "frax",
                 "fractures", "conditions", "events", "labs", "smoking", "fall_risk", "drafts", "skipped", "bundle_faults",
                 "seen", "ignored_keys", "trauma_dates", "pregnancy_tests", "fall_concern", "surgeries", "cancelled", "orders_in_force",
                 "care", "tests_done", "found", "concepts", "concept_sets", "plan", "ref", "codes", "believable",
                 "windows")

    def __init__(self, today: dt.date, settings: ClinicalSettings, binding: PatientBinding | None = None) -> None:
        self.today = today
        self.settings = settings
        self.binding = binding
        self.ignored: list[tuple[str, str]] = []
        self.patient: Mapping[str, Any] | None = None
        self.more_patients: list[Mapping[str, Any]] = []  # further copies of the context Patient
        self.primary_patient: Mapping[str, Any] | None = None  # prefetch.patient, sent or fetched
        self.bmd: list[BmdScore] = []
        self.dxa_dates: set[dt.date] = set()
        self.frax: list[Frax] = []
        self.fractures: list[Fracture] = []
        self.conditions: dict[str, list[ConditionHit]] = {}
        self.windows: list[tuple[str, int, Mapping[str, Any]]] = []  # (group, index, Condition): _event_window
        self.events: list[MedEvent] = []
        self.labs: dict[str, list[Lab]] = {}
        self.smoking: list[tuple[dt.date | None, bool, str]] = []
        self.fall_risk: list[FallRisk] = []
        self.drafts: list[DraftOrder] = []
        self.skipped: list[str] = []
        self.bundle_faults = 0  # prefetch values whose walk met a malformed entry ("Bundle/?" each)
        self.seen: set[str] = set()  # "Type/id" of the resources read (bound to the patient)
        self.ignored_keys: set[str] = set()  # and of those not bound: each counted once
        self.trauma_dates: list[dt.date] = []
        self.pregnancy_tests: list[PregnancyTest] = []
        self.fall_concern: list[FallConcern] = []
        self.surgeries: list[Surgery] = []
        self.cancelled: list[MedEvent] = []
        self.orders_in_force: dict[str, Mapping[str, Any]] = {}
        self.care: list[CareEvent] = []
        self.tests_done: dict[str, tuple[dt.date, str]] = {}
        self.found: frozenset[str] = frozenset()  # value sets of the resource being read (from `wanted`)
        self.concepts: tuple[Any, ...] = ()  # its concepts `wanted` looked at, and the value sets of each
        self.concept_sets: Sequence[frozenset[str]] = ()
        self.plan: _Plan | None = None  # the plan of its concepts, when they are plain
        self.ref = ""  # its "Type/id"
        self.codes = _codes()
        self.believable = plausibility.believable_dates(today)

    # --- dispatch -----------------------------------------------------------
    def add_value(self, value: Any) -> None:
        """Read a prefetch value (a resource, a Bundle of any type, None): each entry as it is
        met, in one walk (what _collect_entries collects, in its order). On a malformed
        Bundle the entries before the fault are read, the value ends there and counts in
        bundle_faults. An entry kept as text (fhir.deferred) is parsed now and freed once read."""
        if value is None:
            return
        if not (isinstance(value, dict) and value.get("resourceType") == "Bundle"):
            self.add(value)  # a resource on its own: in no Bundle, so no `urn:` alias binds it
            return
        try:
            faulted = self._add_bundle(value)
        except RecursionError:  # Bundles nested past Python's limit: unreadable from there on
            faulted = True
        if faulted:
            self.bundle_faults += 1

    def _add_bundle(self, bundle: Mapping[str, Any]) -> bool:
        """Read a Bundle's entries, its `urn:` references resolved within it (a Bundle in an
        entry is read as one of its own); True when a malformed entry ended the walk."""
        binding = self.binding
        if binding is not None:
            outer, binding.bundle = binding.bundle, bundle
        try:
            return self._add_entries(bundle)
        finally:
            if binding is not None:
                binding.bundle = outer

    def _add_entries(self, bundle: Mapping[str, Any]) -> bool:
        try:
            entries = iter(bundle.get("entry") or ())
        except TypeError:  # e.g. entry a number
            return True
        add, add_typed, kept_as_text = self.add, self._add, deferred.Deferred
        for entry in entries:
            if type(entry) is dict:
                # The usual entry (a resource other than a Bundle, a match or no search mode):
                # what _collect_entry does with it, without a call.
                resource, search = entry.get("resource"), entry.get("search")
                if type(resource) is dict:
                    rtype = resource.get("resourceType")
                    if rtype != "Bundle" and (search is None or search == _MATCH
                                              or (type(search) is dict and search.get("mode") != "outcome")):
                        if rtype == "Patient" and self._patient_elsewhere(entry.get("fullUrl"), resource):
                            continue
                        if type(rtype) is str:
                            add_typed(resource, rtype)
                        else:
                            add(resource)  # counted as unreadable
                        continue
            if type(entry) is kept_as_text:
                try:
                    entry = deferred.decode(entry)
                except Exception:  # noqa: BLE001 - e.g. nested past Python's limit: unreadable, as a bad entry
                    return True
            pairs: list[tuple[Any, Any]] = []
            try:
                nested = _collect_entry(entry, pairs, nested_bundles=False)
            except Exception:  # noqa: BLE001 - e.g. search not an object: the rest of the value is not read
                return True
            if nested is not None:
                if self._add_bundle(nested):
                    return True
                continue
            for full_url, resource in pairs:
                if not (type(resource) is dict and resource.get("resourceType") == "Patient"
                        and self._patient_elsewhere(full_url, resource)):
                    add(resource)
        return False

    def _patient_elsewhere(self, full_url: Any, resource: Mapping[str, Any]) -> bool:
        """A Patient entry whose absolute fullUrl is on another server (or names another id) is
        another patient whatever its id, as a reference to that URL is (adversarial review 13:
        such a copy with another sex or birthDate made the context patient's unknown). Ignored
        and counted; a urn: or relative fullUrl, or none, binds by id as before."""
        if self.binding is None or type(full_url) is not str or not full_url[:8].lower().startswith(
                ("http://", "https://")):
            return False
        reason = self.binding.reference_reason(full_url.strip())
        if reason != FOREIGN_PATIENT:
            return False
        self._ignore(_ref(resource), reason, resource)
        return True

    def _ignore(self, key: str, reason: str, resource: Mapping[str, Any]) -> None:
        """Count another patient's resource once by "Type/id" (under two prefetch keys it is
        one resource), each one with no id."""
        if key not in self.ignored_keys or not resource.get("id"):
            self.ignored_keys.add(key)
            self.ignored.append((key, reason))

    def add(self, resource: Any) -> None:
        rtype = resource.get("resourceType") if isinstance(resource, dict) else None
        if not isinstance(rtype, str):
            self.skipped.append("?/?")
            return
        self._add(resource, rtype)

    def _add(self, resource: Mapping[str, Any], rtype: str) -> None:
        """add() of a dict whose resourceType `rtype` is a str."""
        reader = _READERS.get(rtype)
        if reader is None:
            return  # a type no rule reads (Practitioner, OperationOutcome, ...): ignored, not malformed
        key = f"{rtype}/{resource.get('id', '?')}"  # _ref(resource)
        binding = self.binding
        if binding is not None:
            subject = resource.get("subject")
            # The usual subject "Patient/<id>" with no focus is this patient's without a call
            # (as reason_to_ignore finds for the types bound by `subject`).
            if not (rtype in _BOUND_BY_SUBJECT and type(subject) is dict and subject.get("reference") == binding.relative
                    and "focus" not in resource):
                reason = binding.reason_to_ignore(resource)
                if reason is not None:
                    self._ignore(key, reason, resource)
                    return
        # Same resource under two prefetch keys: read once. Only among resources that bound,
        # so another patient's Observation/x never hides the patient's own Observation/x.
        if key in self.seen and resource.get("id"):
            if rtype == "Patient":
                self.more_patients.append(resource)  # another copy: deceased if any copy says so
            return
        self.seen.add(key)
        try:
            found, self.concepts, self.concept_sets, self.plan = self.codes.wanted_by_concept(resource, rtype)
        except Exception:  # noqa: BLE001 - e.g. a code that is a list: unreadable, as in a reader
            self.skipped.append(key)
            return
        if found is None:
            return  # nothing any rule reads: dropped before dates and values
        self.found = found
        self.ref = key
        try:
            reader(self, resource)
        except Exception:  # noqa: BLE001 - tolerant reader: one bad resource never fails the call
            self.skipped.append(key)

    def _reading(self, read: Callable[[Any], Any], concept: Any) -> Any:
        """read(concept) for the resource's only concept: kept in its plan (one dict read
        for all its concepts say, in `add`), else in the code memo."""
        plan = self.plan
        if plan is None or len(self.concepts) != 1 or self.concepts[0] is not concept:
            return self.codes.reading(read, concept)
        reading = plan.reading
        if reading is None or reading[0] is not read:
            reading = plan.reading = (read, read(concept))
        return reading[1]

    def _lab_value(self, value_set: str, value: float, unit: str, concept: Any) -> float | None:
        """lab_value(), with the unit's factor remembered (a chart writes a few units many times)."""
        if not unit or LAB_SETS.get(value_set, "") in _UNITS_NOT_CHECKED:
            return lab_value(value_set, value, unit, concept)
        factor = self.codes.factors.get((value_set, unit), _UNREAD)  # CodeMemo.factor, its hit inline
        if factor is _UNREAD:
            factor = self.codes.factor(value_set, unit)
        return None if factor is None else value * factor  # type: ignore[operator]

    def _date_ok(self, when: dt.date | None, ref: str) -> bool:
        """False (and the resource counted as ignored) for a future or impossible date."""
        if when is None or self.believable[0] <= when <= self.believable[1]:
            return True  # plausibility.date_problem would say None: the usual case, without a call
        problem = plausibility.date_problem(when, self.today)
        if problem:
            self.ignored.append((ref, problem))
        return problem is None

    def _value_ok(self, kind: str, value: float, ref: str) -> bool:
        if plausibility.value_ok(kind, value):
            return True
        self.ignored.append((ref, plausibility.IMPLAUSIBLE_VALUE))
        return False

    # --- Patient ------------------------------------------------------------
    def _read_Patient(self, res: Mapping[str, Any]) -> None:
        if self.patient is None:
            self.patient = res  # the first copy; age and sex are read from every copy (finish)
        else:
            self.more_patients.append(res)

    # --- Observation --------------------------------------------------------
    def _read_Observation(self, res: Mapping[str, Any]) -> None:
        if res.get("status") in ("entered-in-error", "cancelled", "preliminary"):
            return
        ref = self.ref
        effective = res.get("effectiveDateTime")  # the usual one first: parse_date's memo, then the call
        when = (_DATES.get(effective) if type(effective) is str else None) or parse_date(effective) or _effective(res)
        believable = self.believable  # _date_ok's usual answer, without the call
        if when is not None and not believable[0] <= when <= believable[1] and not self._date_ok(when, ref):
            return
        code = res.get("code")
        # Whether a fracture set is among the value sets `add` found, how each concept's result
        # is read, by the value sets found for it, and its usual result's reading: kept in the plan.
        resource_plan = self.plan
        values = None if resource_plan is None else resource_plan.values
        if values is None:
            plans = tuple(map(_value_plan, self.concept_sets))
            values = (_has_fracture_set(self.found), plans, _usual_result(plans))
            if resource_plan is not None:
                resource_plan.values = values
        fracture, plans, usual = values
        # A fracture finding, by code or by value (e.g. vertebral fracture seen on VFA).
        if fracture:
            for concept in (code, res.get("valueCodeableConcept")):
                frac = t.classify_fracture(concept)
                if frac:
                    self._add_fracture(frac, when, ref)
                    break
        if usual is not None:
            # The usual result (a finite JSON decimal, a unit, no comparator), as
            # _observation_value reads it (its steps for a _UsualResult), in fewer steps.
            quantity = res.get("valueQuantity")
            if (type(quantity) is dict and quantity.get("comparator") is None
                    and type(number := quantity.get("value")) is float
                    and type(unit := quantity.get("code") or quantity.get("unit") or "") is str
                    and (unit := unit.strip()) and math.isfinite(number)):
                kind, value_set, name, units_checked, score = usual  # unpacked: a field read by name is slower
                if kind is _BMD:
                    self._bmd(name, score, (number, unit), False, when, ref)
                elif kind is _FRAX:
                    self._frax(name, (number, unit), when, ref)
                elif units_checked:
                    factor = self.codes.factors.get((value_set, unit), _UNREAD)  # _lab_value
                    if factor is _UNREAD:
                        factor = self.codes.factor(value_set, unit)
                    if factor is not None:
                        self._lab(name, number * factor, when, ref, None, "", "")
                    else:  # a unit the lab's set does not know: no reading (never guessed), counted
                        self.ignored.append((ref, plausibility.UNREADABLE_VALUE))
                else:
                    self._lab(name, number, when, ref, None, "", "")
                return  # no component holds a concept (_usual_result)
        self._observation_value(code, res, when, ref, res, plans[0])
        if len(plans) == 2:
            return  # no component holds a concept (_observation_concepts): none is read below
        i = 2  # a component's concept follows the code and the value (_observation_concepts)
        for comp in res.get("component") or ():
            if isinstance(comp, dict):
                concept = comp.get("code")
                plan = plans[i] if i < len(plans) else _value_plan(self.codes.sets_of("Observation", concept))
                self._observation_value(concept, comp, when, ref, res, plan)
                i += 1

    def _observation_value(self, concept: Any, holder: Mapping[str, Any], when: dt.date | None,
                           ref: str, res: Mapping[str, Any], plan: _ValuePlan) -> None:
        quantity = holder.get("valueQuantity")
        # _quantity's usual case (a JSON decimal and a string unit), without the call.
        if type(quantity) is dict and type(number := quantity.get("value")) is float and type(
                unit := quantity.get("code") or quantity.get("unit") or "") is str:
            qty = (number, unit.strip()) if math.isfinite(number) else None
        else:
            qty = _quantity(quantity)
        if qty is not None:
            comparator = quantity.get("comparator")
        else:
            comparator = None
            if isinstance(holder.get("valueInteger"), int) and not isinstance(holder.get("valueInteger"), bool):
                qty = (float(holder["valueInteger"]), "")
            elif plan.egfr and isinstance(holder.get("valueString"), str) and (
                    bound := _BOUND.match(holder["valueString"])):
                # Labs report a normal eGFR as a bound, often as text (">60", "> 90 mL/min/1.73m2"): the
                # bound is what is known; read as unknown it asked for an eGFR that was on file.
                # A unit after the bound ("<1.0 mL/s/1.73m2") is read like a valueQuantity's; a
                # method ("(CKD-EPI)", no "/") or none leaves mL/min. A plain number as text ("20")
                # is read by the lab branch below (adversarial review 13: it was no reading).
                tail = bound.group(3).strip()
                factor = t.convert(EGFR_SET, 1.0, tail) if "/" in tail else 1.0
                if factor is None:
                    self.ignored.append((ref, plausibility.UNREADABLE_VALUE))
                    return
                comparator, qty = bound.group(1), (float(bound.group(2)) * factor, "")
            elif plan.with_number[0] is _BMD and isinstance(holder.get("valueString"), str):
                # Review 8: a T- or Z-score sent as text ("-2.6") was skipped, and C-SCREEN-DXA said
                # "No DXA on file". A plain decimal is the score; anything else (a bound, a unit,
                # words) is no reading, but the scan was done (as _bmd does for a bound).
                # U+2212 (the minus sign, as typeset reports write it) is a minus too (review 9).
                plain = _PLAIN_DECIMAL.fullmatch(holder["valueString"].replace("\u2212", "-"))
                if plain is None:
                    self.ignored.append((ref, plausibility.UNREADABLE_VALUE))
                    self._dxa(when)
                    return
                qty = (float(plain.group(1)), "")
            elif plan.with_number[0] is _LAB and isinstance(holder.get("valueString"), str) and \
                    len(holder["valueString"]) <= _TEXT_QUANTITY_MAX:
                # Review 13: a lab sent as text ("<5.0 ng/mL", "19 nmol/L") was no reading, and
                # C-LAB-BASELINE ordered again a test done a month before. A number with an
                # optional comparator and unit is read as the same valueQuantity would be (an
                # unknown unit: no reading, counted); any other text stays unread, as before.
                text = _lab_text(holder["valueString"])
                if text:
                    comparator, qty = text[0], text[1:]
        if comparator is None:
            bounded, comparator = False, ""
        else:
            bounded = bool(comparator)  # any comparator, known or not ("ad"): a bound, not a value
            comparator = _COMPARATORS.get(comparator or "", "")
        if comparator[:1] == "<" and plan.egfr and qty and qty[0] > self.settings.egfr_risedronate_min:
            # "eGFR <60" could be 20: an upper bound above the lowest kidney limit is no eGFR reading,
            # but kept apart: "<35" is still known below alendronate's and zoledronic acid's 35.
            self._lab(EGFR_UPPER_BOUND, qty[0], when, ref, comparator=comparator)
            return
        if comparator[:1] == ">" and plan.egfr and qty and qty[0] < self.settings.egfr_alendronate_min:
            # Review 9: "eGFR >30" says only "at least 30": read as 30 it was below zoledronic acid's
            # 35. A lower bound below the highest kidney limit is no reading (as a missing eGFR);
            # ">60" / ">=90" (at or above every limit) stay a normal eGFR.
            self.ignored.append((ref, plausibility.UNREADABLE_VALUE))
            return
        kind, value_set = plan.with_number if qty else plan.without_number
        if kind is _LAB:
            v = self._lab_value(value_set, qty[0], qty[1], concept)  # type: ignore[index]
            if v is None:  # a unit the lab's set does not know: no reading (never guessed), counted
                self.ignored.append((ref, plausibility.UNREADABLE_VALUE))
            else:
                name = LAB_SETS[value_set]
                # A bound converted from another unit ("<75 nmol/L" is "<30 ng/mL"): the lab's own
                # words are kept beside it (Lab.reported), as no such number was reported.
                reported = f"{comparator}{qty[0]:g} {qty[1]}" if comparator and v != qty[0] else ""  # type: ignore[index]
                if name in _LABS_WITH_RANGE:  # the lab's own upper limit and H/L flag
                    high, low = _reference_bound(holder, "high"), _reference_bound(holder, "low")
                    self._lab(name, v, when, ref, flag=_interpretation(holder), comparator=comparator,
                              high=self._lab_value(value_set, high, qty[1], concept) if high is not None else None,  # type: ignore[index]
                              range_low=self._lab_value(value_set, low, qty[1], concept) if low is not None else None,  # type: ignore[index]
                              reported=reported)
                else:
                    self._lab(name, v, when, ref, None, "", comparator, reported=reported)
        elif kind is _BMD:
            self._bmd(value_set[len(T_SCORE_SETS):].upper(), "T" if value_set.startswith(T_SCORE_SETS) else "Z",
                      qty, bounded, when, ref)  # type: ignore[arg-type]
        elif kind is _FRAX:
            self._frax(value_set.removeprefix("frax-"), qty, when, ref)  # type: ignore[arg-type]
        elif kind is _DXA:
            self._dxa(when)
        elif kind is _PREGNANCY:
            self.pregnancy_tests.append(PregnancyTest(when, _positive(holder), ref))
        elif kind is _HCG:
            iu_l = t.convert(value_set, qty[0], qty[1])  # type: ignore[index]
            # >= 25 mIU/mL positive, < 5 negative, in between (or an unknown unit) unknown.
            positive = None if iu_l is None else (
                True if iu_l >= t.HCG_POSITIVE_IU_L else False if iu_l < t.HCG_NEGATIVE_IU_L else None)
            self.pregnancy_tests.append(PregnancyTest(when, positive, ref))
        elif kind is _SMOKING:
            self._smoking(holder.get("valueCodeableConcept"), when, ref)
        elif kind is _FALL_RISK:
            self.fall_risk.append(FallRisk(when, _fall_positive(holder), ref))
        elif kind is _FES_I:
            self.fall_concern.append(FallConcern(when, qty[0], value_set == t.SHORT_FES_I, ref))  # type: ignore[index]
        elif kind is _TEST_DONE:
            name = TEST_DONE_SETS[value_set]
            done = self.tests_done.get(name)
            if when and _has_result(holder) and (done is None or when > done[0]):
                self.tests_done[name] = (when, ref)
        if kind is not None:
            return
        if not qty:
            return
        text = t.concept_text(concept)
        # Fear of falling (FES-I / Short FES-I): no LOINC code found, read by name.
        if t.names_in(t.FES_I, text):
            self.fall_concern.append(FallConcern(when, qty[0], t.names_in(t.SHORT_FES_I, text), ref))
            return
        # FRAX by display text (hip LOINC is weakly sourced; local codes are common).
        if any(t.names_in(frax, text) for frax in t.FRAX_SETS):
            if t.name_in("hip", text):
                self._frax("hip", qty, when, ref)
            elif any(t.name_in(w, text) for w in ("major", "mof", "major osteoporotic")):
                self._frax("mof", qty, when, ref)
            return
        # T-/Z-score with a local code: site from bodySite (code first, bodySite second).
        if "t-score" in text or "z-score" in text:
            site = _site_from_body(res.get("bodySite"), text)
            if site:
                self._bmd(site, "T" if "t-score" in text else "Z", qty, bounded, when, ref)

    def _bmd(self, site: str, kind: str, qty: tuple[float, str], bounded: bool, when: dt.date | None,
             ref: str) -> None:
        value, unit = qty
        if bounded or unit.replace(" ", "").lower() in _BMD_UNITS:  # _norm_unit
            # ">-3.0" is a bound, not a score; 0.6 g/cm2 is a bone density, not a T- or Z-score
            # (review: both were read as scores and started drug cards). Neither is a reading,
            # but the scan was done: no "no DXA on file" card for it (clinical review).
            self.ignored.append((ref, plausibility.UNREADABLE_VALUE))
            self._dxa(when)
            return
        low, top = plausibility.RANGES["t_score" if kind == "T" else "z_score"]  # _value_ok, inline
        if not low <= value <= top:
            self.ignored.append((ref, plausibility.IMPLAUSIBLE_VALUE))
            return
        self.bmd.append(BmdScore(site, kind, value, when, ref))
        if when:  # _dxa
            self.dxa_dates.add(when)

    def _frax(self, kind: str, qty: tuple[float, str], when: dt.date | None, ref: str) -> None:
        percent = normalise_frax(*qty)
        if percent is None:
            log.info("FRAX value with ambiguous unit ignored")  # no id: it may be free text
            return
        low, top = plausibility.RANGES["frax"]  # _value_ok, inline
        if not low <= percent <= top:
            self.ignored.append((ref, plausibility.IMPLAUSIBLE_VALUE))
            return
        self.frax.append(Frax(kind, percent, when, ref))

    def _lab(self, name: str, value: float, when: dt.date | None, ref: str, high: float | None = None,
             flag: str = "", comparator: str = "", range_low: float | None = None, reported: str = "") -> None:
        low, top = plausibility.RANGES[name]  # _value_ok, inline: labs are most of a chart
        if not low <= value <= top:
            self.ignored.append((ref, plausibility.IMPLAUSIBLE_VALUE))
            return
        rounded = _ROUNDED.get(value) if value else None  # _round2, its hit inline
        lab = Lab(name, _round2(value) if rounded is None else rounded, LAB_UNITS[name], when, ref, high, flag,
                  comparator, range_low, reported)
        values = self.labs.get(name)
        if values is None:
            self.labs[name] = [lab]
        else:
            values.append(lab)

    def _dxa(self, when: dt.date | None) -> None:
        if when:
            self.dxa_dates.add(when)

    def _smoking(self, value: Any, when: dt.date | None, ref: str) -> None:
        answers = t.concepts_of(value)
        if t.CURRENT_SMOKER in answers:
            self.smoking.append((when, True, ref))
        elif t.NON_SMOKER in answers:
            self.smoking.append((when, False, ref))
        else:
            text = t.concept_text(value)
            if t.name_in("never", text) or t.name_in("former", text) or t.name_in("ex-smoker", text):
                self.smoking.append((when, False, ref))
            elif t.name_in("smoker", text) or t.name_in("smokes*", text):
                self.smoking.append((when, True, ref))

    # --- Condition ----------------------------------------------------------
    def _read_Condition(self, res: Mapping[str, Any]) -> None:
        verification = t.codes_in(res.get("verificationStatus"), "http://terminology.hl7.org/CodeSystem/condition-ver-status")
        if "entered-in-error" in verification or "refuted" in verification:
            return
        clinical = t.codes_in(res.get("clinicalStatus"), t.CONDITION_CLINICAL)
        active = not clinical or not ACTIVE_CLINICAL.isdisjoint(clinical)
        day = parse_date(res.get("onsetDateTime"))
        onset = day or parse_date(_period_start(res.get("onsetPeriod")))
        when = onset or parse_date(res.get("recordedDate"))
        # No onset day (a partial date, a period, an age, a string) or an abatement: its bounds are
        # read in finish(), once the birth date is known (an age needs it).
        loose = type(day) is PartialDate or (day is None and not _LOOSE_ONSET.isdisjoint(res))
        ref = self.ref
        if not self._date_ok(when, ref):
            return
        code = res.get("code")
        frac, history, groups, follow_up = self._reading(_condition_code, code)
        if frac:
            if history:
                # A "personal history of (healed) fracture" dates the entry, not the fracture
                # (EHRs and Synthea fill onset with the day it was noted). Review: Z87.310 noted
                # on alendronate read as a new fracture on therapy (C-TX-FAILURE), and as a recent
                # one making the patient very high risk (anabolic-first orders). Undated: it still
                # counts for the diagnosis (DX-1.2), never as recent or on therapy.
                self._add_fracture(frac, None, ref)
            elif frac.follow_up:
                # A later encounter or sequela code (S72.001D, M80.08XS): the same fracture as
                # its initial code, not a new one on the day of the follow-up (review: each
                # follow-up visit became another "recent fracture", hence very high risk and
                # anabolic-first orders, and a "fracture on therapy" years after the event).
                self._add_fracture(frac, None, ref, noted=when, healing=None if frac.sequela else self._visit_day(res, when))
            else:
                self._add_fracture(frac, when, ref)
        # A later-encounter or sequela code (W19.XXXD, a visit for an earlier fall's injury) dates
        # the visit, not the event: the condition is on record, its date unknown.
        self._add_groups(groups, None if follow_up else when, active, ref, recorded_only=onset is None,
                         loose=res if loose and not follow_up else None,
                         abated=_abated(res) if not _ABATEMENT.isdisjoint(res) else None,
                         noted=self._visit_day(res, when) if onset is not None and "recordedDate" in res else when)

    def _visit_day(self, res: Mapping[str, Any], when: dt.date | None) -> dt.date | None:
        """The day a later-encounter fracture code was coded: the later of its onset and its
        recordedDate (FHIR R4 Condition: onset is when the condition began, often the fracture's
        day; recordedDate the day it was recorded, the follow-up visit). Review: a D code with the
        fracture's onset and a visit last week read as no healing fracture before massage. A day
        just ahead (plausibility.FUTURE_SLACK) is today."""
        recorded = parse_date(res.get("recordedDate"))
        if recorded and plausibility.date_problem(recorded, self.today):
            recorded = None
        day = max((d for d in (when, recorded) if d), default=None)
        return min(day, self.today) if day else None

    def _add_groups(self, groups: tuple[tuple[str, str], ...], when: dt.date | None, active: bool, ref: str,
                    recorded_only: bool = False, loose: Mapping[str, Any] | None = None,
                    abated: dt.date | None = None, noted: dt.date | None = None) -> None:
        """ConditionHits of a code's (group, shown code) pairs (_condition_groups); `loose`: the
        Condition, when finish() is to read its EventWindow."""
        for group, shown in groups:
            hits = self.conditions.setdefault(group, [])
            hits.append(ConditionHit(group, when, active, shown, ref, recorded_only, None, abated, noted))
            if loose is not None:
                self.windows.append((group, len(hits) - 1, loose))
            if group == "transport_accident" and when:
                self.trauma_dates.append(when)
            elif group == "fall_risk" and active:  # "at risk for falls": a positive screen, not a fall
                self.fall_risk.append(FallRisk(when, True, ref))

    def _add_fracture(self, frac: t.FractureCode, when: dt.date | None, ref: str, *,
                      noted: dt.date | None = None, healing: dt.date | None = None) -> None:
        # fragility decided in finish(): it needs the birth date and trauma codes
        self.fractures.append(Fracture(frac.site, FRAGILITY_SPECIFIC if frac.fragility_specific else UNPROVEN,
                                       when, frac.code, ref, noted=noted, healing=healing))

    # --- Procedure ----------------------------------------------------------
    def _read_Procedure(self, res: Mapping[str, Any]) -> None:
        if res.get("status") in ("not-done", "entered-in-error", "preparation", "stopped"):
            return
        when = _first_date(res.get("performedDateTime"), _period_start(res.get("performedPeriod")),
                           _period_end(res.get("performedPeriod")))
        if not self._date_ok(when, self.ref):
            return
        ref = self.ref
        dxa, groups, surgery, care = self.codes.reading(_procedure_code, res.get("code"))
        if dxa:
            self._dxa(when)
        # Groups by code: a dialysis Procedure (SNOMED CT or CPT, condition-dialysis) is kidney failure.
        self._add_groups(groups, when, True, ref)
        category = res.get("category")
        if surgery.operation or (category is not None and t.is_surgery(None, category)):
            self.surgeries.append(Surgery(when, surgery.name, ref))
        self._add_care(care, when, res)

    # --- Care on record: orders, referrals, visits (second-pass 7) ------------
    def _add_care(self, kinds: Iterable[str], when: dt.date | None, res: Mapping[str, Any]) -> None:
        for kind in sorted(kinds):
            self.care.append(CareEvent(kind, when, res["resourceType"], self.ref))

    def _booked(self, day: dt.date | None) -> dt.date | None:
        """A date that may lie ahead (an order's occurrence, a booked visit): from today on it
        counts as today, the day the care was arranged by at the latest."""
        return min(day, self.today) if day else None

    def _read_ServiceRequest(self, res: Mapping[str, Any]) -> None:
        if res.get("status") not in ARRANGED_STATUSES or res.get("intent") not in ARRANGING_INTENTS:
            return  # not an order in force: nothing was arranged (see ARRANGING_INTENTS)
        if res.get("doNotPerform") is True:
            return  # FHIR R4 ServiceRequest.doNotPerform (a modifier): an order NOT to do it
        kinds = t.care_kinds(res.get("code"), *(res.get("performerType") and [res["performerType"]] or []))
        if not kinds:
            return
        authored = parse_date(res.get("authoredOn"))
        if authored is not None and not self._date_ok(authored, self.ref):
            return
        period = res.get("occurrencePeriod")
        when = authored or self._booked(_first_date(res.get("occurrenceDateTime"), _period_start(period)))
        self._add_care(kinds, when, res)

    def _read_Encounter(self, res: Mapping[str, Any]) -> None:
        if res.get("status") in ("cancelled", "entered-in-error"):
            return
        types = res.get("type") if isinstance(res.get("type"), list) else []
        kinds = t.care_kinds(*types, res.get("serviceType"))
        if kinds:
            self._add_care(kinds, self._booked(_first_date(_period_start(res.get("period")))), res)

    # --- Medications --------------------------------------------------------
    def _add_med(self, res: Mapping[str, Any], status: str, start: dt.date | None, end: dt.date | None,
                 dose_date: dt.date | None, into: list[MedEvent] | None = None,
                 supply_end: dt.date | None = None, asserted: dt.date | None = None) -> None:
        # The medication concept `add` looked at (WANTS: _MEDICATION), not built again.
        concept = self.concepts[0] if len(self.concepts) == 1 else medication_concept(res)
        classify = t.classify_medication
        plan = self.plan  # _reading's plan hit, without the call
        reading = None if plan is None or len(self.concepts) != 1 else plan.reading
        match = reading[1] if reading is not None and reading[0] is classify else self._reading(classify, concept)
        why = res.get("statusReason")
        reason = "" if why is None else " ".join(t.concept_text(r) for r in (why if isinstance(why, list) else [why]))
        for agent in match.agents:
            daily = glucocorticoid_daily_mg(res, concept) if agent == "corticosteroid" else None
            interval = t.IV_IBANDRONATE_DAYS if agent == "ibandronate" and t.iv_ibandronate(concept, res) else 0
            (self.events if into is None else into).append(
                MedEvent(agent, t.AGENTS[agent].drug_class, res["resourceType"], self.ref, status,
                         start, end, dose_date, match.oncology, reason, daily, supply_end, asserted, interval))
        if match.agents and into is None and status in ("active", "on-hold") and res["resourceType"] == "MedicationRequest":
            self.orders_in_force[self.ref] = res

    def _read_MedicationRequest(self, res: Mapping[str, Any]) -> None:
        status = res.get("status") or "unknown"
        if status in ("entered-in-error", "draft"):
            return
        # A future start is a planned course (kept); a future authoredOn is an impossible record.
        written = res.get("authoredOn")  # parse_date's memo first, then the call
        authored = (_DATES.get(written) if type(written) is str else None) or parse_date(written)
        believable = self.believable  # _date_ok's usual answer, without the call
        if authored is not None and not believable[0] <= authored <= believable[1] and not self._date_ok(authored, self.ref):
            return
        if status == "cancelled":
            # No dose was given under it (FHIR), so no exposure; but it records a decision
            # (e.g. denosumab cancelled = stopped, C-DMAB-STOP).
            self._add_med(res, status, authored, None, None, into=self.cancelled)
            return
        dosage = (res.get("dosageInstruction") or [{}])[0] or {}
        bounds = (((dosage.get("timing") or {}).get("repeat") or {}).get("boundsPeriod")) if isinstance(dosage, dict) else None
        dispense = res.get("dispenseRequest") or {}
        validity = dispense.get("validityPeriod")
        start = (None if bounds is None else parse_date(_period_start(bounds))) or authored or (
            None if validity is None else parse_date(_period_start(validity)))  # _first_date
        end = None if bounds is None and validity is None else _first_date(_period_end(bounds), _period_end(validity))
        supply_end = _supply_end(start, dispense)
        if end is None and status in ("completed", "stopped"):
            end = supply_end
        self._add_med(res, status, start, end, None, supply_end=supply_end)

    def _read_MedicationAdministration(self, res: Mapping[str, Any]) -> None:
        status = res.get("status") or "completed"
        if status not in ("completed", "in-progress"):
            return  # not-done, stopped before given, entered-in-error: no dose
        when = parse_date(res.get("effectiveDateTime")) or parse_date(_period_start(res.get("effectivePeriod")))  # _first_date
        believable = self.believable  # _date_ok's usual answer, without the call
        if when is not None and not believable[0] <= when <= believable[1] and not self._date_ok(when, self.ref):
            return
        self._add_med(res, "completed", when, None, when)

    def _read_MedicationStatement(self, res: Mapping[str, Any]) -> None:
        status = res.get("status") or "unknown"
        if status in ("entered-in-error", "not-taken", "intended"):
            return
        period = res.get("effectivePeriod")
        single = parse_date(res.get("effectiveDateTime"))
        start = single or parse_date(_period_start(period))
        if not self._date_ok(start, self.ref):
            return
        end = parse_date(_period_end(period))
        asserted = parse_date(res.get("dateAsserted"))
        self._add_med(res, status, start, end, single or end,
                      asserted=asserted if asserted and asserted <= self.today else None)

    # --- finish -------------------------------------------------------------
    def finish(self, drafts: Sequence[Any], selections: Sequence[str] | None,
               drafts_bundle: Any = None) -> PatientRecord:
        today, s = self.today, self.settings
        patient = self.patient or {}
        # Age and sex from every copy of the context Patient (prefetch.patient, sent or fetched,
        # and any in a Bundle), whatever the order they came in. Where copies disagree, the
        # EHR's own read of the context patient (prefetch.patient) gives the value, and the
        # disagreement is counted (never its values); without prefetch.patient the value is
        # unknown. Unknown for both had left a very-high-risk chart with no card at all (clinical
        # review 14). The safety checks fail closed on the values the copies disagree on:
        # romosozumab is a man's on any copy (male_on_record), Cockcroft-Gault takes the lower
        # estimate, and a deceased copy is enough on patient-view.
        copies = (patient, *self.more_patients)
        birth_text, birth_conflict = self._agreed(copies, "birthDate", PATIENT_BIRTHDATE_CONFLICT)
        birth = parse_date(birth_text)
        age = _age(birth, today) if birth else None
        if age is not None and not self._value_ok("age", age, _ref(patient)):
            birth = age = None  # e.g. birthDate 0001-01-01 or next year: age unknown, not 2025
        elif birth is None and birth_text:  # "1950-13-45": age unknown, counted as the bad dates of others are
            self.ignored.append((_ref(patient), plausibility.UNREADABLE_VALUE))
        conflicting_ages = [a for b in birth_conflict
                            if (d := parse_date(b)) and plausibility.value_ok("age", a := _age(d, today))]
        oldest_conflicting_age = max(conflicting_ages) if conflicting_ages else None
        sex, sex_conflict = self._agreed(copies, "gender", PATIENT_GENDER_CONFLICT)
        # Fails closed: two copies of the patient that disagree (under two prefetch keys,
        # one deceased) are deceased, whichever came first.
        deceased = self._deceased(patient) or any(self._deceased(p) for p in self.more_patients)

        fractures = tuple(fracture_events((self._fragility(f, birth) for f in self.fractures),
                                          s.fracture_event_window_days))
        for group, i, res in self.windows:
            window = _event_window(res, birth, today)
            if window:
                self.conditions[group][i] = _replace(self.conditions[group][i], window=window)
        conditions = {g: tuple(hits) for g, hits in self.conditions.items()}
        labs = {name: tuple(_sorted_labs(name, values)) for name, values in self.labs.items()}
        labs = self._corrected_calcium(labs)
        medications = self._exposures()
        smoking = sorted(self.smoking, key=lambda x: x[0] or dt.date.min)
        smoker = smoking[-1][1] if smoking else None
        smoking_ref = smoking[-1][2] if smoking else None
        smoking_date = smoking[-1][0] if smoking else None
        if any(h.active for h in conditions.get("smoker", ())):
            if smoker is None:
                hit = max((h for h in conditions["smoker"] if h.active), key=lambda h: h.date or dt.date.min)
                smoker, smoking_ref, smoking_date = True, hit.ref, hit.date
        alcohol = True if any(h.active for h in conditions.get("alcohol_excess", ())) else None

        steroid_days = s.long_term_corticosteroid_days
        long_term_steroid = any(
            e.active and e.start and (today - e.start).days >= steroid_days
            for e in medications.values() if e.drug_class == t.CORTICOSTEROID
        ) or any(h.active for h in conditions.get("long_term_steroids", ())) or any(
            h.active for h in conditions.get("glucocorticoid_osteoporosis", ()))
        anticoagulant = any(e.active for e in medications.values() if e.drug_class == t.ANTICOAGULANT)
        fragile_skin = any(h.active for h in conditions.get("fragile_skin", ()))

        draft_orders = []
        unbound_drafts: list[str] = []
        if self.binding is not None:
            self.binding.bundle = drafts_bundle  # a draft's `urn:` subject resolves in context.draftOrders
        for raw in drafts:
            # A draft is what the clinician is about to sign: one that names no subject (the sandbox
            # sends those) or one that cannot be resolved (a urn: not in context.draftOrders, an
            # absolute URL with no fhirServer) is judged as the context patient's. One naming
            # another patient is not (the web layer refuses such a call: hooks.check_draft_subjects).
            reason = self.binding.reason_to_ignore(raw) if self.binding and isinstance(raw, dict) else None
            if reason == FOREIGN_PATIENT:
                self.ignored.append((_ref(raw), reason))
                continue
            try:
                draft = _draft(raw, selections)
            except Exception:  # noqa: BLE001 - a malformed draft is skipped like any resource
                draft = None
            if draft is None:
                self.skipped.append(_ref(raw) if isinstance(raw, dict) else "?/?")
            else:
                draft_orders.append(draft)
                if reason == UNRESOLVED_REFERENCE:
                    unbound_drafts.append(_ref(raw))

        # Counts by type (and reason) only, never ids: an id may be the patient's, another
        # patient's, or free text (a name, a number) a client put there.
        if self.skipped:
            log.warning("record: skipped %d unreadable resources: %s", len(self.skipped),
                        _counted(_type_of(ref) for ref in self.skipped))
        by_date = _oldest_first
        if self.ignored:
            log.warning("record: ignored %d resources or values: %s", len(self.ignored),
                        _counted(f"{_type_of(ref)} {reason}" for ref, reason in self.ignored))
        if unbound_drafts:
            log.warning("record: judged %d draft orders whose subject could not be resolved as the context "
                        "patient's: %s", len(unbound_drafts), _counted(_type_of(ref) for ref in unbound_drafts))
        return PatientRecord(
            today=today,
            patient_id=patient.get("id") if isinstance(patient.get("id"), str) else None,
            birth_date=birth, age=age, sex=sex, sex_conflict=tuple(sorted(sex_conflict)),
            oldest_conflicting_age=oldest_conflicting_age,
            menopausal_status=_menopausal_status(sex, age, conditions),
            bmd=tuple(by_date(self.bmd)),
            dxa_dates=tuple(sorted(self.dxa_dates)),
            frax=tuple(by_date(self.frax)),
            fractures=fractures,
            conditions=conditions,
            medications=medications,
            labs=labs,
            smoker=smoker, smoking_ref=smoking_ref,
            alcohol_excess=alcohol,
            fall_risk=tuple(by_date(self.fall_risk)),
            drafts=tuple(draft_orders),
            skipped=tuple(self.skipped),
            long_term_corticosteroid=long_term_steroid,
            anticoagulant=anticoagulant,
            fragile_skin=fragile_skin,
            smoking_date=smoking_date,
            pregnancy_tests=tuple(by_date(self.pregnancy_tests)),
            fall_concern=tuple(by_date(self.fall_concern)),
            surgeries=tuple(by_date(self.surgeries)),
            cancelled_orders=tuple(self.cancelled),
            ignored=tuple(self.ignored),
            unbound_drafts=tuple(unbound_drafts),
            deceased=deceased,
            care=tuple(by_date(self.care)),
            tests_done=tuple((name, *done) for name, done in sorted(self.tests_done.items())),
            orders_in_force=tuple(self.orders_in_force.items()),
        )

    def _agreed(self, copies: Sequence[Mapping[str, Any]], field: str,
                conflict: str) -> tuple[str | None, frozenset[str]]:
        """The text every copy of the Patient that gives `field` agrees on (None when none gives
        it), and the values when two disagree: then the text is prefetch.patient's (None without
        it) and the disagreement is counted as `conflict`.
        A birthDate given to a coarser precision ("1950", "1950-03") agrees with a finer one
        that starts with it: the finer is taken."""
        values = frozenset(value for copy in copies if isinstance(value := copy.get(field), str) and value)
        if len(values) <= 1:
            return next(iter(values), None), frozenset()
        finest = max(values, key=len)
        if field == "birthDate" and all(finest.startswith(value) for value in values):
            return finest, frozenset()
        self.ignored.append((_ref(copies[0]), conflict))
        primary = self.primary_patient.get(field) if self.primary_patient is not None else None
        return (primary if isinstance(primary, str) and primary else None), values

    def _deceased(self, patient: Mapping[str, Any]) -> bool:
        """Fails closed (review: "true" as a string, "2025-02-30", "" or 1850 read as living and
        got cards): deceasedBoolean true, or "true", "yes", 1 or "1" (invalid FHIR), or any
        deceasedDateTime but a well-formed one after tomorrow (a death in the future is a data
        error: treated as living, and counted)."""
        flag = patient.get("deceasedBoolean")
        if flag is True or (type(flag) is int and flag == 1) or (
                isinstance(flag, str) and flag.strip().lower() in _DECEASED_WORDS):
            return True
        when = patient.get("deceasedDateTime")
        if when is None:
            return False
        day = parse_date(when)
        if day is not None and day > self.believable[1]:
            return self._date_ok(day, _ref(patient))  # False, counted as future-date
        return True

    def _fragility(self, f: Fracture, birth: dt.date | None) -> Fracture:
        if f.fragility == FRAGILITY_SPECIFIC:
            return f
        # S-code / any-mechanism SNOMED: probable fragility fracture at >= 50 at a typical
        # fragility site, unless a transport-accident code sits next to it (brief 8.3 note;
        # which sites: terminology.PROBABLE_FRAGILITY_SITES).
        when = f.date or f.noted  # a follow-up code: the age when it was recorded bounds the age at fracture
        if f.site not in t.PROBABLE_FRAGILITY_SITES or birth is None or when is None:
            return f  # age at fracture unknown: not proven
        if _age(birth, when) < self.settings.probable_fragility_min_age:
            return f
        if any(abs((d - when).days) <= self.settings.trauma_link_days for d in self.trauma_dates):
            return f
        # Bone metastases or skeletal malignancy on record: an any-mechanism fracture is more
        # likely pathological than osteoporotic (review: a hip S-code beside C79.51 made
        # "osteoporosis, very high risk" and anabolic-first orders; that belongs to oncology).
        if any(h.active for h in self.conditions.get("skeletal_malignancy", ())):
            return f
        return _replace(f, fragility=PROBABLE)

    def _corrected_calcium(self, labs: dict[str, tuple[Lab, ...]]) -> dict[str, tuple[Lab, ...]]:
        corrected = []
        # Albumins by date, searched by bisection: long charts hold hundreds of each lab.
        albumins = sorted((a for a in labs.get("albumin", ()) if a.date), key=lambda a: a.date)  # type: ignore[arg-type,return-value]
        days = [a.date.toordinal() for a in albumins]  # type: ignore[union-attr]
        window = self.settings.albumin_pair_days
        for ca in labs.get("calcium", ()):
            if ca.date is None:
                continue
            day = ca.date.toordinal()
            near = albumins[bisect.bisect_left(days, day - window):bisect.bisect_right(days, day + window)]
            if near:
                alb = min(near, key=lambda a: abs((a.date - ca.date).days))  # type: ignore[operator]
                corrected.append(Lab("calcium_corrected", round(ca.value + 0.8 * (4.0 - alb.value), 2),
                                     "mg/dL", ca.date, ca.ref))
        if corrected:
            labs = dict(labs, calcium_corrected=tuple(corrected))
        return labs

    def _exposures(self) -> dict[str, AgentExposure]:
        by_agent: dict[str, list[MedEvent]] = {}
        for e in self.events:
            by_agent.setdefault(e.agent, []).append(e)
        out = {}
        for agent, events in by_agent.items():
            try:  # every event has a start (the usual case): sorted by it, a key in C (a date is true)
                events = sorted(events, key=_START)
            except TypeError:  # an event without one: None and a date do not compare
                events.sort(key=_event_day)
            out[agent] = _exposure(agent, tuple(events), self.today)
        return out


_START = operator.attrgetter("start")


def _event_day(event: MedEvent) -> dt.date:
    return event.start or event.dose_date or _DAY_ZERO


def _counted(labels: Iterable[str]) -> str:
    """"Observation foreign-patient 2, Patient implausible-value 1": labels with their counts."""
    return ", ".join(f"{label} {n}" for label, n in sorted(collections.Counter(labels).items()))


def _type_of(ref: str) -> str:
    """The type of a "Type/id" as a log may give it: one the record reads, else "?"."""
    rtype = ref.partition("/")[0]
    return rtype if rtype in _READERS or rtype == "Bundle" else "?"


# Types whose patient is named in `subject` (`add` checks the usual reference itself).
_BOUND_BY_SUBJECT = frozenset(rtype for rtype, field in SUBJECT_FIELD.items() if field == "subject")

# Resource type -> its reader (a `_read_<Type>` method of _Builder).
_READERS: dict[str, Callable[[_Builder, Mapping[str, Any]], None]] = {
    name.removeprefix("_read_"): method for name, method in vars(_Builder).items() if name.startswith("_read_")}

class _SurgeryName(typing.NamedTuple):
    operation: bool  # the code's name reads as an operation (t.is_surgery without a category)
    name: str        # the name a Surgery takes


def _condition_groups(code: Any) -> tuple[tuple[str, str], ...]:
    """(group, the code a fact shows) for each condition group of a code."""
    return tuple((group, _shown_code(code, t.value_set_of(group))) for group in t.condition_groups(code))


def _condition_code(code: Any) -> tuple[t.FractureCode | None, bool, tuple[tuple[str, str], ...], bool]:
    """What a Condition's code says (for _CodeMemo.reading): its fracture, whether that is a
    history-of-fracture code, its condition groups, and whether it is a follow-up code."""
    frac = t.classify_fracture(code)
    return frac, bool(frac) and _history_code(frac.code), _condition_groups(code), t.follow_up_concept(code)


def _procedure_code(code: Any) -> tuple[bool, tuple[tuple[str, str], ...], _SurgeryName, tuple[str, ...]]:
    """What a Procedure's code says (for _CodeMemo.reading): a DXA, its condition groups, an
    operation by its name, and the kinds of care it is (a DXA done is a DXA date, not care)."""
    name = (t.concept_text(code).split(" | ") or ["surgery"])[0] or "surgery"
    return (t.is_dxa_concept(code), _condition_groups(code), _SurgeryName(t.is_surgery(code, None), name),
            tuple(sorted(t.care_kinds(code) - {t.DXA_CARE})))


# Codes that record a past fracture (Z87.310 personal history of osteoporosis fracture).
HISTORY_FRACTURE_SET = "fracture-history"


def _history_code(shown: str) -> bool:
    """Is a fracture's code (as facts print it: ICD-10-CM dotted) one that records a past fracture?"""
    return HISTORY_FRACTURE_SET in t.terms().concepts_for(t.ICD10CM, shown)

_FRAGILITY_RANK = {UNPROVEN: 0, PROBABLE: 1, FRAGILITY_SPECIFIC: 2}


def fracture_events(fractures: Iterable[Fracture], window_days: int) -> list[Fracture]:
    """Merge fracture records that describe one event; oldest first (undated first).

    Same event: dated within `window_days` of the event's first record, and the
    same site family or one of them site-unspecified (e.g. "osteoporotic
    fracture" 443165006 and "closed fracture of hip" on the same day). Undated
    records merge only with an undated record of the same site and code."""
    fractures = list(fractures)
    follow_ups = sorted((f for f in fractures if f.date is None and f.noted), key=lambda f: f.noted)  # type: ignore[arg-type,return-value]
    events: list[Fracture] = []
    for f in sorted((f for f in fractures if not (f.date is None and f.noted)),
                    key=lambda f: (f.date is not None, f.date or dt.date.min)):
        for i, e in enumerate(events):
            same_time = (e.date is None and f.date is None and e.code == f.code) or (
                e.date is not None and f.date is not None and (f.date - e.date).days <= window_days)
            if same_time and (e.site == f.site or t.OTHER in (e.site, f.site)):
                events[i] = _merge_fracture(e, f)
                break
        else:
            events.append(_replace(f, codes=(f.code,), refs=(f.ref,)))
    # A follow-up or sequela code joins the latest fracture of its site recorded before it (its
    # initial encounter), else an earlier follow-up of that site; alone, it is a fracture of
    # unknown date (counted for the diagnosis, never as recent, fresh or on therapy).
    for f in follow_ups:
        same_site = [i for i, e in enumerate(events) if e.site == f.site or t.OTHER in (e.site, f.site)]
        earlier = [i for i in same_site if (events[i].date or events[i].noted or dt.date.min) <= f.noted]  # type: ignore[operator]
        if earlier or same_site:  # a later-dated initial code (a data slip) is still the same fracture
            i = max(earlier or same_site, key=lambda i: events[i].date or events[i].noted or dt.date.min)
            events[i] = _merge_fracture(events[i], f)
        else:
            events.append(_replace(f, codes=(f.code,), refs=(f.ref,)))
    # An undated, site-unspecified "history of osteoporosis fracture" (Z87.310) beside a fracture
    # on record documents that fracture, not another one (review: it made "2 fragility fractures",
    # hence very high risk and anabolic-first orders, for one old vertebral fracture).
    history = [e for e in events if e.date is None and e.site == t.OTHER
               and all(_history_code(c) for c in e.codes)]
    others = [e for e in events if e not in history]
    if history and others:
        first = others[0]
        for h in history:
            first = _merge_fracture(first, h)
        events = [first] + others[1:]
    return events


def _merge_fracture(event: Fracture, other: Fracture) -> Fracture:
    sited = event if event.site != t.OTHER or other.site == t.OTHER else other
    return Fracture(
        site=sited.site,
        fragility=max(event.fragility, other.fragility, key=_FRAGILITY_RANK.__getitem__),
        date=event.date,  # the earlier one: records are merged oldest first
        code=sited.code, ref=sited.ref,
        codes=tuple(dict.fromkeys(event.codes + (other.code,))),
        refs=tuple(dict.fromkeys(event.refs + (other.ref,))),
        noted=None if event.date else min((d for d in (event.noted, other.noted) if d), default=None),
        healing=max((d for d in (event.healing, other.healing) if d), default=None),
    )


_WITH_FRACTURE: dict[frozenset[str], bool] = {}


def _has_fracture_set(found: frozenset[str]) -> bool:
    """Is one of these value sets a fracture set? (Remembered like _value_plan.)"""
    has = _WITH_FRACTURE.get(found)
    if has is None:
        has = any(v.startswith(FRACTURE_SETS) for v in found)
        if len(_WITH_FRACTURE) >= 10_000:
            _WITH_FRACTURE.clear()
        _WITH_FRACTURE[found] = has
    return has


# What _observation_value does with a result of a value set: (kind, whether it needs a number).
_BMD, _DXA, _FRAX, _LAB, _PREGNANCY, _HCG, _SMOKING, _FALL_RISK, _FES_I, _TEST_DONE = (
    "bmd", "dxa", "frax", "lab", "pregnancy", "hcg", "smoking", "fall-risk", "fes-i", "test-done")


def _value_kind(value_set: str) -> tuple[str, bool] | None:
    """How _observation_value reads a result of one value set: its kind and whether that
    needs a number (a result without one is then not read by this set); None: not read.
    The kinds' value sets are disjoint (tests/test_record_fast_paths.py)."""
    if value_set.startswith((T_SCORE_SETS, Z_SCORE_SETS)):
        return _BMD, True
    if value_set in DXA_RESULT_SETS:
        return _DXA, False
    if value_set in t.FRAX_SETS:
        return _FRAX, True
    if value_set in LAB_SETS:
        return _LAB, True
    if value_set in PREGNANCY_TEST_SETS:
        return _PREGNANCY, False
    if value_set == HCG_QUANTITATIVE_SET:
        return _HCG, True
    if value_set == SMOKING_SET:
        return _SMOKING, False
    if value_set == FALL_RISK_SET:
        return _FALL_RISK, False
    if value_set in FES_I_SETS:
        return _FES_I, True
    if value_set in TEST_DONE_SETS:
        return _TEST_DONE, False
    return None


class _ValuePlan(typing.NamedTuple):
    """How _observation_value reads a concept in these value sets: the first of them in
    sorted order (fracture sets left out) whose kind reads the result, with a number and
    without one ((None, ""): none does), and whether lab-egfr is one of them."""

    with_number: tuple[str | None, str]
    without_number: tuple[str | None, str]
    egfr: bool


def _plan_values(found: frozenset[str]) -> _ValuePlan:
    ordered = sorted(v for v in found if not v.startswith(FRACTURE_SETS))
    kinds = [(value_set, _value_kind(value_set)) for value_set in ordered]
    with_number = next(((kind[0], v) for v, kind in kinds if kind), (None, ""))
    without_number = next(((kind[0], v) for v, kind in kinds if kind and not kind[1]), (None, ""))
    return _ValuePlan(with_number, without_number, EGFR_SET in found)


_VALUE_PLANS: dict[frozenset[str], _ValuePlan] = {}


class _UsualResult(typing.NamedTuple):
    """What _observation_value's branch for a result with a number needs (_usual_result)."""

    kind: str            # _LAB, _BMD or _FRAX
    value_set: str
    name: str            # the lab (LAB_SETS[value_set]), the BMD site or the FRAX kind
    units_checked: bool  # a lab not in _UNITS_NOT_CHECKED: the value times the unit's factor
    score: str = ""      # a BMD: "T" or "Z"


def _usual_result(plans: tuple[_ValuePlan, ...]) -> _UsualResult | None:
    """For an Observation whose concepts are its code and value alone (no component holds
    one) and whose code reads a result with a number as a lab without a reference range,
    a T- or Z-score or a FRAX: what _observation_value works out for it. _read_Observation
    then reads the usual result (a finite decimal with a unit, no comparator) in fewer
    steps; None for anything else."""
    if len(plans) != 2:
        return None
    kind, value_set = plans[0].with_number
    if kind is _BMD:  # as _observation_value names the site and the score
        return _UsualResult(kind, value_set, value_set[len(T_SCORE_SETS):].upper(), False,
                            "T" if value_set.startswith(T_SCORE_SETS) else "Z")
    if kind is _FRAX:
        return _UsualResult(kind, value_set, value_set.removeprefix("frax-"), False)
    if kind is not _LAB:
        return None
    name = LAB_SETS[value_set]
    if name in _LABS_WITH_RANGE:
        return None
    return _UsualResult(kind, value_set, name, name not in _UNITS_NOT_CHECKED)


def _value_plan(found: frozenset[str]) -> _ValuePlan:
    """_plan_values, remembered: a chart repeats a handful of sets of value sets."""
    plan = _VALUE_PLANS.get(found)
    if plan is None:
        plan = _plan_values(found)
        if len(_VALUE_PLANS) >= 10_000:
            _VALUE_PLANS.clear()
        _VALUE_PLANS[found] = plan
    return plan


_ROUNDED: dict[float, float] = {}


def _round2(value: float) -> float:
    """round(value, 2), remembered: a float rounded to decimals goes through a decimal
    string (about 0.5 us, the costliest step of a lab), and a chart repeats its values.
    Zero is not remembered: 0.0 and -0.0 are one key but two results."""
    rounded = _ROUNDED.get(value)
    if rounded is None or not value:
        rounded = round(value, 2)
        if len(_ROUNDED) >= 10_000:
            _ROUNDED.clear()
        _ROUNDED[value] = rounded
    return rounded


def _by_date(item: Any) -> tuple[bool, dt.date]:
    return (item.date is not None, item.date or _DAY_ZERO)


_DATE = operator.attrgetter("date")


def _oldest_first(items: Sequence[Any]) -> list[Any]:
    """sorted(items, key=_by_date): the undated first, then by date, ties as given (a stable
    sort); with a key in C, not a Python call per item (long charts sort hundreds)."""
    try:  # every item dated (the usual case): one sort
        return sorted(items, key=_DATE)
    except TypeError:  # an undated item: None and a date do not compare (nor two Nones)
        return [i for i in items if i.date is None] + sorted([i for i in items if i.date is not None], key=_DATE)


def _sorted_labs(name: str, values: Sequence[Lab]) -> list[Lab]:
    """Results of one lab sorted by _lab_order: by date alone (_oldest_first) for a lab whose
    _same_day_rank is 0 for every result, or whose results are each dated on a day of their own
    (then no two share a date for the rank to order)."""
    if name not in _RANKED_SAME_DAY:
        return _oldest_first(values)
    days = set(map(_DATE, values))
    if len(days) == len(values) and None not in days:
        return sorted(values, key=_DATE)
    return sorted(values, key=_lab_order)


EGFR_SET = t.EGFR_SET  # its units are read by t.convert
# Bone mineral density units (_norm_unit): a value in one of these is a BMD, never a T- or Z-score.
_BMD_UNITS = frozenset({"g/cm2", "g/cm²", "g/cm^2", "g.cm-2", "mg/cm2", "mg/cm²"})
# A bound written as text: ">60", ">= 90 mL/min/1.73m2", "<15".
# The bound and a unit or method after it ("<30 mL/min/1.73m²", "<30 (CKD-EPI)": clinical review).
# Possessive quantifiers and ASCII digits throughout these text readers: backtracking made a long
# run of digits or spaces quadratic or cubic (adversarial review 13: 60,000 digits, 13.7 s).
_BOUND = re.compile(r"^\s*+(<=|>=|<|>|\u2264|\u2265)\s*+([0-9]++(?:\.[0-9]++)?+)\s*+([a-zA-Z/{}.0-9_\s\u00b2()\-,:]*+)$")
# A plain decimal and nothing else (surrounding spaces aside): "-2.6", " -1 ", "+0.5" (U+2212 is
# read as "-" before the match: "\u22123.4").
_PLAIN_DECIMAL = re.compile(r"\s*([+-]?\d{1,3}(?:\.\d+)?)\s*", re.ASCII)
_DECEASED_WORDS = frozenset({"true", "yes", "y", "1"})
# A lab result written as text: optional comparator, a number, an optional unit (no digits in it
# but UCUM's, e.g. "mL/min/1.73m2") and a remark in brackets: "<5.0 ng/mL", "12 ng/mL (L)", "> 150".
_NUMBER_UNIT_REMARK = r"([0-9]++(?:\.[0-9]++)?+)\s*+([A-Za-z%{\u00b5\u03bc][^\s(]*+)?+\s*+(?:\([^)]*+\))?+\s*+$"
_TEXT_QUANTITY = re.compile(r"^\s*+(<=|>=|<|>|\u2264|\u2265)?+\s*+" + _NUMBER_UNIT_REMARK)
_TEXT_QUANTITY_MAX = 64  # longer text is not a lab value: not read (and never matched at length)
# The same written with words, as labs send a bound (review 16): "less than 20 ng/mL", "below 8",
# "greater than 150 ng/mL"; unit and remark as _TEXT_QUANTITY's.
_WORD_BOUND = re.compile(
    r"^\s*+(?i:(less\s++than|lower\s++than|below|under)|(greater\s++than|more\s++than|higher\s++than|above|over))"
    r"\s++((?i:or\s++equal\s++to)\s++)?+" + _NUMBER_UNIT_REMARK)
# A result below the assay's limit, the limit beside it: "Below detection limit (<8 ng/mL)",
# "Not detected (<4.0 ng/mL)", "Undetectable: <8". The number is the limit: the value is below it
# (a written "<" or none; a ">" is not this form). Words first, then one bracket or a colon.
_BELOW_LIMIT = re.compile(
    r"^\s*+(?i:(?:below|under|less\s++than|lower\s++than)\s++(?:the\s++)?+(?:lower\s++)?+"
    r"(?:(?:detection|detectable|quantitation|quantification|reporting|reportable)\s++limit"
    r"|limit\s++of\s++(?:detection|quantitation|quantification)|detection|lod|loq|lloq)"
    r"|not\s++detected|none\s++detected|undetectable|undetected)"
    r"\s*+(?:\(\s*+(?:<|\u2264|<=)?+\s*+([0-9]++(?:\.[0-9]++)?+)\s*+([A-Za-z%{\u00b5\u03bc][^\s()]*+)?+\s*+\)"
    r"|:\s*+(?:<|\u2264|<=)?+\s*+([0-9]++(?:\.[0-9]++)?+)\s*+([A-Za-z%{\u00b5\u03bc][^\s(]*+)?+)\s*+$")
_COMPARATORS = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "\u2264": "<=", "\u2265": ">="}


def _lab_text(text: str) -> tuple[str | None, float, str] | None:
    """A lab value written as text, at most _TEXT_QUANTITY_MAX characters (the caller checks):
    (comparator or None, number, unit) from "<5.0 ng/mL", "less than 20 ng/mL" or "Below
    detection limit (<8 ng/mL)", else None (no reading). Each pattern is anchored and possessive
    throughout: linear on any text (adversarial review 13)."""
    found = _TEXT_QUANTITY.match(text)
    if found:
        return found.group(1), float(found.group(2)), (found.group(3) or "").strip()
    found = _WORD_BOUND.match(text)
    if found:
        comparator = ("<" if found.group(1) else ">") + ("=" if found.group(3) else "")
        return comparator, float(found.group(4)), (found.group(5) or "").strip()
    found = _BELOW_LIMIT.match(text)
    if found:
        number, unit = found.group(1, 2) if found.group(1) else found.group(3, 4)
        return "<", float(number), (unit or "").strip()
    return None


def _lab_order(lab: Lab) -> tuple[bool, dt.date, float]:
    """Oldest first (undated first), then _same_day_rank."""
    return (lab.date is not None, lab.date or _DAY_ZERO, _same_day_rank(lab))


_RANKED_SAME_DAY = frozenset({"vitamin_d", "egfr"})  # the labs _same_day_rank ranks


def _same_day_rank(lab: Lab) -> float:
    """Order of results of one lab on one day, the one the rules read last. One draw can
    report several: a fractionated 25-OH vitamin D gives the total beside its D2 and D3
    fractions (LC-MS/MS reports), and until 2021 eGFR came as a pair "among blacks" /
    "among non-blacks" (48643-1 / 48642-3, 88293-6 / 88294-4). The highest 25-OH vitamin D
    is the total (no fraction reads as a deficiency); the lowest eGFR is the race-free,
    conservative one (NKF-ASN 2021 task force). Review: which one the rules read had
    depended on the order the server listed them in."""
    return lab.value if lab.name == "vitamin_d" else -lab.value if lab.name == "egfr" else 0.0


def _age(birth: dt.date, on: dt.date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


# Condition fields that bound the onset when no onset day is given (EventWindow).
_LOOSE_ONSET = frozenset({"onsetPeriod", "onsetAge", "onsetRange", "onsetString", "abatementDateTime",
                          "abatementAge", "abatementPeriod", "abatementRange", "abatementString"})
_FHIR_DATE = re.compile(r"\d{4}(-\d{2}(-\d{2})?)?")  # a FHIR date: YYYY, YYYY-MM or YYYY-MM-DD
_AGE_MONTHS = {"a": 12, "yr": 12, "year": 12, "years": 12, "mo": 1, "month": 1, "months": 1}
_AGE_DAYS = {"wk": 7, "week": 7, "weeks": 7, "d": 1, "day": 1, "days": 1}


def _last_day(day: dt.date) -> dt.date:
    """The last day a date written to the year or month can mean ("2024" -> 2024-12-31)."""
    written = day.isoformat()
    if len(written) == 4:
        return dt.date(day.year, 12, 31)
    if len(written) == 7:
        return dt.date(day.year, day.month, calendar.monthrange(day.year, day.month)[1])  # never past 9999-12-31
    return day


def _date_string(value: Any) -> dt.date | None:
    """onsetString / abatementString: a date only when the whole string is a FHIR date."""
    return parse_date(value.strip()) if isinstance(value, str) and _FHIR_DATE.fullmatch(value.strip()) else None


def _after_birth(birth: dt.date, value: float, unit: str) -> dt.date | None:
    months, days = _AGE_MONTHS.get(unit), _AGE_DAYS.get(unit)
    try:
        if months:
            return add_months(birth, months * math.floor(value))
        if days:
            return birth + dt.timedelta(days=days * math.floor(value))
    except (OverflowError, ValueError):
        pass
    return None


def _age_span(quantity: Any, birth: dt.date | None) -> tuple[dt.date | None, dt.date, str] | None:
    """(first day, last day, words) an Age means: age N (years, months, weeks or days: the unit is
    needed, never guessed) is [birth + N, birth + N + 1 unit); "<" and "<=" keep the upper bound
    only; ">" and ">=" give none."""
    if birth is None or not isinstance(quantity, dict):
        return None
    value, unit = quantity.get("value"), quantity.get("code") or quantity.get("unit")
    if type(value) not in (int, float) or not isinstance(unit, str) or not 0 <= value <= 150 * 366:
        return None
    unit = unit.strip().lower()
    comparator = quantity.get("comparator")
    if comparator in (">", ">="):
        return None
    start, end = _after_birth(birth, value, unit), _after_birth(birth, value + 1, unit)
    if start is None or end is None:
        return None
    words = f"{value:g}" if _AGE_MONTHS.get(unit) == 12 else f"{value:g} {unit}"
    return (None if comparator else start), end - dt.timedelta(days=1), words


_ABATEMENT = frozenset({"abatementDateTime", "abatementString", "abatementPeriod"})


def _abated(res: Mapping[str, Any]) -> dt.date | None:
    """The day a Condition abated (FHIR R4 abatement[x]: a dateTime, a string that is a FHIR
    date, a period by its end), else None. A date to the month or year reads as its first day."""
    return (parse_date(res.get("abatementDateTime")) or _date_string(res.get("abatementString"))
            or parse_date(_period_end(res.get("abatementPeriod"))))


def _event_window(res: Mapping[str, Any], birth: dt.date | None, today: dt.date) -> EventWindow | None:
    """The EventWindow of a Condition with no onset day, else None (nothing bounds its onset from
    above: it stays undated or dated by its recordedDate). A bound before the birth date or the
    believable past, or beginning in the future (an abatement next year), is no bound."""
    spans: list[tuple[dt.date | None, dt.date, str]] = []  # (first day, last day, words)
    day = parse_date(res.get("onsetDateTime"))
    if day is not None:
        spans.append((day, _last_day(day), f"onset {day}"))
    period = res.get("onsetPeriod")
    end = parse_date(_period_end(period)) if day is None else None
    if end is not None:
        start = parse_date(_period_start(period))
        spans.append((start, _last_day(end), f"onset between {start} and {end}" if start else f"onset by {end}"))
    if day is None and end is None:
        age = _age_span(res.get("onsetAge"), birth)
        if age:
            spans.append((age[0], age[1], f"onset at age {age[2]}"))
        age_range = res.get("onsetRange") if isinstance(res.get("onsetRange"), dict) else {}
        high, low = _age_span(age_range.get("high"), birth), _age_span(age_range.get("low"), birth)
        if high:
            spans.append((low[0] if low else None, high[1],
                          f"onset at age {low[2] if low else '?'} to {high[2]}"))
        written = _date_string(res.get("onsetString"))
        if written:
            spans.append((written, _last_day(written), f"onset {written}"))
    # It began before it abated (abatement[x]); an abatement period or range, by its end.
    abated = _abated(res)
    if abated:
        spans.append((None, _last_day(abated), f"abated {abated}"))
    age = _age_span(res.get("abatementAge"), birth) or _age_span(
        (res.get("abatementRange") or {}).get("high") if isinstance(res.get("abatementRange"), dict) else None, birth)
    if age:
        spans.append((None, age[1], f"abated by age {age[2]}"))
    floor = max(birth or plausibility.EARLIEST, plausibility.EARLIEST)
    spans = [s for s in spans if s[1] >= floor and (s[0] or s[1]) <= today + plausibility.FUTURE_SLACK]
    if not spans:
        return None
    recorded = parse_date(res.get("recordedDate"))
    latest = min([s[1] for s in spans] + [today] + ([recorded] if recorded and recorded >= floor else []))
    earliest = max((dt.date.fromordinal(s[0].toordinal()) for s in spans if s[0]), default=None)  # a full day
    return EventWindow(earliest if earliest and earliest <= latest else None, latest, ", ".join(s[2] for s in spans))


def _menopausal_status(sex: str | None, age: int | None, conditions: Mapping[str, Sequence[ConditionHit]]) -> str:
    """Brief 1: females >= 50 postmenopausal unless coded premenopausal; < 45
    with no evidence premenopausal; 45-49 with no data unknown."""
    if sex != "female":
        return "not_applicable" if sex == "male" else "unknown"
    if conditions.get("postmenopausal"):
        return "postmenopausal"
    if any(h.active for h in conditions.get("premenopausal", ())):
        return "premenopausal"
    if age is None:
        return "unknown"
    if age >= 50:
        return "postmenopausal"
    if age < 45:
        return "premenopausal"
    return "unknown"


def _shown_code(code: Any, value_set: str) -> str:
    """The code a card fact quotes for a group hit: the first coding in the group's value set
    (ICD-10-CM first, then SNOMED CT, then others); matched by name, the first ICD-10-CM or SNOMED CT code."""
    pairs = sorted(t.codings(code), key=lambda p: (p[0] != t.ICD10CM, p[0] != t.SNOMED))
    for system, value in pairs:
        if value_set in t.terms().concepts_for(system, value):
            return t.shown_code(system, value)
    return next((t.shown_code(s, v) for s, v in pairs if s in (t.ICD10CM, t.SNOMED)), "")


def _site_from_body(body: Any, text: str) -> str | None:
    words = t.concept_text(body) + " " + text
    if "spine" in words or "lumbar" in words:
        return "LS"
    if "neck" in words and "fem" in words:
        return "FN"
    if "hip" in words:
        return "TH"
    if "radius" in words or "forearm" in words:
        return "RADIUS"
    return None


def _fall_positive(holder: Mapping[str, Any]) -> bool | None:
    if isinstance(holder.get("valueBoolean"), bool):
        return holder["valueBoolean"]
    text = t.concept_text(holder.get("valueCodeableConcept"))
    if isinstance(holder.get("valueString"), str):
        text += " " + holder["valueString"].lower()
    if not text.strip():
        return None
    if any(w in text for w in ("no risk", "low risk", "not at risk", "negative")):
        return False
    if any(w in text for w in ("high risk", "at risk", "positive", "moderate risk")):
        return True
    return None


def _positive(holder: Mapping[str, Any]) -> bool | None:
    """A qualitative result (pregnancy test / status): True, False or None (unreadable)."""
    if isinstance(holder.get("valueBoolean"), bool):
        return holder["valueBoolean"]
    concept = holder.get("valueCodeableConcept")
    answers = t.concepts_of(concept)
    if t.POSITIVE in answers:
        return True
    if t.NEGATIVE in answers:
        return False
    text = t.concept_text(concept)
    if isinstance(holder.get("valueString"), str):
        text += " " + holder["valueString"].lower()
    if any(w in text for w in ("negative", "not detected", "not pregnant", "absent")):
        return False
    if any(w in text for w in ("positive", "detected", "pregnant", "present")):
        return True
    return None


def _reference_bound(holder: Mapping[str, Any], side: str) -> float | None:
    """The result's own reference-range limit ("high" or "low"), the first one given."""
    for rng in holder.get("referenceRange") or ():
        if isinstance(rng, dict):
            q = _quantity(rng.get(side))
            if q:
                return q[0]
    return None


def _interpretation(holder: Mapping[str, Any]) -> str:
    interp = holder.get("interpretation")
    for concept in interp if isinstance(interp, list) else [interp]:
        for _, code in t.codings(concept):
            return code.upper()
    return ""


# A strength or dose in mg; never inside a longer number (the look-behind keeps the search linear).
_MG = re.compile(r"(?<![0-9.])([0-9]++(?:\.[0-9]++)?+)\s*+mg\b")
# A tablet count in dosage text ("2 tablets daily"), times the strength named in the drug when the
# text names no mg (ACR22 dose thresholds; review 14). Not a fraction or range ("1/2", "2-3"): unread.
# Possessive, as _MG: linear on a long run of digits.
_TABLETS = re.compile(r"(?<![0-9a-z./-])([0-9]++(?:\.[0-9]++)?+|one|two|three|four)\s*+(?:tablets?|tabs?)\b")
_TABLET_WORDS = {"one": 1.0, "two": 2.0, "three": 3.0, "four": 4.0}
# A count of tablets of a written strength: "2 x 5 mg tablets", "2x5mg", "two 5 mg tablets" are
# 10 mg (review 16: read as 5 mg, a steroid dose under-read can miss C-GIOP; ACR22). One digit
# 1-9 before "x" (a dispensed "30 x 5 mg" is no dose), or a count word (_TABLET_WORDS) before
# "x" or the strength. Possessive and anchored by the look-behind, as _TABLETS: linear.
_COUNT_OF_MG = re.compile(r"(?<![0-9a-z./-])(?:([1-9])\s*+[x\u00d7*]|(one|two|three|four)\s*+[x\u00d7*]?+)"
                          r"\s*+([0-9]++(?:\.[0-9]++)?+)\s*+mg\b")
_PER_DAY_WORDS = (("every other day", 0.5), ("alternate day", 0.5), ("four times", 4.0), ("qid", 4.0),
                  ("three times", 3.0), ("tid", 3.0), ("t.i.d", 3.0), ("twice", 2.0), ("bid", 2.0),
                  ("b.i.d", 2.0), ("two times", 2.0), ("once daily", 1.0), ("once a day", 1.0),
                  ("daily", 1.0), ("every day", 1.0), ("qd", 1.0), ("every morning", 1.0), ("each morning", 1.0))
_PERIOD_DAYS = {"h": 1 / 24, "d": 1.0, "wk": 7.0, "mo": 30.4375, "a": 365.25}


# Doses a week written out ("three times a week", "twice weekly", "2x/wk", "weekly"): the
# day words below read "three times" as three a day (clinical review 15: prednisone 5 mg three
# times a week read as 15 mg/day, a C-GIOP warning). "daily for 2 weeks" is daily.
# Every alternative starts with a word or digit, never with a space run: linear on long text.
_TIMES_A_WEEK = re.compile(
    r"(?<![a-z0-9])(?:(once|one time|twice|two times|three times|four times|([1-7])\s*+(?:x|times))\s*+"
    r"(?:a|per|each|every|/|in a)\s*+(?:week|wk)|(once|one time|twice|two times|three times|four times)\s*+weekly"
    r"|weekly|(?:every|each|per|a)\s++week)(?![a-z])")
_WEEK_COUNTS = {"once": 1, "one time": 1, "twice": 2, "two times": 2, "three times": 3, "four times": 4}


def _per_day(dosage: Mapping[str, Any]) -> float | None:
    repeat = ((dosage.get("timing") or {}).get("repeat") or {}) if isinstance(dosage.get("timing"), dict) else {}
    freq, period, unit = repeat.get("frequency"), repeat.get("period"), repeat.get("periodUnit")
    if isinstance(period, (int, float)) and period > 0 and unit in _PERIOD_DAYS:
        return (freq if isinstance(freq, (int, float)) and freq > 0 else 1) / (period * _PERIOD_DAYS[unit])
    text = str(dosage.get("text") or "").lower()
    weekly = _TIMES_A_WEEK.search(text)
    if weekly:
        words, digit, before_weekly = weekly.group(1, 2, 3)
        count = int(digit) if digit else _WEEK_COUNTS.get(words or before_weekly or "", 1)
        return count / 7
    for word, per_day in _PER_DAY_WORDS:
        if re.search(r"(?<![a-z])" + re.escape(word) + r"(?![a-z])", text):
            return per_day
    return None


def glucocorticoid_daily_mg(res: Mapping[str, Any], concept: Any) -> float | None:
    """Prednisone-equivalent mg/day of a glucocorticoid order or statement (ACR22), from
    dosage doseQuantity (mg, or tablets x the strength named in the drug) and timing, else
    from the dosage text ("5 mg daily", or "2 tablets daily" x the strength). None when it cannot be read: unknown, not low."""
    factor = t.prednisone_factor(concept)
    dosages = res.get("dosageInstruction") or res.get("dosage") or []
    if not factor or not isinstance(dosages, list):
        return None
    strength = _MG.search(t.concept_text(concept))
    total = 0.0
    for dosage in dosages:
        if not isinstance(dosage, dict):
            continue
        per_day = _per_day(dosage)
        mg = None
        for dr in dosage.get("doseAndRate") or ():
            q = _quantity(dr.get("doseQuantity")) if isinstance(dr, dict) else None
            if q and _norm_unit(q[1]) in ("mg", "milligram", "milligrams"):
                mg = q[0]
            elif q and _norm_unit(q[1]) in ("g", "gram", "grams"):  # review 10: 0.01 g read as no dose
                mg = q[0] * 1000
            elif q and strength and _norm_unit(q[1]) in ("tablet", "tab", "tablets", "{tbl}", "{tablet}"):
                mg = q[0] * float(strength.group(1))
        if mg is None:
            text = str(dosage.get("text") or "").lower()
            found = _MG.search(text)
            mg = float(found.group(1)) if found else None
            count = _COUNT_OF_MG.search(text) if found else None
            if count and count.start(3) == found.start(1):  # type: ignore[union-attr]  # the count is of that mg
                mg *= float(count.group(1) or _TABLET_WORDS[count.group(2)])  # type: ignore[operator]
            tablets = _TABLETS.search(text) if mg is None and strength else None
            if tablets:
                mg = _TABLET_WORDS.get(tablets.group(1)) or float(tablets.group(1))
                mg *= float(strength.group(1))  # type: ignore[union-attr]
        if mg is None or per_day is None:
            return None
        total += mg * per_day
    daily = round(total * factor[1], 2)
    return daily if total and plausibility.value_ok("glucocorticoid_mg_day", daily) else None


def _event_intervals(events: Iterable[MedEvent], today: dt.date) -> list[tuple[dt.date, dt.date]]:
    """Exposure intervals: a request/statement from start to its end (today
    while active); an administration covers one dosing interval."""
    out = []
    for e in events:
        interval_days = e.interval
        if e.resource_type == "MedicationAdministration" or (e.dose_date and e.end is None and e.start == e.dose_date
                                                                and e.resource_type == "MedicationStatement"):
            if e.dose_date:
                # By day numbers (as _supply_end): cheaper than a timedelta per dose.
                out.append((e.dose_date, min(today, _from_ordinal(e.dose_date.toordinal() + interval_days))))
            continue
        if e.start is None or e.start > today:
            continue  # not started yet (a planned course): no exposure so far
        if e.end:
            end = e.end
        elif e.status in ("active", "on-hold"):
            end = today
        else:
            end = e.start  # completed/stopped with no end date: duration unknown, not guessed
        out.append((e.start, min(max(end, e.start), today)))
    return out


def _merged_days(intervals: list[tuple[dt.date, dt.date]]) -> int:
    total, current = 0, None
    for start, end in sorted(intervals):
        if current and start <= current[1]:
            current = (current[0], max(current[1], end))
        else:
            if current:
                total += (current[1] - current[0]).days
            current = (start, end)
    if current:
        total += (current[1] - current[0]).days
    return total


_ACTIVE_STATUSES = ("active", "on-hold")
_ENDED_STATUSES = ("stopped", "completed")


def _exposure(agent: str, events: tuple[MedEvent, ...], today: dt.date) -> AgentExposure:
    """One agent's exposure from its events, in one pass over them (long charts hold
    hundreds of orders of a drug): what each field is, is said where it is set."""
    interval = t.AGENTS[agent].dosing_interval_days
    doses: set[dt.date] = set()  # administration / statement dates
    single_orders: set[dt.date] = set()  # dates of completed orders for at most one dose (below)
    last_request = last_completed = None  # latest start of any order, of a completed one
    active, oncology_only = False, True
    first = latest = stopped = None
    latest_key = _DAY_ZERO
    product = 0  # an event's own interval (MedEvent.interval_days): IV ibandronate
    for e in events:
        rtype, status, start = e.resource_type, e.status, e.start
        product = product or e.interval_days
        if rtype == "MedicationRequest":
            if start:
                if last_request is None or start > last_request:
                    last_request = start
                if status == "completed":
                    if last_completed is None or start > last_completed:
                        last_completed = start
                    if e.end is None or (e.end - start).days <= interval:
                        single_orders.add(start)
        elif e.dose_date:
            doses.add(e.dose_date)
        # Active: an active / on-hold order or statement not yet ended.
        if (not active and status in _ACTIVE_STATUSES and rtype != "MedicationAdministration"
                and (e.end is None or e.end >= today)):
            active = True
        when = start or e.dose_date
        if when and (first is None or when < first):
            first = when
        key = when or _DAY_ZERO
        if latest is None or key > latest_key:  # the first of the latest, as max() picks
            latest, latest_key = e, key
        if status in _ENDED_STATUSES:
            end = e.end or e.dose_date or start
            if end and (stopped is None or end > stopped):
                stopped = end
        if not e.oncology:
            oncology_only = False
    last_dose = max(doses) if doses else last_request
    # A clinician-given dose still covers the patient for one dosing interval. Without any
    # administration on record, a `completed` order of a drug given at intervals (denosumab,
    # zoledronic acid, romosozumab, monthly ibandronate) is one dose given on its date: EHRs
    # close each single-dose order as completed (second-pass 3).
    given = last_dose if doses else (last_completed if interval > 7 else None)
    # A monthly romosozumab course given in clinic is still under way when the next dose falls
    # due (review 10: it stopped counting on day 31, exactly then): current until that dose is
    # overdue, while the 12-dose course is unfinished (Agent.course_doses / overdue_grace_days).
    # Its doses: the administrations, else the completed orders of one dose each (a course
    # recorded that way lost its grace: C-SAFE-ROMO-CV went quiet and C-TX-BP offered
    # alendronate mid-course; Evenity label: 12 monthly doses).
    spec = t.AGENTS[agent]
    if given and product:
        # A product with its own interval (IV ibandronate, 3 months): the one the last dose was of.
        interval = max((e.interval for e in events if (e.dose_date if doses else e.start) == given), default=interval)
    course = len(doses) if doses else (len(single_orders) if interval > 7 else 0)
    cover = interval + (spec.overdue_grace_days if course and course < spec.course_doses else 0)
    if given and (today - given).days <= cover and interval > 1:
        active = True
    return AgentExposure(
        agent=agent, drug_class=t.AGENTS[agent].drug_class, active=active, status=latest.status,  # type: ignore[union-attr]
        start=first, last_dose=last_dose, stopped=None if active else stopped, dose_count=len(doses),
        exposure_days=_merged_days(_event_intervals(events, today)),
        oncology_only=oncology_only, events=events, single_orders=tuple(sorted(single_orders)),
    )


def _draft(res: Any, selections: Sequence[str] | None) -> DraftOrder | None:
    if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
        return None
    rtype = res["resourceType"]
    rid = res.get("id") if isinstance(res.get("id"), str) else ""
    reference = f"{rtype}/{rid}" if rid else ""
    selected = selections is None or reference in selections
    agents: tuple[str, ...] = ()
    oncology = False
    kind = "other"
    interval_days = 0
    if rtype == "MedicationRequest":
        kind = "medication"
        # drafts without any medication (the public sandbox sends them) simply name no agent
        concept = medication_concept(res)
        match = t.classify_medication(concept)
        agents, oncology = match.agents, match.oncology
        if "ibandronate" in agents and t.iv_ibandronate(concept, res):
            interval_days = t.IV_IBANDRONATE_DAYS
    elif rtype in ("ServiceRequest", "ProcedureRequest", "ReferralRequest"):
        concepts = [res.get("code")] + list(res.get("performerType") and [res["performerType"]] or [])
        if any(t.is_manual_therapy_concept(c) for c in concepts):
            kind = "manual_therapy"  # joint mobilisation / manipulation (second-pass 6)
        elif any(t.is_massage_concept(c) for c in concepts):
            kind = "massage"
        elif any(t.is_dxa_concept(c) for c in concepts):
            kind = "dxa"
        elif any(t.is_pt_concept(c) for c in concepts):
            kind = "pt_referral"
    classes = frozenset(t.IV_BP if interval_days and a == "ibandronate" else t.AGENTS[a].drug_class for a in agents)
    return DraftOrder(rtype, rid, reference, kind, agents, classes, oncology, selected, res, _planned(res),
                      interval_days)


def draft_order(res: Any) -> DraftOrder | None:
    """One order resource as a selected draft (None if unreadable): for judging a
    suggested order as if it were being signed (engine.withhold_vetoed_orders)."""
    return _draft(res, None)


_SUPPLY_UNIT_DAYS = {"d": 1, "day": 1, "days": 1, "wk": 7, "week": 7, "weeks": 7, "mo": 30, "month": 30, "months": 30}


def _supply_end(start: dt.date | None, dispense: Mapping[str, Any]) -> dt.date | None:
    """The last day an order's dispenses cover: start + expectedSupplyDuration x (1 + repeats)."""
    q = _quantity(dispense.get("expectedSupplyDuration"))
    if start is None or q is None or q[1] not in _SUPPLY_UNIT_DAYS or q[0] <= 0:
        return None
    repeats = dispense.get("numberOfRepeatsAllowed")
    fills = 1 + (repeats if isinstance(repeats, int) and not isinstance(repeats, bool) and repeats > 0 else 0)
    days = q[0] * _SUPPLY_UNIT_DAYS[q[1]] * fills
    # A supply of more than ten years is a data error, not a supply: unknown (never an overflow).
    # By day numbers: a timedelta per order cost more than the rest of this. Past date.max
    # both ways raise (the order is skipped as unreadable).
    return _from_ordinal(start.toordinal() + int(days)) if days <= 3653 else None


def _planned(res: Mapping[str, Any]) -> dt.date | None:
    """The date an order is for, when it says: occurrence[x] (ServiceRequest), the first
    timing event or bounds start of the dosage, or the dispense validity start."""
    period = res.get("occurrencePeriod") if isinstance(res.get("occurrencePeriod"), dict) else {}
    timing = res.get("occurrenceTiming") if isinstance(res.get("occurrenceTiming"), dict) else {}
    dosage = (res.get("dosageInstruction") or [{}])[0]
    dosage_timing = (dosage.get("timing") or {}) if isinstance(dosage, dict) else {}
    if not isinstance(dosage_timing, dict):
        dosage_timing = {}
    bounds = (dosage_timing.get("repeat") or {}).get("boundsPeriod") if isinstance(dosage_timing.get("repeat"), dict) else None
    dispense = res.get("dispenseRequest") if isinstance(res.get("dispenseRequest"), dict) else {}
    events = list(timing.get("event") or ()) + list(dosage_timing.get("event") or ())
    return _first_date(res.get("occurrenceDateTime"), period.get("start"), *events, _period_start(bounds),
                       _period_start(dispense.get("validityPeriod")))


def build_record(prefetch: Mapping[str, Any], *, drafts: Sequence[Any] = (), today: dt.date,
                 patient_id: str | None = None, fhir_server: str | None = None,
                 selections: Sequence[str] | None = None, draft_orders: Any = None,
                 settings: ClinicalSettings = DEFAULT) -> PatientRecord:
    """Build the PatientRecord from prefetch values (a resource, a Bundle or
    None each) and draft orders (resources from context.draftOrders).

    `patient_id` (context.patientId) binds the record to that patient: any
    resource that is not theirs is ignored and counted (fhir.patient_binding).
    The services always pass it; None (no binding) is for rule unit tests on
    hand-built single-patient data only. A `urn:` reference resolves within the
    Bundle its resource is in; a draft's within `draft_orders` (context.draftOrders).
    `selections` (order-select) marks which drafts are judged; None = all.
    Never raises on bad data."""
    binding = PatientBinding(patient_id, fhir_server=fhir_server) if patient_id is not None else None
    builder = _Builder(today, settings, binding)
    primary = (prefetch or {}).get("patient")
    if type(primary) is dict and primary.get("resourceType") == "Patient" and (
            binding is None or binding.reason_to_ignore(primary) is None):
        builder.primary_patient = primary
    if selections is not None and not isinstance(selections, (list, tuple)):
        selections = None  # malformed context.selections: judge every draft rather than none
    for value in (prefetch or {}).values():
        builder.add_value(value)
    # A malformed Bundle's "Bundle/?" comes before the resources' own skips (as when the
    # entries were all collected first).
    builder.skipped[:0] = ["Bundle/?"] * builder.bundle_faults
    return builder.finish(drafts, selections, draft_orders)


def drafts_from_context(context: Mapping[str, Any]) -> list[Any]:
    """Resources of context.draftOrders (a Bundle); [] when absent or malformed."""
    entries: list[tuple[Any, Any]] = []
    try:
        _collect_entries((context or {}).get("draftOrders"), None, entries)
    except Exception:  # noqa: BLE001 - e.g. entry not a list: nothing to judge, never a crash
        return []
    return [resource for _, resource in entries]
