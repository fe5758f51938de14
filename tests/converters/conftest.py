"""The local Hub server's fixtures (`hf_home`, `hub`) for every converter test."""

from tests.support.hub_fixtures import hf_home, hub  # noqa: F401 (fixtures)
