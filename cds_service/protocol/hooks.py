"""POST /cds-services/{id}: one hook call, from request to cards.

Order of work: who is calling (JWT), is the body JSON, does it conform to the
hook's schema, is it this service's hook, complete the prefetch, run the
service's rules, make the cards conformant, record them, answer.

On patient-view the service first reads which cards feedback has quieted for
this patient (one indexed query on the patient key: a keyed hash of
patient id, fhirServer and the verified client's issuer) and hands them to the rules with the info-card
budget; every card links to its guidance page and is recorded with the
patient key, so later feedback on it can quiet it.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from flask import Blueprint, g, jsonify, request

from cds_service import metrics
from cds_service.card_policy import CardPolicy
from cds_service.fhir.allowlist import malformed
from cds_service.fhir.patient_binding import FOREIGN_PATIENT, PatientBinding
from cds_service.fhir.prefetch import PrefetchError, PrefetchInvalid, TooMuchData, resolve_prefetch
from cds_service.protocol import schemas
from cds_service.patient_key import patient_key, trigger_key
from cds_service.protocol.errors import ApiError
from cds_service.protocol.guidance import guidance_links
from cds_service.protocol.requests_json import read_json_object
from cds_service.protocol.responses import finish_cards, rule_id
from cds_service.protocol.runtime import Runtime, runtime
from cds_service.record import drafts_from_context
from cds_service.services import CdsService, HookCall
from cds_service.store import IssuedCard, Lease, client_ref

log = logging.getLogger(__name__)
bp = Blueprint("hooks", __name__)

REQUEST_SCHEMAS = {
    "patient-view": "PatientViewRequest",
    "order-select": "OrderSelectRequest",
    "order-sign": "OrderSignRequest",
}


# A UUID as CDS Hooks defines hookInstance (any case; no braces, no urn:uuid: prefix).
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def loggable_hook_instance(value: str, secret: bytes) -> str:
    """hookInstance as the request log line shows it: a UUID as sent (what CDS
    Hooks and the public sandbox send: random, it says nothing of the patient);
    anything else as "hmac:" and 16 hex digits of its keyed hash (the patient
    hash secret). The schema accepts any short string there so that a client
    with other identifiers is not refused its cards, and an EHR may build one
    from an encounter or a medical record number; the hash still tells the
    calls of one hookInstance apart from another's in the logs."""
    if _UUID.fullmatch(value):
        return value
    return "hmac:" + hmac.new(secret, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:16]


def find_service(service_id: str, rt: Runtime | None = None) -> CdsService:
    service = (rt or runtime()).services.get(service_id)
    if service is None:
        raise ApiError(404, f"no CDS service with id {service_id!r}; GET /cds-services lists them",
                       code="unknown_service")
    return service


def accept_call(service_id: str, path: str, rt: Runtime | None = None) -> tuple[CdsService, dict]:
    """What every POST to a service does first, in this order: the service
    exists (404), the caller is trusted for this exact URL (401), the body is
    a JSON object (415/400/413). `rt`: the app's runtime, when the caller has it."""
    rt = rt or runtime()
    service = find_service(service_id, rt)
    g.service_id = service.id
    req = request._get_current_object()  # type: ignore[attr-defined]
    rt.authenticate(req, path)
    return service, read_json_object(req)


def validate_hook_request(service: CdsService, body: dict, rt: Runtime | None = None) -> None:
    hook = body.get("hook")
    if isinstance(hook, str) and hook != service.hook:
        raise ApiError(400, f"service {service.id} answers the {service.hook} hook, not {hook!r}",
                       code="wrong_hook", details=["hook"])
    problems = schemas.errors(REQUEST_SCHEMAS[service.hook], body)
    server = body.get("fhirServer")
    if not problems and isinstance(server, str) and malformed(server):
        # Beyond what JSON Schema's "uri" format checks: Python and requests
        # would raise on such a URL wherever it is read.
        problems = [f"fhirServer: {malformed(server)}"]
    if problems:
        raise ApiError(400, f"the {service.hook} request is not valid: {problems[0]}",
                       code="invalid_request", details=problems[:20])
    token_patient = (body.get("fhirAuthorization") or {}).get("patient")
    if token_patient is not None and token_patient != body["context"]["patientId"]:
        # The token is scoped to that patient (CDS Hooks cds-r-2): what it fetches is theirs.
        raise ApiError(400, "fhirAuthorization.patient is not context.patientId: the access token is "
                            "scoped to another patient than the one in context", code="invalid_request",
                       details=["fhirAuthorization.patient"])
    drafts = ((body.get("context") or {}).get("draftOrders") or {}).get("entry") or []
    limit = (rt or runtime()).settings.max_draft_orders
    if len(drafts) > limit:
        raise ApiError(413, f"context.draftOrders has {len(drafts)} entries; the limit is {limit}",
                       code="too_many_draft_orders")
    if service.hook != "patient-view":  # patient-view judges no drafts
        check_draft_subjects(body)
    if service.hook == "order-select":
        check_selections(body)


