"""A private mock upstream for the modules that forward bodies nested to the limit.

The shared mock's request log (`/_mock/requests`, one level deeper) could no longer write such
bodies back, so these modules import this fixture, which overrides the shared `mock_upstream`.
"""

from __future__ import annotations

import pytest

from aigateway.demo.mock_upstream import create_mock_app
from tests.support.servers import ServerThread


@pytest.fixture(scope="module")
def mock_upstream():
    server = ServerThread(lambda: create_mock_app(slow_seconds=1.5)).start()
    yield server
    server.stop()
