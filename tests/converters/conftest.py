"""Fixtures for every converter test: the local Hub server's (`hf_home`, `hub`)."""

from tests.support.hub_fixtures import hf_home, hub  # noqa: F401 (fixtures)
