"""The bus contract, run on the embedded bus and on a real Kafka broker (see conftest.py)."""

from tests.bus.contract import BusContract


class TestBus(BusContract):
    """Every test of BusContract, once per bus kind."""
