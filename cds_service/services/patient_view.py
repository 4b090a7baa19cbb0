"""The patient-view service: `osteoporosis-patient-view`."""

from __future__ import annotations

from cds_service.services import CdsService
from cds_service.services.clinical import evaluate
from cds_service.services.prefetch_templates import PREFETCH, REQUIRED

SERVICE = CdsService(
    id="osteoporosis-patient-view",
    hook="patient-view",
    title="Osteoporosis care review",
    description="When a chart opens: osteoporosis diagnosis and fracture risk, treatment and drug-safety checks, calcium and vitamin D, bone-density monitoring, exercise, rehabilitation and fall prevention, each with the orders to act on it.",
    prefetch=PREFETCH,
    required_prefetch=REQUIRED,
    evaluate=evaluate,
)
