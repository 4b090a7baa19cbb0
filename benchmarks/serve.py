"""Run the production server (cds_service.server, gunicorn) for the benchmark:
`python -m benchmarks.serve service|bare PORT`. Settings come from the
environment exactly as in production (CDS_WORKERS, CDS_THREADS, ...); only the
app differs between `service` (cds_service.app.create_app) and `bare`."""

from __future__ import annotations

import sys

from cds_service.config import load_settings
from cds_service.server import run_production


def main(argv: list[str]) -> None:
    which, port = argv[0], int(argv[1])
    settings = load_settings()
    if which == "bare":
        def factory():
            import gc

            from benchmarks.baseline import create_bare_app

            app = create_bare_app(settings)
            gc.collect()
            gc.freeze()  # as production's factory does (it also warms the service's caches first)
            return app
    elif which == "service":
        factory = None  # production's own factory
    else:
        raise SystemExit(f"unknown app {which!r}")
    run_production(settings, host="127.0.0.1", port=port, app_factory=factory)


if __name__ == "__main__":
    main(sys.argv[1:])
