"""The order-sign service: `osteoporosis-order-sign`."""

from __future__ import annotations

from cds_service.services import CdsService
from cds_service.services.clinical import evaluate
from cds_service.services.prefetch_templates import PREFETCH, REQUIRED_ON_ORDERS

SERVICE = CdsService(
    id="osteoporosis-order-sign",
    hook="order-sign",
    title="Osteoporosis order check (signing)",
    description="Before orders are signed: the same safety checks as at selection, over every draft order, so nothing unsafe is signed.",
    prefetch=PREFETCH,
    required_prefetch=REQUIRED_ON_ORDERS,
    evaluate=evaluate,
)
