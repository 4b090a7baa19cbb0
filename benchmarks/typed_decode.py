"""Would typed decoding of the prefetch pay? (issue 15's named lever)

    python -m benchmarks.typed_decode [--size 100]

Times, in one process and in turns, three parses of the benchmark's
patient-view body, each with freeing the result: the service's own
(`msgspec.json.Decoder()` into dicts and lists), a typed decode into msgspec
Structs that keep only the members the record reader looks at (every other
member of a resource is skipped by msgspec without building it), and
`json.loads` (what bare Flask does). The Struct model below is the best case
for the typed decode: it drops `meta`, `search`, `requester`, `performer` and
the like, and reads nested members the rules use only loosely (`Any`); the
service would also need its record reader rewritten onto attributes, which
is not measured here. Prints the median CPU time of each over `--rounds`.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from typing import Any, Optional

import msgspec

from benchmarks.generate import patient_view_request


class Coding(msgspec.Struct):
    system: Optional[str] = None
    code: Optional[str] = None
    display: Optional[str] = None


class Concept(msgspec.Struct):
    coding: list[Coding] = []
    text: Optional[str] = None


class Reference(msgspec.Struct):
    reference: Optional[str] = None


class Quantity(msgspec.Struct):
    value: Optional[float] = None
    comparator: Optional[str] = None
    unit: Optional[str] = None
    system: Optional[str] = None
    code: Optional[str] = None


class Resource(msgspec.Struct):
    """The members cds_service/record.py and the rules read (dict.get names), typed
    where the benchmark's body uses them, `Any` where it does not."""

    resourceType: str
    id: Optional[str] = None
    status: Optional[str] = None
    intent: Optional[str] = None
    category: Optional[list[Concept]] = None
    code: Optional[Concept] = None
    subject: Optional[Reference] = None
    patient: Optional[Reference] = None
    effectiveDateTime: Optional[str] = None
    effectivePeriod: Any = None
    issued: Optional[str] = None
    valueQuantity: Optional[Quantity] = None
    valueString: Optional[str] = None
    valueCodeableConcept: Optional[Concept] = None
    interpretation: Any = None
    component: Any = None
    clinicalStatus: Optional[Concept] = None
    verificationStatus: Optional[Concept] = None
    onsetDateTime: Optional[str] = None
    abatementDateTime: Optional[str] = None
    recordedDate: Optional[str] = None
    bodySite: Any = None
    medicationCodeableConcept: Optional[Concept] = None
    medicationReference: Any = None
    authoredOn: Optional[str] = None
    dosageInstruction: Any = None
    dispenseRequest: Any = None
    dosage: Any = None
    performedDateTime: Optional[str] = None
    performedPeriod: Any = None
    note: Any = None
    extension: Any = None
    contained: Any = None
    gender: Optional[str] = None
    birthDate: Optional[str] = None
    deceasedBoolean: Optional[bool] = None
    deceasedDateTime: Optional[str] = None
    entry: Optional[list["Entry"]] = None


class Entry(msgspec.Struct):
    fullUrl: Optional[str] = None
    resource: Optional[Resource] = None


class HookRequest(msgspec.Struct):
    hook: str
    hookInstance: str
    context: dict[str, Any]
    prefetch: dict[str, Optional[Resource]]
    fhirServer: Optional[str] = None
    fhirAuthorization: Any = None


def cpu_per_parse(parse: Any, raw: bytes, n: int) -> float:
    """Microseconds of CPU per parse and free, the collector off as in the service."""
    gc.disable()
    try:
        start = time.process_time()
        for _ in range(n):
            parsed = parse(raw)
            del parsed
        return (time.process_time() - start) / n * 1e6
    finally:
        gc.enable()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--parses", type=int, default=300)
    args = parser.parse_args()
    raw = json.dumps(patient_view_request(args.size)).encode()
    ways = {
        "service (msgspec, dicts)": msgspec.json.Decoder().decode,
        "typed (msgspec Structs, best case)": msgspec.json.Decoder(HookRequest).decode,
        "json.loads (bare Flask)": json.loads,
    }
    typed = msgspec.json.Decoder(HookRequest).decode(raw)
    entries = sum(len(b.entry or []) for b in typed.prefetch.values() if b is not None)
    print(f"{args.size} resources asked, {entries} prefetch entries typed, body {len(raw) / 1024:.0f} kB")
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.rounds):
        for name, parse in ways.items():
            times[name].append(cpu_per_parse(parse, raw, args.parses))
    for name, values in times.items():
        print(f"{name:40s} {statistics.median(values):8.0f} us  "
              f"({min(values):.0f}-{max(values):.0f})")


if __name__ == "__main__":
    main()
