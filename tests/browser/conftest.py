"""The browser check reuses the real Prefect server and nightly story of tests/deployments/."""

import pytest
from playwright.sync_api import expect

from tests.deployments.conftest import nightly, prefect_server

__all__ = ["nightly", "prefect_server"]

UI_ASSERT_TIMEOUT_MS = 60_000


@pytest.fixture(autouse=True, scope="session")
def patient_assertions() -> None:
    """`expect(...)` waits up to a minute, as the pages' own actions do.

    Its default (5 s) is not `page.set_default_timeout`'s: a busy 2-core machine can take longer
    to render the dashboard's run page or to encode a painted 6 MP mask.
    """
    expect.set_options(timeout=UI_ASSERT_TIMEOUT_MS)