def check_selections(body: dict) -> None:
    """400 when an entry of context.selections names no draft order in
    context.draftOrders. CDS Hooks: selections are the references
    (ResourceType/id) of the newly selected orders, and draftOrders holds every
    unsigned order of the session including those; order-select judges only
    the selected drafts, so a selection that matches none was answered with no
    cards and no word. The public sandbox sends one draft and its own
    reference as the selection. The message names the position, never the
    reference (an order id is the EHR's, and may carry more)."""
    context = body.get("context") or {}
    selections = context.get("selections")
    if not isinstance(selections, list):
        return  # the schema has answered already
    references = {f"{d['resourceType']}/{d['id']}" for d in drafts_from_context(context)
                  if isinstance(d, dict) and isinstance(d.get("resourceType"), str)
                  and isinstance(d.get("id"), str) and d["id"]}
    unmatched = [i for i, selection in enumerate(selections) if selection not in references]
    if unmatched:
        shown = ", ".join(f"context.selections[{i}]" for i in unmatched[:5])
        more = f" and {len(unmatched) - 5} more" if len(unmatched) > 5 else ""
        raise ApiError(400, f"{shown}{more} names no draft order in context.draftOrders: a selection must be "
                            "the ResourceType/id of one of its entries (CDS Hooks order-select), and the "
                            "selected order is the one judged", code="selection_not_in_draft_orders",
                       details=[f"context.selections[{i}]" for i in unmatched[:20]])


def check_draft_subjects(body: dict) -> None:
    """400 when a draft order names another patient than context.patientId: the EHR sent
    another patient's order in this patient's context. Skipping it would drop its safety
    cards without a word; judging it against this patient's record would check the wrong
    chart. A draft with no subject, or one that cannot be resolved (a urn: not in
    context.draftOrders or whose Patient has no id, a contained "#p" or conditional
    "Patient?identifier=x" reference, an absolute URL when no fhirServer is given), is
    judged as this patient's (record.finish counts it). "Patient?_id=x" is "Patient/x"."""
    context = body.get("context") or {}
    if not context.get("draftOrders"):
        return
    binding = PatientBinding(context["patientId"], fhir_server=body.get("fhirServer"))
    binding.bundle = context["draftOrders"]  # a draft's urn: subject resolves there
    for draft in drafts_from_context(context):
        # A Patient among the drafts is no order (its own id is checked where a subject names it).
        if (isinstance(draft, dict) and draft.get("resourceType") != "Patient"
                and binding.reason_to_ignore(draft) == FOREIGN_PATIENT):
            rtype, rid = draft.get("resourceType"), draft.get("id")
            name = f"{rtype}/{rid}" if isinstance(rtype, str) and isinstance(rid, str) else str(rtype)
            raise ApiError(400, f"context.draftOrders: the draft order {name[:140]} names someone other than "
                                "context.patientId as its subject (another patient, a group, or the patient "
                                "on another FHIR server than fhirServer): the EHR sent another patient's "
                                "order in this patient's context", code="draft_for_another_patient",
                           details=["context.draftOrders"])


def _patient_namespace(body: dict[str, Any]) -> str | None:
    """Where the patient id is unique, for the quieting key. With a verified
    client JWT: its issuer and tenant, and the request's FHIR server if it
    names one. fhirServer is whatever the client sends, so alone it would let
    one trusted EHR name another's server and patient and quiet that
    patient's cards there with its own feedback (issuer A's patient "X" is
    never issuer B's). Without a JWT (CDS_AUTH_REQUIRED=false): fhirServer."""
    server = body.get("fhirServer")
    issuer = g.get("issuer")
    if not issuer:
        return server or None
    tenant = g.get("tenant")
    if not server:  # the key's form before fhirServer was tied to the issuer: unchanged
        return f"jwt-issuer:{issuer}" + (f"#{tenant}" if tenant else "")
    # JSON: no issuer, tenant or server can be written to read as another's.
    return "jwt:" + json.dumps([issuer, tenant, server.rstrip("/")], separators=(",", ":"))


def caller() -> str:
    """Who is calling, as the quieting key tells clients apart (the verified
    issuer and tenant, else anonymous): recorded with each card issued, and
    only that client's feedback on the card counts."""
    return client_ref(g.get("issuer"), g.get("tenant"))


