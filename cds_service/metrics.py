"""Prometheus metrics, served at /metrics.

Labels are ids only (service, status, rule id, indicator, reason): never
anything about a patient. The requests' `service` label is the service id for
a hook call, "<service id>/feedback" for feedback to it (FEEDBACK_SUFFIX), the
route pattern for anything else ("/cds-services", "/healthz", "unmatched").

Under gunicorn the workers' metrics live in files in PROMETHEUS_MULTIPROC_DIR
(the chart sets it to its memory emptyDir; without it `cds-service serve`
makes a private folder), and /metrics aggregates every worker's files. The
server clears that folder of prometheus_client's own files only
(cds_service/metrics_dir.py).
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client import REGISTRY as DEFAULT_REGISTRY

FEEDBACK_SUFFIX = "/feedback"

_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

REQUESTS = Counter("cds_http_requests_total", "HTTP requests answered", ["service", "method", "status"])
LATENCY = Histogram("cds_http_request_duration_seconds", "Time to answer a request", ["service", "method"],
                    buckets=_LATENCY_BUCKETS)
CARDS = Counter("cds_cards_issued_total", "Cards returned to CDS clients", ["card_id", "indicator"])
CARDS_HELD = Counter("cds_cards_held_total", "Cards the rules chose but patient-view did not show: "
                     "quieted by feedback or over the info-card budget", ["card_id", "reason"])
FEEDBACK = Counter("cds_feedback_total", "Feedback entries stored (resubmissions not counted)",
                   ["card_id", "outcome"])
FHIR_FETCH = Histogram("cds_fhir_fetch_duration_seconds", "Prefetch fallback time per hook call",
                       buckets=_LATENCY_BUCKETS)
FHIR_ERRORS = Counter("cds_fhir_fetch_errors_total", "Prefetch fallback failures", ["kind"])
RECORD_IGNORED = Counter("cds_record_ignored_total",
                         "Resources or values not used: another patient's, no subject, implausible, future-dated, "
                         "a Patient's gender or birthDate its copies disagree on",
                         ["reason"])
DRAFTS_UNBOUND = Counter("cds_draft_orders_unbound_total",
                         "Draft orders judged as the context patient's though their subject could not be resolved",
                         ["reason"])
CARDS_WITHHELD = Counter("cds_cards_withheld_total", "Hook calls answered without cards by policy", ["reason"])
# The WSGI environ key where the request gate leaves how long the request
# waited for its slot (seconds); the app adds it to the request's duration.
QUEUE_SECONDS = "cds.queue_seconds"

# Saturation, kept by the production server's request gate (cds_service/gunicorn_worker.py,
# RequestGate); absent from the development server. "livesum": the live workers' values summed,
# a dead worker's dropped (server._worker_gone).
IN_FLIGHT = Gauge("cds_http_requests_in_flight", "Requests inside the app, each holding a request slot",
                  multiprocess_mode="livesum")
QUEUED = Gauge("cds_http_requests_queued", "Requests waiting for a request slot (or a long chart for its turn)",
               multiprocess_mode="livesum")
SLOTS = Gauge("cds_http_request_slots", "Request slots: CDS_THREADS per worker, summed over the live workers",
              multiprocess_mode="livesum")
QUEUE_WAIT = Histogram("cds_http_request_queue_seconds",
                       "Time a request waited for a request slot (and a long chart for its turn) "
                       "before the app started on it", buckets=_LATENCY_BUCKETS)
AUTH_FAILURES = Counter("cds_auth_failures_total", "Refused client authentications", ["reason"])


_CHILDREN: dict[tuple[object, tuple[str, ...]], Any] = {}


def child(metric: Any, *labels: str) -> Any:
    """metric.labels(*labels), remembered: labels() checks its values and takes
    a lock each time (about 1 us), and a hook call takes several. Label values
    are ids from bounded sets (routes, statuses, rule ids), as above."""
    key = (metric, labels)
    found = _CHILDREN.get(key)
    if found is None:
        found = _CHILDREN[key] = metric.labels(*labels)
    return found


def exposition() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = DEFAULT_REGISTRY
    return generate_latest(registry), CONTENT_TYPE_LATEST
