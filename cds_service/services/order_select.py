"""The order-select service: `osteoporosis-order-select`."""

from __future__ import annotations

from cds_service.services import CdsService
from cds_service.services.clinical import evaluate
from cds_service.services.prefetch_templates import PREFETCH, REQUIRED_ON_ORDERS

SERVICE = CdsService(
    id="osteoporosis-order-select",
    hook="order-select",
    title="Osteoporosis order check (selection)",
    description="When a clinician selects an order: checks bone drugs, bone-density scans and massage-therapy referrals against this patient's kidney function, calcium, vitamin D, fractures and current therapy, with the safe alternative one click away.",
    prefetch=PREFETCH,
    required_prefetch=REQUIRED_ON_ORDERS,
    evaluate=evaluate,
)
