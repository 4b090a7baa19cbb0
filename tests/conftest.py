import datetime as dt

import pytest

from cds_service.config import load_settings

TODAY = dt.date(2025, 6, 1)


@pytest.fixture
def settings():
    return load_settings(environ={})


def coding(system, code, display=None):
    c = {"system": system, "code": code}
    if display:
        c["display"] = display
    return {"coding": [c]}
