"""The aiokafka clients the bus makes: started and stopped without leaving a connection open."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator

import pytest

from bus.kafka_clients import begin_transaction, new_consumer, new_producer

BOUND_S = 30.0
METADATA_API_KEY = 3


class MetadataHold:
    """A TCP proxy to the broker that passes every request but the first Metadata request,
    which it holds until `release()`: a client bootstrapping through it stops exactly where
    aiokafka waits for its first metadata. `closed` is set when the client closes its side."""

    def __init__(self, bootstrap: str) -> None:
        host, port = bootstrap.rsplit(":", 1)
        self._broker = (host, int(port))
        self.held = asyncio.Event()
        self.closed = asyncio.Event()
        self._released = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def address(self) -> str:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"{host}:{port}"

    def release(self) -> None:
        self._released.set()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[MetadataHold]:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        try:
            yield self
        finally:
            self._server.close()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()

    async def _serve(self, client_in: asyncio.StreamReader,
                     client_out: asyncio.StreamWriter) -> None:
        broker_in, broker_out = await asyncio.open_connection(*self._broker)
        back = asyncio.create_task(self._pipe(broker_in, client_out))
        self._tasks.add(back)
        try:
            while True:
                size = await client_in.readexactly(4)
                body = await client_in.readexactly(struct.unpack(">i", size)[0])
                (api_key,) = struct.unpack(">h", body[:2])
                if api_key == METADATA_API_KEY and not self._released.is_set():
                    self.held.set()
                    await self._released.wait()
                broker_out.write(size + body)
                await broker_out.drain()
        except asyncio.IncompleteReadError:
            self.closed.set()  # the client closed its connection
        finally:
            broker_out.close()
            client_out.close()

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()


@pytest.mark.kafka
@pytest.mark.parametrize("kind", ["consumer", "producer"])
async def test_a_client_start_cancelled_while_it_waits_for_metadata_closes_its_connection(
    kafka_bootstrap: str, kind: str,
) -> None:
    # given: a client starting through a proxy that holds its first metadata request
    async with MetadataHold(kafka_bootstrap).running() as proxy:
        start = asyncio.create_task(
            new_consumer(proxy.address, 100) if kind == "consumer"
            else new_producer(proxy.address, f"test-cancelled-start-{kind}"))
        async with asyncio.timeout(BOUND_S):
            await proxy.held.wait()
            # when: whoever started it is cancelled there, and the metadata comes after all
            start.cancel()
            proxy.release()
            # then: the cancellation arrives, and the client's connection is closed
            with pytest.raises(asyncio.CancelledError):
                await start
            await proxy.closed.wait()


@pytest.mark.kafka
async def test_a_producer_with_its_id_begins_a_transaction_without_a_turn_of_the_loop(
    kafka_bootstrap: str,
) -> None:
    # given a transactional producer that has its producer id (init_transactions done)
    producer = await new_producer(kafka_bootstrap, "test-begin-at-once")
    try:
        # when a transaction begins
        step = begin_transaction(producer)
        # then it has begun in the first step, having awaited nothing
        with pytest.raises(StopIteration):
            step.send(None)
        assert producer._txn_manager.is_in_transaction()  # white box
        await producer.abort_transaction()
    finally:
        await producer.stop()
