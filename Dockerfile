# syntax=docker/dockerfile:1
# Osteoporosis CDS Hooks service: production image.
#   docker build -t osteoporosis-cds-service .
#   docker run -p 8080:8080 osteoporosis-cds-service
# Build stage: install into a virtualenv so the runtime stage copies one
# directory and carries no pip cache or build files.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY cds_service ./cds_service
# The postgres extra: production stores feedback in PostgreSQL.
RUN pip install ".[postgres]"

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CDS_DATA_DIR=/app \
    CDS_HOST=0.0.0.0 \
    CDS_PORT=8080 \
    CDS_DATABASE_URL=sqlite:////var/lib/osteoporosis-cds/cds_service.db
# A fixed numeric uid/gid so Kubernetes' runAsNonRoot can verify it.
RUN groupadd --system --gid 10001 cds \
 && useradd --system --uid 10001 --gid cds --home-dir /app --no-create-home --shell /usr/sbin/nologin cds \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/osteoporosis-cds
# The only place the service writes: the default SQLite feedback store (set
# CDS_DATABASE_URL to PostgreSQL in production). Migrate it first with
#   docker run --entrypoint cds-service -v cds-data:/var/lib/osteoporosis-cds IMAGE migrate
VOLUME /var/lib/osteoporosis-cds
COPY --from=build /opt/venv /opt/venv
# Data the service reads at run time (CDS_DATA_DIR); owned by root, read-only to the service.
COPY cards /app/cards
COPY openapi /app/openapi
COPY fhir_fixtures /app/fhir_fixtures
WORKDIR /app
USER 10001:10001
EXPOSE 8080
# Python, not curl: the slim image has no curl and the service needs none.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('CDS_PORT', '8080'), timeout=4)"
# gunicorn with its gevent worker, safe to expose directly (README, "Serving,
# slow clients and fault drills"); /metrics sums the workers by itself (their
# metric files go to a folder of its own under /tmp).
ENTRYPOINT ["cds-service", "serve", "--host", "0.0.0.0"]
