"""The browser check reuses the real Prefect server and nightly story of tests/deployments/."""

from tests.deployments.conftest import nightly, prefect_server

__all__ = ["nightly", "prefect_server"]
