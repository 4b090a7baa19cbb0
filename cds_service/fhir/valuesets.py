"""Value sets: the codes the service recognises, read from FHIR ValueSet files.

The shipped files are in cds_service/terminology_data/valuesets/, one FHIR R4
ValueSet per concept (its `id` is the concept's name, e.g. `fracture-site-hip`);
cds_service/terminology_data/README.md says where every set comes from. A site
adds local codes with extra ValueSet files in the folder named by
CDS_EXTRA_VALUESETS_DIR: each is merged into the shipped concept with the same
`url` (or, failing that, the same `name`).

Everything is read, validated (fhir.resources R4B) and indexed once, at
start-up; a bad file stops the start with one line naming the file and the
fault. Lookups are dictionary reads: `concepts_for(system, code)` is O(1) for
exact codes plus one read per character for ICD-10-CM, whose value sets say
"this code and everything under it" with `compose.include.filter`
(property `concept`, op `is-a`) and match by prefix ("M80.0" matches "M80.08XA",
dot or no dot).

Marks (V / V? / U, as in the clinical brief) and sources are on each
expansion entry (extensions `code-mark`, `code-source`); names matched in free
text are `text-match` extensions; lab units `lab-unit` (UCUM code and the
factor to the set's first, reporting, unit), and `default-unit` on an
expansion entry names the unit a result of that code is in when it carries
none (LOINC's Moles/volume codes: 2000-8 calcium in mmol/L).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CPT = "http://www.ama-assn.org/go/cpt"
NUCC = "http://nucc.org/provider-taxonomy"
UCUM = "http://unitsofmeasure.org"
KNOWN_SYSTEMS = frozenset({LOINC, SNOMED, ICD10CM, RXNORM, CPT, NUCC})

# Other names EHRs send a code system under -> the URI the value sets use. HL7 v3 OIDs
# (HL7 terminology.hl7.org NamingSystem entries for each system); Epic sends ICD-10-CM as
# urn:oid:2.16.840.1.113883.6.90 in its R4 encounter diagnoses (termreview REPORT 1, V).
# Applied once per (system, code) met (Terminology.concepts_for fills its memo with the
# canonical answer), to the codings terminology.codings returns, and to site files.
SYSTEM_ALIASES: Mapping[str, str] = {
    "urn:oid:2.16.840.1.113883.6.90": ICD10CM,
    "urn:oid:2.16.840.1.113883.6.96": SNOMED,
    "urn:oid:2.16.840.1.113883.6.1": LOINC,
    "urn:oid:2.16.840.1.113883.6.88": RXNORM,
    "urn:oid:2.16.840.1.113883.6.12": CPT,
}


# The system as the value sets name it, for every spelling read in one dict look-up: the URIs
# themselves and the aliases above (terminology.codings reads each coding through it).
SYSTEM_OF: Mapping[str, str] = {**{uri: uri for uri in KNOWN_SYSTEMS}, **SYSTEM_ALIASES}
# The same OIDs in other spellings: upper case ("URN:OID:2.16.840.1.113883.6.90") or bare, with no
# "urn:oid:" (review 14, chart 15b: dialysis coded Z99.2 so was missed). Looked up only when
# SYSTEM_OF misses (and Terminology.concepts_for only on a code-memo miss).
_BARE_OIDS: Mapping[str, str] = {alias.removeprefix("urn:oid:"): uri for alias, uri in SYSTEM_ALIASES.items()}


def canonical_system(system: str) -> str:
    """The value sets' URI for a code system sent under a known alias (else as sent)."""
    found = SYSTEM_OF.get(system)
    return found if found is not None else other_spelling(system)


def other_spelling(system: str) -> str:
    """A listed OID sent upper-case, bare or padded -> its URI; else the system as sent."""
    key = system.strip().lower()
    return _BARE_OIDS.get(key.removeprefix("urn:oid:"), system)

_SD = "https://github.com/osteoporosis-cds/StructureDefinition/"
EXT_MARK, EXT_SOURCE, EXT_TEXT, EXT_UNIT, EXT_DEFAULT_UNIT = (
    _SD + "code-mark", _SD + "code-source", _SD + "text-match", _SD + "lab-unit", _SD + "default-unit")

