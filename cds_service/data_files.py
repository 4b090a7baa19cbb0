"""Where the data files the service reads at run time are: cards/ (the card
templates), openapi/openapi.yaml (the request and response schemas) and
fhir_fixtures/ (example patients, for the command line).

In order: the folder CDS_DATA_DIR names; else the copy a wheel carries inside
the package (cds_service/_bundled/, written by setup.py when the wheel is
built: `pip install .` and the image); else the repository root next to the
package (a checkout, an editable install). `problem()` says in one line what
is missing, so a wrong CDS_DATA_DIR stops `cds-service serve` at start instead
of answering every hook call with 500.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

ENV = "CDS_DATA_DIR"
PACKAGE = Path(__file__).resolve().parent
BUNDLED = PACKAGE / "_bundled"
_HAS_BUNDLED = BUNDLED.is_dir()


def data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The folder holding cards/, openapi/ and fhir_fixtures/."""
    env = (os.environ if environ is None else environ).get(ENV, "").strip()
    if env:
        return Path(env)
    return BUNDLED if _HAS_BUNDLED else PACKAGE.parent


def openapi_candidates(root: Path) -> list[Path]:
    return [root / "openapi" / "openapi.yaml", root / "openapi.yaml"]


def openapi_path(environ: Mapping[str, str] | None = None) -> Path:
    root = data_dir(environ)
    candidates = openapi_candidates(root)
    for path in candidates:
        if path.is_file():
            return path
    set_ = bool((os.environ if environ is None else environ).get(ENV, "").strip())
    raise FileNotFoundError(
        "openapi.yaml not found; looked at " + ", ".join(str(p) for p in candidates)
        + (" (CDS_DATA_DIR is set)" if set_ else " (set CDS_DATA_DIR to its folder)"))


def missing(root: Path) -> list[str]:
    """What the service needs to answer hook calls that `root` lacks."""
    out = []
    cards = root / "cards"
    if not any(cards.glob("C-*.yaml")):
        out.append("cards/C-*.yaml (the card templates)")
    elif not (cards / "_override_reasons.yaml").is_file():
        out.append("cards/_override_reasons.yaml")
    if not any(path.is_file() for path in openapi_candidates(root)):
        out.append("openapi/openapi.yaml")
    return out


def problem(environ: Mapping[str, str] | None = None) -> str | None:
    """One line (without the variable's name) when the data files cannot be
    found, else None."""
    given = bool((os.environ if environ is None else environ).get(ENV, "").strip())
    root = data_dir(environ)
    how = "point it at the folder holding cards/ and openapi/ (the image's /app)"
    if _HAS_BUNDLED:
        how += ", or unset it to use the copy installed with the package"
    if given and not root.is_dir():
        return f"folder {root} does not exist; {how}"
    lacks = missing(root)
    if not lacks:
        return None
    if given:
        return f"{root} has no {', no '.join(lacks)}; {how}"
    return (f"not set, and {root} (beside the installed package) has no {', no '.join(lacks)}: set it to the "
            "folder holding cards/ and openapi/, or install a wheel built from the repository (pip install .)")
