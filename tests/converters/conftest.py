"""Fixtures for every converter test: the local Hub server's (`hf_home`, `hub`), and the SmolLM2 F16
with an importance matrix for it (`smol_f16`, `smol_matrix`)."""

from tests.support.hub_fixtures import hf_home, hub  # noqa: F401 (fixtures)
from tests.support.imatrix import smol_f16, smol_matrix  # noqa: F401 (fixtures)
