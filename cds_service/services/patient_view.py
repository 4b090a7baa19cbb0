"""The patient-view service: `osteoporosis-patient-view`."""

from __future__ import annotations

from cds_service import engine
from cds_service.record import build_record
from cds_service.rules.settings import ClinicalSettings
from cds_service.services import CdsService, HookCall
from cds_service.services.prefetch_templates import PREFETCH, REQUIRED


def evaluate(call: HookCall) -> list[dict]:
    settings = ClinicalSettings.from_settings(call.settings)
    record = build_record(call.prefetch, today=call.today, settings=settings)
    return engine.evaluate(call.hook, record, call.today, settings,
                           patient_id=call.context.get("patientId"))


SERVICE = CdsService(
    id="osteoporosis-patient-view",
    hook="patient-view",
    title="Osteoporosis care review",
    description="When a chart opens: osteoporosis diagnosis and fracture risk, treatment and drug-safety checks, calcium and vitamin D, bone-density monitoring, exercise, rehabilitation and fall prevention, each with the orders to act on it.",
    prefetch=PREFETCH,
    required_prefetch=REQUIRED,
    evaluate=evaluate,
)
