"""Is a dict a valid FHIR R4 resource? Checked with the fhir.resources R4B
models (the closest to R4), for the orders cards suggest.

A suggested resource is checked twice on its way out: when its card is
rendered (card_render) and again by the web layer before it is sent
(protocol.responses). A model validation costs about 0.5 ms per resource, and
a card suggests several, so answers are remembered by the resource's
canonical JSON, with a `subject` of the form {"reference": "Patient/<id>"}
(id a FHIR id) written as one fixed patient: every such reference validates
alike, so the same order suggested to many patients is checked once, and
each later check of it is a lookup (about 1 us: the key is written by
orjson). Keyed by content, a changed template or a new substitution is
validated anew. The cache is bounded (LRU); it holds no more than the orders
the service itself suggests.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import orjson
from pydantic import ValidationError


@functools.lru_cache(maxsize=None)
def model_class(resource_type: str) -> Any:
    """The R4B model class; KeyError/ValueError for an unknown type."""
    from fhir.resources.R4B import get_fhir_model_class

    return get_fhir_model_class(resource_type)


def fhir_problems(resource: Any) -> str | None:
    """None if `resource` is a valid FHIR R4(B) resource, else a short reason
    (field locations and error types only: values could be patient data)."""
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        return "not a FHIR resource"
    subject = resource.get("subject")
    if (isinstance(subject, dict) and len(subject) == 1 and isinstance(subject.get("reference"), str)
            and _PATIENT_REFERENCE.fullmatch(subject["reference"])):
        resource = dict(resource, subject=_ANY_PATIENT)
    try:
        key = orjson.dumps(resource, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # not plain JSON data (orjson.JSONEncodeError): check it as it is, uncached
        return _problems(resource)
    try:
        return _problems_of_json(key)
    except _WithNull:
        return _problems(resource)


_PATIENT_REFERENCE = re.compile(r"Patient/[A-Za-z0-9\-.]{1,64}")
_ANY_PATIENT = {"reference": "Patient/any"}


class _WithNull(Exception):
    """The key holds a null: not an answer to remember (lru_cache keeps no exception)."""


@functools.lru_cache(maxsize=512)
def _problems_of_json(key: bytes) -> str | None:
    if b"null" in key:
        # orjson writes NaN and infinities as null too: such a resource is
        # checked as it is, uncached (a real null is rare in an order). Looked
        # for only here, on a miss: a key in the cache holds none.
        raise _WithNull
    return _problems(orjson.loads(key))


def _problems(resource: dict[str, Any]) -> str | None:
    try:
        model = model_class(resource["resourceType"])
    except (KeyError, ValueError):
        return f"unknown resourceType {resource['resourceType']}"
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        return "; ".join(".".join(str(p) for p in err["loc"]) + f" ({err['type']})" for err in exc.errors()[:5])
    return None
