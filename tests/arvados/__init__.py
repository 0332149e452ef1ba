"""A test double of an Arvados cluster (API server and Keep) that the unmodified clients talk to.

See README.rst beside this file. Start one with `ArvadosDouble(workdir)` (a context manager) or
use the `arvados_double` fixture of conftest.py.
"""

from .double import ArvadosDouble

__all__ = ["ArvadosDouble"]