# Concepts of one family never share a code: a fracture has one site, a drug
# code one agent, an observation code one meaning, a diagnosis is osteoporosis
# or osteopenia. Checked at every load (shipped and site files alike).
EXCLUSIVE_FAMILIES: Mapping[str, tuple[str, ...]] = {
    "fracture site": ("fracture-site-",),
    "drug agent": ("drug-",),
    "observation": ("lab-", "dxa-", "frax-", "obs-"),
    "bone density diagnosis": ("condition-osteoporosis", "condition-osteopenia"),
}


class ValueSetError(ValueError):
    """A value set file the service cannot use; the message is one line."""


def normalise(system: str, code: str) -> str:
    """The form codes are indexed in: ICD-10-CM without its dot, upper case
    ("m80.08xa" and "M8008XA" are "M8008XA"); other systems as written."""
    code = code.strip()
    return code.replace(".", "").upper() if system == ICD10CM else code


@dataclass(frozen=True)
class Concept:
    id: str                                   # the ValueSet id, e.g. "fracture-site-hip"
    url: str
    name: str
    title: str
    codes: Mapping[str, frozenset[str]]       # system -> exact codes (normalised)
    prefixes: Mapping[str, frozenset[str]]    # system -> is-a roots (normalised; ICD-10-CM only)
    names: tuple[str, ...] = ()               # text-match names
    units: tuple[tuple[str, float], ...] = ()  # (UCUM code, factor to the first unit)
    marks: Mapping[tuple[str, str], tuple[str, str]] = field(default_factory=dict)  # (system, code) -> (mark, source)
    files: tuple[str, ...] = ()               # shipped file first, then site files merged into it
    default_units: Mapping[tuple[str, str], str] = field(default_factory=dict)  # (system, code) -> UCUM unit


_MEMO_MAX = 50_000


