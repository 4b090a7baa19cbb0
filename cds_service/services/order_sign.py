"""The order-sign service: `osteoporosis-order-sign`."""

from __future__ import annotations

from cds_service import engine
from cds_service.record import build_record, drafts_from_context
from cds_service.rules.settings import ClinicalSettings
from cds_service.services import CdsService, HookCall
from cds_service.services.prefetch_templates import PREFETCH, REQUIRED


def evaluate(call: HookCall) -> list[dict]:
    settings = ClinicalSettings.from_settings(call.settings)
    # order-sign judges every draft order.
    record = build_record(call.prefetch, drafts=drafts_from_context(call.context), today=call.today,
                          selections=None, settings=settings)
    return engine.evaluate(call.hook, record, call.today, settings,
                           patient_id=call.context.get("patientId"))


SERVICE = CdsService(
    id="osteoporosis-order-sign",
    hook="order-sign",
    title="Osteoporosis order check (signing)",
    description="Before orders are signed: the same safety checks as at selection, over every draft order, so nothing unsafe is signed.",
    prefetch=PREFETCH,
    required_prefetch=REQUIRED,
    evaluate=evaluate,
)
