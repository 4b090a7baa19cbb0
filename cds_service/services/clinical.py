"""The one evaluate function the three services share: hook call -> PatientRecord -> engine -> cards.

What differs by hook is only which draft orders are judged: none on
patient-view, the `selections` on order-select (the other drafts are
context), every draft on order-sign.
"""

from __future__ import annotations

from cds_service import engine, metrics
from cds_service.engine import Outcome
from cds_service.record import build_record, drafts_from_context
from cds_service.rules.settings import ClinicalSettings
from cds_service.services import HookCall


# (service settings, their clinical part) of the last call: the service's Settings is one
# frozen object for the life of the app, so its clinical part is built once, not per call.
_LAST: tuple[object, ClinicalSettings] | None = None


def _clinical(service_settings: object) -> ClinicalSettings:
    global _LAST
    last = _LAST
    if last is None or last[0] is not service_settings:
        last = _LAST = (service_settings, ClinicalSettings.from_settings(service_settings))
    return last[1]


def evaluate(call: HookCall) -> Outcome:
    settings = _clinical(call.settings)
    drafts = drafts_from_context(call.context) if call.hook != "patient-view" else ()
    selections = call.context.get("selections") if call.hook == "order-select" else None
    record = build_record(call.prefetch, drafts=drafts, today=call.today, selections=selections, settings=settings,
                          patient_id=call.context.get("patientId"), fhir_server=call.fhir_server,
                          draft_orders=call.context.get("draftOrders") if drafts else None)
    for reason, count in record.ignored_counts.items():
        metrics.RECORD_IGNORED.labels(reason).inc(count)
    if record.unbound_drafts:
        metrics.DRAFTS_UNBOUND.labels("unresolved-reference").inc(len(record.unbound_drafts))
    return engine.decide(call.hook, record, call.today, settings, patient_id=call.context.get("patientId"),
                         policy=call.policy)
