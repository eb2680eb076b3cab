"""Fixtures the test modules share."""
import pytest

from _data_fixtures import smoke_set


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """The smoke preset's synthetic set, generated once for the module."""
    return smoke_set(tmp_path_factory.mktemp("data"))
