"""The order-select service: `osteoporosis-order-select`."""

from __future__ import annotations

from cds_service import engine
from cds_service.record import build_record, drafts_from_context
from cds_service.rules.settings import ClinicalSettings
from cds_service.services import CdsService, HookCall
from cds_service.services.prefetch_templates import PREFETCH, REQUIRED


def evaluate(call: HookCall) -> list[dict]:
    settings = ClinicalSettings.from_settings(call.settings)
    # order-select judges only the selected drafts; the others are context.
    record = build_record(call.prefetch, drafts=drafts_from_context(call.context), today=call.today,
                          selections=call.context.get("selections"), settings=settings)
    return engine.evaluate(call.hook, record, call.today, settings,
                           patient_id=call.context.get("patientId"))


SERVICE = CdsService(
    id="osteoporosis-order-select",
    hook="order-select",
    title="Osteoporosis order check (selection)",
    description="When a clinician selects an order: checks bone drugs, bone-density scans and massage-therapy referrals against this patient's kidney function, calcium, vitamin D, fractures and current therapy, with the safe alternative one click away.",
    prefetch=PREFETCH,
    required_prefetch=REQUIRED,
    evaluate=evaluate,
)
