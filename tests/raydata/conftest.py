"""One local Ray instance for the session (2 CPUs, no dashboard): Ray's start-up is paid once."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ray_local():
    ray = pytest.importorskip("ray", reason='pip install "reindexer[ray]" (in the test extra) for the Ray tests')
    pytest.importorskip("ray.data", reason='the Ray executor needs ray[data]')
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", logging_level="WARNING",
             log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
