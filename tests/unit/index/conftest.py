import pytest
from clustered_index import clustered_index  # tests/support


@pytest.fixture(scope="module")
def index():
    return clustered_index()