class Terminology:
    """Every concept, indexed by (system, code)."""

    def __init__(self, concepts: Mapping[str, Concept]):
        self._concepts = dict(concepts)
        # One frozenset object per distinct answer: most codes belong to one
        # concept, and a small frozenset weighs 216 bytes.
        self._answers: dict[frozenset[str], frozenset[str]] = {}
        exact: dict[tuple[str, str], set[str]] = {}
        prefix: dict[tuple[str, str], set[str]] = {}
        for concept in self._concepts.values():
            for system, codes in concept.codes.items():
                for code in codes:
                    exact.setdefault((system, code), set()).add(concept.id)
            for system, roots in concept.prefixes.items():
                for root in roots:
                    prefix.setdefault((system, root), set()).add(concept.id)
        self._exact = {k: self._answer(frozenset(v)) for k, v in exact.items()}
        self._prefix = {k: self._answer(frozenset(v)) for k, v in prefix.items()}
        self._prefix_systems = frozenset(system for system, _ in self._prefix)
        # (system, code as sent) -> concepts: the reader asks once per coding, and charts
        # repeat the same few codes, so one dict read answers almost every call.
        self._memo: dict[tuple[str, str], frozenset[str]] = {}

    def _answer(self, found: frozenset[str]) -> frozenset[str]:
        return self._answers.setdefault(found, found)

    # --- concepts ---------------------------------------------------------
    def __contains__(self, concept: str) -> bool:
        return concept in self._concepts

    def __iter__(self) -> Iterator[str]:
        return iter(self._concepts)

    def concept(self, concept: str) -> Concept:
        try:
            return self._concepts[concept]
        except KeyError:
            raise KeyError(f"no value set {concept!r}") from None

    def ids(self, prefix: str = "") -> tuple[str, ...]:
        """Concept ids starting with `prefix`, sorted (e.g. "fracture-site-")."""
        return tuple(sorted(c for c in self._concepts if c.startswith(prefix)))

    def codes(self, concept: str, system: str) -> frozenset[str]:
        """Exact codes of a concept in one system (ICD-10-CM in normalised form)."""
        return self.concept(concept).codes.get(system, frozenset())

    def prefixes(self, concept: str, system: str = ICD10CM) -> frozenset[str]:
        """Codes whose descendants are members too (normalised)."""
        return self.concept(concept).prefixes.get(system, frozenset())

    def names(self, concept: str) -> tuple[str, ...]:
        return self.concept(concept).names

    def units(self, concept: str) -> tuple[tuple[str, float], ...]:
        return self.concept(concept).units

    def default_unit(self, concept: str, system: str, code: str) -> str:
        """The unit a result of this code is in when it gives none ("" when the file says nothing)."""
        return self.concept(concept).default_units.get((system, normalise(system, code)), "")

    def mark(self, concept: str, system: str, code: str) -> tuple[str, str] | None:
        """(mark, source) of a code listed in the concept, None if not listed."""
        return self.concept(concept).marks.get((system, normalise(system, code)))

    # --- lookups ----------------------------------------------------------
    def concepts_for(self, system: str, code: str) -> frozenset[str]:
        """Every concept the code belongs to, exactly or under an is-a root."""
        found = self._memo.get((system, code))
        if found is None:
            key = (system, code)  # the memo keeps the system as sent: a hit stays one dict read
            system = canonical_system(system)
            norm = normalise(system, code)
            found = self._exact.get((system, norm), frozenset())
            if system in self._prefix_systems:
                found = self._answer(found | self.prefix_matches(system, norm))
            if len(self._memo) >= _MEMO_MAX:  # bounded: arbitrary codes from requests cannot grow it forever
                self._memo.clear()
            self._memo[key] = found
        return found

    def prefix_matches(self, system: str, code: str) -> frozenset[str]:
        """Concepts that claim the code through an is-a root (the root itself included)."""
        system = canonical_system(system)
        norm = normalise(system, code)
        found: frozenset[str] = frozenset()
        for end in range(1, len(norm) + 1):
            hit = self._prefix.get((system, norm[:end]))
            if hit:
                found = found | hit
        return found

    def concepts_in(self, codeable_concept: Any) -> frozenset[str]:
        """Concepts of every coding of a CodeableConcept dict (codes only, not text)."""
        found: frozenset[str] = frozenset()
        if isinstance(codeable_concept, dict):
            for coding in codeable_concept.get("coding") or ():
                if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                    found = found | self.concepts_for(str(coding.get("system") or ""), coding["code"])
        return found

    def conflicts(self) -> list[str]:
        """Codes claimed by two concepts of one exclusive family (one line each)."""
        problems = []
        for family, starts in EXCLUSIVE_FAMILIES.items():
            members = {c for c in self._concepts if c.startswith(starts)}
            for (system, code), owners in sorted(self._exact.items()):
                owners = (owners | self.prefix_matches(system, code)) & members
                if len(owners) > 1:
                    problems.append(f"{system}|{code} is in more than one {family} set: {', '.join(sorted(owners))}")
            for (system, root), owners in sorted(self._prefix.items()):
                owners = self.prefix_matches(system, root) & members
                if len(owners) > 1:
                    problems.append(f"{system}|{root} and its descendants are in more than one {family} set: "
                                    f"{', '.join(sorted(owners))}")
        return problems


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------

def shipped_dir() -> Path:
    return Path(str(resources.files("cds_service") / "terminology_data" / "valuesets"))


@dataclass
class _Parts:
    codes: dict[str, set[str]] = field(default_factory=dict)
    prefixes: dict[str, set[str]] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)
    units: list[tuple[str, float]] = field(default_factory=list)
    marks: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    default_units: dict[tuple[str, str], str] = field(default_factory=dict)