@bp.post("/cds-services/<service_id>")
def call_service(service_id: str):
    # The runtime and g read once: every proxy read is a context lookup.
    rt, state = runtime(), g._get_current_object()
    service, body = accept_call(service_id, f"/cds-services/{service_id}", rt)
    if isinstance(body.get("hookInstance"), str):
        state.hook_instance = loggable_hook_instance(body["hookInstance"], rt.patient_secret)
    validate_hook_request(service, body, rt)

    started = time.perf_counter()
    try:
        prefetch = resolve_prefetch(
            templates=service.prefetch,
            required=service.required_prefetch,
            body=body,
            settings=rt.settings,
            allowlist=rt.allowlist,
            session=rt.http,
        )
    except PrefetchInvalid as exc:
        raise ApiError(400, exc.message, code="invalid_prefetch", details=[f"prefetch.{exc.key}"]) from None
    except TooMuchData as exc:
        raise ApiError(413, str(exc), code="too_much_prefetch_data") from None
    except PrefetchError as exc:
        for kind in exc.kinds:
            metrics.FHIR_ERRORS.labels(kind).inc()
        # For the request log line: key names and fixed labels only (no ids, no URLs).
        state.prefetch_missing = sorted(exc.missing)
        state.prefetch_failed = dict(sorted(exc.failed_kinds.items()))
        raise ApiError(
            412,
            "the data this service needs could not be had: "
            + "; ".join(f"{key}: {reason}" for key, reason in sorted(exc.missing.items())),
            code="prefetch_unavailable",
            details={"missing": sorted(exc.missing), "failed": dict(sorted(exc.failed.items()))},
        ) from None
    state.fetch_ms = round((time.perf_counter() - started) * 1000, 2)
    if prefetch.fetched:
        metrics.FHIR_FETCH.observe(state.fetch_ms / 1000)
    for kind in prefetch.error_kinds:
        metrics.FHIR_ERRORS.labels(kind).inc()

    key = patient_key(rt.patient_secret, _patient_namespace(body), body["context"]["patientId"])
    key_of = functools.partial(trigger_key, rt.patient_secret, key)
    # One pooled connection for the quieting lookup and the issued-cards
    # insert (store.Lease); given back before the answer is written.
    with rt.store.lease() as lease:
        call = HookCall(
            service_id=service.id,
            hook=service.hook,
            hook_instance=body["hookInstance"],
            context=body["context"],
            prefetch=prefetch.data,
            today=dt.date.today(),
            settings=rt.settings,
            fhir_server=body.get("fhirServer"),
            policy=_policy(service, key, rt, lease, key_of),
        )
        outcome = service.evaluate(call)
        link = guidance_links(rt.settings)
        cards = finish_cards([{**c, "links": [*c.get("links", ()), link(rule_id(c))]} for c in outcome.cards])
        state.card_ids = [rule_id(c) for c in cards]
        state.cards_held, state.resources_skipped = len(outcome.held), outcome.skipped
        for c in cards:
            metrics.child(metrics.CARDS, rule_id(c), c["indicator"]).inc()
        for held in outcome.held:
            metrics.child(metrics.CARDS_HELD, held.card_id, held.reason).inc()
        # With the database down this raises, and the call answers 503: a card
        # that is not recorded could not have its feedback tied to its rule.
        client = caller()
        rt.store.record_cards([
            IssuedCard(
                card_uuid=c["uuid"],
                service_id=service.id,
                card_id=rule_id(c),
                indicator=c["indicator"],
                hook_instance=call.hook_instance,
                suggestion_uuids=tuple(s["uuid"] for s in c.get("suggestions", [])),
                patient_key=key,
                client=client,
                trigger_keys=tuple(sorted(map(key_of, outcome.triggers.get(rule_id(c), ())))),
            )
            for c in cards
        ], lease=lease)
    return jsonify({"cards": cards})


def _policy(service: CdsService, key: str, rt: Runtime, lease: Lease | None = None,
            key_of: Callable[[str], str] | None = None) -> CardPolicy:
    """Quieting and the budget apply to patient-view, the chart-open burden;
    an order hook's cards answer the order being placed now, each a new decision.
    `key_of`: a trigger token as stored (patient_key.trigger_key for this patient)."""
    if service.hook != "patient-view":
        return CardPolicy()
    settings = rt.settings
    try:
        quiet = rt.store.quiet_marks(key, {"info": settings.quiet_info_days, "warning": settings.quiet_warning_days},
                                     lease=lease)
    except Exception as exc:  # the store is down: show every card rather than none
        log.error("could not read quieted cards", extra={"error_type": type(exc).__name__})
        quiet = {}
    return CardPolicy(quiet=quiet, info_budget=settings.info_card_budget,
                      routine_budget=settings.routine_card_budget, key_of=key_of)
