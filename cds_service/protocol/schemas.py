"""The service's JSON Schemas, read from openapi/openapi.yaml.

The OpenAPI document is the single source of the request and response
contracts: its `components/schemas` are JSON Schema 2020-12. This module loads
it once and hands out validators for one named component at a time:

    load_openapi()            -> the parsed document (cached; do not mutate)
    validator("PatientViewRequest")  -> a Draft202012Validator (cached)
    errors("PatientViewRequest", body) -> ["context.patientId: ...", ...]

Where the document is: `openapi/openapi.yaml` (or `openapi.yaml`) in the data
folder (cds_service/data_files.py: CDS_DATA_DIR, else the copy a wheel
carries, else the repository root next to the `cds_service` package).

All `$ref`s in the document are internal (`#/components/...`); they resolve
through a `referencing` registry that holds the whole document.

The hook requests are first checked by jsonschema-rs (compiled, about 2 us
against about 250 us for the jsonschema package on every call); only a
request it refuses goes through jsonschema, whose verdict and messages are
the answer. That is sound only where jsonschema-rs never passes what
jsonschema refuses (the two differ on some patterns, e.g. which characters
`\\s` means, and formats), so it is used for the schemas in FAST_CHECKED
alone, and tests/test_schema_fast_path.py tries each of their fields with
every character class and type where engines differ.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema_rs
import yaml

from cds_service import data_files

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError
    from referencing import Registry

# The jsonschema package (with referencing, attrs, rpds) is imported only when
# a request is refused by the fast check or has no fast check (feedback): a
# worker that answers valid hook calls never loads it (about 3 MB less).

# The base URI the whole document is registered under; internal refs
# (#/components/schemas/X) resolve against it.
DOCUMENT_URI = "urn:osteoporosis-cds:openapi"

# Messages longer than this are cut: jsonschema quotes the offending value,
# which may be a whole FHIR resource with patient data in it.
_MAX_MESSAGE = 200

def _locate() -> Path:
    return data_files.openapi_path()


@functools.lru_cache(maxsize=1)
def load_openapi() -> dict[str, Any]:
    """The parsed OpenAPI document. Cached: the same dict on every call, so
    treat it as read-only. `load_openapi.cache_clear()` forgets it (tests)."""
    path = _locate()
    with path.open(encoding="utf-8") as handle:
        document = yaml.safe_load(handle)
    if not isinstance(document, dict) or "components" not in document:
        raise ValueError(f"{path} is not an OpenAPI document with components")
    return document


@functools.lru_cache(maxsize=1)
def _registry() -> Registry:
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    resource = Resource.from_contents(load_openapi(), default_specification=DRAFT202012)
    return Registry().with_resource(DOCUMENT_URI, resource)


@functools.lru_cache(maxsize=None)
def validator(name: str) -> Draft202012Validator:
    """A validator for `#/components/schemas/<name>`, format checking on.
    Raises KeyError for a name the document does not define."""
    from jsonschema import Draft202012Validator, FormatChecker

    schemas = load_openapi().get("components", {}).get("schemas", {})
    if name not in schemas:
        raise KeyError(f"no schema {name!r} in components/schemas")
    return Draft202012Validator(
        {"$ref": f"{DOCUMENT_URI}#/components/schemas/{name}"},
        registry=_registry(),
        format_checker=FormatChecker(),
    )


@functools.lru_cache(maxsize=None)
def _bounded_validator(name: str, max_items: tuple[tuple[str, int], ...]) -> Draft202012Validator:
    """`name` plus a maxItems on some of its top-level arrays, for limits that
    are settings rather than part of the document."""
    from jsonschema import Draft202012Validator, FormatChecker

    bounds = {member: {"maxItems": limit} for member, limit in max_items}
    return Draft202012Validator(
        {"allOf": [{"$ref": f"{DOCUMENT_URI}#/components/schemas/{name}"}, {"properties": bounds}]},
        registry=_registry(),
        format_checker=FormatChecker(),
    )


# Where the fast check is known (by test) never to pass what jsonschema refuses.
FAST_CHECKED = ("PatientViewRequest", "OrderSelectRequest", "OrderSignRequest")


@functools.lru_cache(maxsize=None)
def fast_validator(name: str) -> Any:
    """jsonschema-rs for `#/components/schemas/<name>`, formats checked."""
    document = {"$schema": "https://json-schema.org/draft/2020-12/schema",
                "$ref": f"#/components/schemas/{name}", "components": load_openapi()["components"]}
    return jsonschema_rs.Draft202012Validator(document, validate_formats=True)


def _clear_caches() -> None:
    """Forget the document and everything built from it (tests, reloads)."""
    fast_validator.cache_clear()
    _bounded_validator.cache_clear()
    validator.cache_clear()
    _registry.cache_clear()
    load_openapi.cache_clear()


def errors(name: str, instance: Any, max_items: dict[str, int] | None = None) -> list[str]:
    """Every way `instance` fails `#/components/schemas/<name>`, as
    "path: message" strings, most relevant first (shallow problems before
    deep ones). An empty list means valid. `max_items` bounds top-level
    array members (member -> most items) on top of the schema."""
    if not max_items and name in FAST_CHECKED and fast_validator(name).is_valid(instance):
        return []
    checker = _bounded_validator(name, tuple(sorted(max_items.items()))) if max_items else validator(name)
    found = sorted(checker.iter_errors(instance), key=_rank)
    messages: list[str] = []
    seen_paths: set[str] = set()
    for error in found:
        path, message = _describe(error)
        # One message per location: the most telling one (e.g. "must not be
        # empty" rather than also "must not be blank" for the same string).
        if path in seen_paths:
            continue
        seen_paths.add(path)
        messages.append(f"{path}: {message}")
    return messages


def _rank(error: ValidationError) -> tuple:
    """Shallow problems first (a missing `context` before a bad value deep
    inside it), vague anyOf/oneOf failures after specific ones at the same
    depth, then document order of the location, then the keyword."""
    return (
        len(error.absolute_path),
        error.validator in ("anyOf", "oneOf"),
        _path(error.absolute_path),
        _KEYWORD_ORDER.get(error.validator, len(_KEYWORD_ORDER)),
    )


# Among errors at one location, the more fundamental keyword first.
_KEYWORD_ORDER = {kw: i for i, kw in enumerate((
    "type", "required", "dependentRequired", "const", "enum", "minLength", "maxLength",
    "minItems", "maxItems", "minProperties", "format", "pattern",
))}


def _path(parts) -> str:
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "$"


def _describe(error: ValidationError) -> tuple[str, str]:
    # A failed anyOf/oneOf: report the most telling branch failure, unless the
    # schema carries its own message for it.
    custom = _custom_message(error)
    if custom is None and error.context and error.validator in ("anyOf", "oneOf"):
        from jsonschema.exceptions import best_match

        deeper = best_match([error])
        if deeper is not None and deeper is not error:
            error = deeper
            custom = _custom_message(error)

    parts = list(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = _missing_property(error)
        if missing is not None:
            parts.append(missing)
    elif error.validator == "dependentRequired" and isinstance(error.instance, dict):
        missing = _missing_dependency(error)
        if missing is not None:
            parts.append(missing)

    message = custom if custom is not None else _plain_message(error)
    return _path(parts), message


def _custom_message(error: ValidationError) -> str | None:
    messages = error.schema.get("x-error-messages") if isinstance(error.schema, dict) else None
    if isinstance(messages, dict):
        text = messages.get(error.validator)
        if isinstance(text, str):
            return text
    return None


def _missing_property(error: ValidationError) -> str | None:
    for prop in error.validator_value or ():
        if prop not in error.instance and error.message.startswith(repr(prop)):
            return prop
    return None


def _missing_dependency(error: ValidationError) -> str | None:
    for trigger, needed in (error.validator_value or {}).items():
        if trigger in error.instance:
            for prop in needed:
                if prop not in error.instance:
                    return prop
    return None


_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null",
               int: "integer", float: "number"}


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _short(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _plain_message(error: ValidationError) -> str:
    """jsonschema's message, except where it would quote a large value."""
    kind = error.validator
    value = error.validator_value
    if kind == "type":
        expected = value if isinstance(value, str) else " or ".join(value)
        return f"expected {expected}, got {_json_type(error.instance)}"
    if kind == "const":
        return f"must be {_short(value)}, got {_short(error.instance)}"
    if kind == "enum":
        return f"must be one of {', '.join(_short(v) for v in value)}, got {_short(error.instance)}"
    if kind in ("minItems", "maxItems"):
        return f"needs {'at least' if kind == 'minItems' else 'at most'} {value} item(s), has {len(error.instance)}"
    if kind in ("minProperties", "maxProperties"):
        word = "at least" if kind == "minProperties" else "at most"
        return f"needs {word} {value} member(s), has {len(error.instance)}"
    if kind == "minLength":
        return "must not be empty" if value == 1 else f"must be at least {value} characters"
    if kind == "maxLength":
        return f"must be at most {value} characters, has {len(error.instance)}"
    if kind == "pattern":
        if value == r"\S":
            return "must not be blank"
        return f"{_short(error.instance)} does not match the pattern {value}"
    if kind == "format":
        return f"{_short(error.instance)} is not a valid {value}"
    if kind == "additionalProperties" and isinstance(error.instance, dict):
        return error.message if len(error.message) <= _MAX_MESSAGE else "unexpected members"
    if kind == "not":
        return "a value that is not allowed here"
    message = error.message
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 3] + "..."
