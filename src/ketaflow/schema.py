"""Every capability's tables, gathered into one metadata for Alembic and the tests."""

from ketaflow.core.db import Base
from ketaflow.measures import tables as measures_tables  # noqa: F401
from ketaflow.patients import tables as patients_tables  # noqa: F401
from ketaflow.security import tables as security_tables  # noqa: F401
from ketaflow.therapy import tables as therapy_tables  # noqa: F401
from ketaflow.treatment import tables as treatment_tables  # noqa: F401

metadata = Base.metadata
