"""Clinical rules, one module per clinical area (brief sections 2-6).

Importing this package imports every area module, which registers its rules
with `cds_service.rules.base.rule`. Add a new module to the import list below.
"""

from cds_service.rules import (  # noqa: F401 - imported for rule registration
    diagnosis,
    exercise,
    lifestyle,
    massage,
    monitoring,
    order_safety,
    supplementation,
    treatment,
)