def _read(path: Path) -> dict[str, Any]:
    """One ValueSet file, parsed and validated; ValueSetError (one line) otherwise."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ValueSetError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueSetError(f"{path}: not valid JSON ({exc})".replace("\n", " ")) from None
    if not isinstance(data, dict) or data.get("resourceType") != "ValueSet":
        raise ValueSetError(f"{path}: not a FHIR ValueSet (resourceType must be \"ValueSet\")")
    from fhir.resources.R4B.valueset import ValueSet
    from pydantic import ValidationError

    try:
        ValueSet.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "__root__") or "(resource)"
        raise ValueSetError(f"{path}: not a valid FHIR R4 ValueSet: {where}: {first.get('msg')}"
                            .replace("\n", " ")) from None
    return data


def _ext(element: dict[str, Any], url: str) -> list[dict[str, Any]]:
    return [e for e in element.get("extension") or () if isinstance(e, dict) and e.get("url") == url]


def _contains(items: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for item in items or ():
        yield item
        yield from _contains(item.get("contains") or ())


def _parts(data: dict[str, Any], path: Path, default_source: str) -> _Parts:
    parts = _Parts()

    def add(system: Any, code: Any, mark: str, source: str) -> None:
        if not isinstance(system, str) or "://" not in system and not system.startswith("urn:"):
            raise ValueSetError(f"{path}: code {code!r} has no absolute code system URI")
        system = canonical_system(system)
        norm = normalise(system, code)
        parts.codes.setdefault(system, set()).add(norm)
        parts.marks.setdefault((system, norm), (mark, source))

    for include in (data.get("compose") or {}).get("include") or ():
        system = include.get("system")
        system = canonical_system(system) if isinstance(system, str) else system
        for concept in include.get("concept") or ():
            add(system, concept["code"], "", default_source)
        for flt in include.get("filter") or ():
            if system != ICD10CM or flt.get("property") != "concept" or flt.get("op") != "is-a":
                raise ValueSetError(f"{path}: filter {flt.get('property')} {flt.get('op')} on {system} is not "
                                    "supported (only is-a on ICD-10-CM concepts)")
            parts.prefixes.setdefault(ICD10CM, set()).add(normalise(ICD10CM, flt["value"]))
        if include.get("valueSet"):
            raise ValueSetError(f"{path}: compose.include.valueSet is not supported: list the codes")
        if not include.get("concept") and not include.get("filter"):
            raise ValueSetError(f"{path}: including all of {system} is not supported: list the codes")
    for item in _contains((data.get("expansion") or {}).get("contains") or ()):
        if "code" not in item:
            continue  # a grouping entry
        mark = next((e.get("valueCode") for e in _ext(item, EXT_MARK)), "") or ""
        source = next((e.get("valueString") for e in _ext(item, EXT_SOURCE)), "") or default_source
        system = item.get("system")
        system = canonical_system(system) if isinstance(system, str) else system
        add(system, item["code"], mark, source)
        if mark:  # the expansion's mark wins over the bare compose entry
            parts.marks[(system, normalise(system, item["code"]))] = (mark, source)
        for default in _ext(item, EXT_DEFAULT_UNIT):
            if not isinstance(default.get("valueCode"), str):
                raise ValueSetError(f"{path}: default-unit extension of {item['code']!r} needs a valueCode")
            parts.default_units[(system, normalise(system, item["code"]))] = default["valueCode"]
    parts.names = [str(e.get("valueString")).lower() for e in _ext(data, EXT_TEXT) if e.get("valueString")]
    for unit in _ext(data, EXT_UNIT):
        sub = {e.get("url"): e for e in unit.get("extension") or ()}
        try:
            parts.units.append((sub["unit"]["valueCoding"]["code"], float(sub["factor"]["valueDecimal"])))
        except (KeyError, TypeError, ValueError):
            raise ValueSetError(f"{path}: lab-unit extension needs unit (valueCoding) and factor "
                                "(valueDecimal)") from None
    return parts


def _concept(meta: Mapping[str, str], parts: _Parts, files: tuple[str, ...]) -> Concept:
    return Concept(
        id=meta["id"], url=meta.get("url", ""), name=meta.get("name", ""), title=meta.get("title", ""),
        codes={s: frozenset(c) for s, c in parts.codes.items()},
        prefixes={s: frozenset(c) for s, c in parts.prefixes.items()},
        names=tuple(dict.fromkeys(parts.names)), units=tuple(parts.units),
        marks={key: _MARKS.setdefault(value, value) for key, value in parts.marks.items()}, files=files,
        default_units=dict(parts.default_units))


# (mark, source) pairs are few (a mark, a source name): one tuple object each.
_MARKS: dict[tuple[str, str], tuple[str, str]] = {}

_META_KEYS = ("id", "url", "name", "title")


@functools.lru_cache(maxsize=1)
def _shipped() -> tuple[tuple[dict[str, str], Concept], ...]:
    """The shipped sets, read once per process: each file's id, url, name and
    title and its Concept (the parsed files themselves are not kept)."""
    out = []
    seen: dict[tuple[str, Any], str] = {}
    for path in sorted(shipped_dir().glob("*.json")):
        data = _read(path)
        for key in ("id", "url", "name"):
            value = data.get(key)
            if not value:
                raise ValueSetError(f"{path}: shipped value sets need an {key}")
            if (key, value) in seen:
                raise ValueSetError(f"{path}: {key} {value!r} is also used by {seen[(key, value)]}")
            seen[(key, value)] = path.name
        if path.stem != data["id"]:
            raise ValueSetError(f"{path}: file name must be the value set id ({data['id']}.json)")
        meta = {key: data[key] for key in _META_KEYS if key in data}
        out.append((meta, _concept(meta, _parts(data, path, ""), (str(path),))))
    return tuple(out)


def load(extra_dir: str | Path | None = None) -> Terminology:
    """The shipped value sets plus a site's extra files; ValueSetError if any
    file is unusable or a code ends up in two concepts of one exclusive family."""
    shipped = _shipped()
    metas = {meta["id"]: meta for meta, _ in shipped}
    concepts = {meta["id"]: concept for meta, concept in shipped}
    if extra_dir:
        folder = Path(extra_dir)
        if not folder.is_dir():
            raise ValueSetError(f"{folder}: not a folder")
        by_url = {m.get("url"): i for i, m in metas.items()}
        by_name = {m.get("name"): i for i, m in metas.items()}
        parts: dict[str, _Parts] = {}
        files: dict[str, list[str]] = {}
        bad: list[str] = []  # every unusable file, so a site fixes them in one round
        for path in sorted(folder.glob("*.json")):
            try:
                data = _read(path)
                target = by_url.get(data.get("url")) or by_name.get(data.get("name"))
                if target is None:
                    raise ValueSetError(f"{path}: matches no shipped value set (url {data.get('url')!r}, "
                                        f"name {data.get('name')!r}); see cds_service/terminology_data/README.md")
                extra = _parts(data, path, f"site file {path.name}")
            except ValueSetError as exc:
                bad.append(str(exc))
                continue
            if target not in parts:
                parts[target] = _parts_of(concepts[target])
                files[target] = list(concepts[target].files)
            into = parts[target]
            for system, codes in extra.codes.items():
                into.codes.setdefault(system, set()).update(codes)
            for system, roots in extra.prefixes.items():
                into.prefixes.setdefault(system, set()).update(roots)
            into.names.extend(extra.names)
            into.units.extend(u for u in extra.units if u not in into.units)
            for key, value in extra.marks.items():
                into.marks.setdefault(key, value)
            for key, unit in extra.default_units.items():
                into.default_units.setdefault(key, unit)
            files[target].append(str(path))
        if bad:
            raise ValueSetError(_listed(bad))
        for target, merged in parts.items():
            concepts[target] = _concept(metas[target], merged, tuple(files[target]))
    terminology = Terminology(concepts)
    problems = terminology.conflicts()
    if problems:
        raise ValueSetError(_listed(problems))
    return terminology


def _listed(problems: list[str], shown: int = 5) -> str:
    """Several problems in one line: the first few in full, then how many more."""
    more = f" (and {len(problems) - shown} more)" if len(problems) > shown else ""
    return "; ".join(problems[:shown]) + more


def _parts_of(c: Concept) -> _Parts:
    """A shipped concept's parts, as new containers a site file can merge into."""
    return _Parts({s: set(codes) for s, codes in c.codes.items()}, {s: set(r) for s, r in c.prefixes.items()},
                  list(c.names), list(c.units), dict(c.marks), dict(c.default_units))


# The process-wide terminology: config.configure_terminology (the server, `discovery`, `evaluate`) sets it from
# CDS_EXTRA_VALUESETS_DIR; until then it is the shipped sets alone.
_active: Terminology | None = None


def configure(extra_dir: str | Path | None = None) -> Terminology:
    global _active
    _active = _default() if not extra_dir else load(extra_dir)
    return _active


def active() -> Terminology:
    return _active if _active is not None else _default()


@functools.lru_cache(maxsize=1)
def _default() -> Terminology:
    return load(None)
