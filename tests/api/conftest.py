"""The API suites start real `baton` processes as the end-to-end suites do."""

from tests.e2e.conftest import services

__all__ = ["services"]
