"""Is a dict a valid FHIR R4 resource? Checked with the fhir.resources R4B
models (the closest to R4), for the orders cards suggest.

A suggested resource is checked twice on its way out: when its card is
rendered (card_render) and again by the web layer before it is sent
(protocol.responses). A model validation costs about 0.5 ms per resource, so
answers are remembered by the resource's canonical JSON: the second check of
the same resource in the same call is free. The cache is small on purpose:
suggested resources name the patient and today's date, so they seldom repeat
across calls, and it must not grow with traffic.
"""

from __future__ import annotations

import functools
import json
from typing import Any

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
    try:
        key = json.dumps(resource, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):  # not plain JSON data: check it as it is, uncached
        return _problems(resource)
    return _problems_of_json(key)


@functools.lru_cache(maxsize=256)
def _problems_of_json(key: str) -> str | None:
    return _problems(json.loads(key))


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
