"""The wheel carries the data files the service reads at run time, so that
`pip install .` (and the image's build stage) gives a service that answers
hook calls without CDS_DATA_DIR: cards/, openapi/ and the example patients
and requests of fhir_fixtures/ are copied into the package as
cds_service/_bundled/ (found there by cds_service/data_files.py). They live at
the repository root, outside the package, so package-data cannot name them.

An editable install copies nothing: it reads the checkout itself. Everything
else is in pyproject.toml.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
TARGET = ("cds_service", "_bundled")
# folder (relative to the repository root) -> file patterns; cards and openapi are required.
BUNDLED = {
    "cards": ("*.yaml",),
    "openapi": ("openapi.yaml",),
    "fhir_fixtures": ("README.md",),
    "fhir_fixtures/patients": ("*.json",),
    "fhir_fixtures/requests": ("*.json",),
}
REQUIRED = ("cards/_override_reasons.yaml", "openapi/openapi.yaml")


class BuildWithData(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        absent = [name for name in REQUIRED if not (ROOT / name).is_file()]
        if absent:
            raise SystemExit(f"cannot build: {', '.join(absent)} not found beside setup.py; a wheel without "
                             "them would start but fail every hook call")
        target = Path(self.build_lib, *TARGET)
        for folder, patterns in BUNDLED.items():
            for pattern in patterns:
                for source in sorted((ROOT / folder).glob(pattern)):
                    destination = target / folder / source.name
                    self.mkpath(str(destination.parent))
                    self.copy_file(str(source), str(destination))


setup(cmdclass={"build_py": BuildWithData})
