"""Run the production server (cds_service.server, gunicorn) for the benchmark:
`python -m benchmarks.serve service|bare|service-gthread PORT`. Settings come
from the environment exactly as in production (CDS_WORKERS, CDS_THREADS, ...);
only the app differs between `service` (cds_service.app.create_app) and
`bare`. `service-gthread` is the arrangement before issue 10 (gunicorn's
threaded worker, CDS_THREADS threads, no request gate, no connection
recycling), kept only so benchmarks/serving.py can show the difference."""

from __future__ import annotations

import sys

from cds_service.config import load_settings
from cds_service.server import ProductionServer, run_production


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
    elif which == "service-gthread":
        from cds_service.server import _default_factory, gunicorn_options

        options = gunicorn_options(settings, "127.0.0.1", port)
        options.update(worker_class="gthread", threads=settings.threads, pre_request=lambda worker, req: None)
        del options["worker_connections"]

        class Threaded(ProductionServer):
            def load(self):
                return _default_factory()

        Threaded(options, _default_factory, settings).run()
        return
    else:
        raise SystemExit(f"unknown app {which!r}")
    run_production(settings, host="127.0.0.1", port=port, app_factory=factory)


if __name__ == "__main__":
    main(sys.argv[1:])
