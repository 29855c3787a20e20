"""The waiter pool of a KafkaBus (bus/kafka_waiters.py): a long-poll left at the broker by a
wait that ended holds up no later wait."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.conn import AIOKafkaConnection

from bus import Outgoing, TopicPartition
from bus.kafka import KafkaBus
from bus.kafka_waiters import QUIET_AFTER_S, WAITER_FETCH_WAIT_MS
from events import topics
from tests.kafka import test_kafka_bus as kafka_bus_tests
from tests.kafka.test_kafka_bus import BOUND_S, Deployment
from tests.kafka.test_kafka_clients import MetadataHold

pytestmark = pytest.mark.kafka

LONG_POLL_MS = 20_000
"""The waiters' fetch wait here: a long-poll left on a waiter's connection is answered only
this long after it was sent, far past the bound on the wait that must not queue behind it."""
PROMPT_S = LONG_POLL_MS / 1000 / 4
"""What the later wait may take, a new waiter's bootstrap included: on a loaded machine a
few hundred milliseconds, far below the left-over long-poll it must not wait for."""

deployment = kafka_bus_tests.deployment  # the fixture: fresh topics, buses closed after


class LongPolls:
    """Counts the Fetch requests with the waiters' fetch wait written to a connection, `sent`
    set at the first (white box: aiokafka's connection `send`, which writes before it
    returns)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent = asyncio.Event()
        self.count = 0
        send = AIOKafkaConnection.send

        def spied(conn: Any, request: Any, expect_response: bool = True) -> Any:
            answer = send(conn, request, expect_response)
            if getattr(request, "_max_wait_ms", None) == LONG_POLL_MS:
                self.count += 1
                self.sent.set()
            return answer

        monkeypatch.setattr(AIOKafkaConnection, "send", spied)


async def ended_mid_long_poll(bus: KafkaBus, long_polls: LongPolls, tp: TopicPartition
                              ) -> None:
    """A wait on `tp` cancelled (as a group loop woken by something else cancels its wait)
    once its waiter's long-poll is at the broker."""
    first = asyncio.create_task(bus.wait({tp: 0}, BOUND_S))
    await long_polls.sent.wait()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_a_wait_is_not_held_up_by_the_long_poll_an_ended_wait_left_at_the_broker(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a consumer whose wait on one partition ended (a group loop woken by a fleet
    # change) while its waiter's long-poll was at the broker
    bus, other = await deployment.open(), await deployment.open()
    bus._waiters._fetch_wait_ms = LONG_POLL_MS  # white box: waiters made from here on
    long_polls = LongPolls(monkeypatch)
    quiet, busy = TopicPartition(topics.TRIGGERS, 0), TopicPartition(topics.TRIGGERS, 1)
    async with asyncio.timeout(BOUND_S):
        await ended_mid_long_poll(bus, long_polls, quiet)

        # when it waits on another partition and another process publishes there
        second = asyncio.create_task(bus.wait({busy: 0}, BOUND_S))
        await other.publish([Outgoing(topics.TRIGGERS, "k", b"x", partition=1)])

        # then the record ends that wait long before the broker answers the left-over
        # long-poll (which found nothing): the wait's Fetch did not queue behind it
        async with asyncio.timeout(PROMPT_S):
            assert await second
    assert len(bus._waiters._settling) == 1  # white box: the first waiter, still at the broker


async def test_a_wait_from_where_an_ended_wait_stood_takes_its_waiter_and_its_long_poll(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a consumer whose wait ended (woken by something else) while its waiter's
    # long-poll was at the broker
    bus, other = await deployment.open(), await deployment.open()
    bus._waiters._fetch_wait_ms = LONG_POLL_MS  # white box: waiters made from here on
    long_polls = LongPolls(monkeypatch)
    tp = TopicPartition(topics.TRIGGERS, 0)
    async with asyncio.timeout(BOUND_S):
        await ended_mid_long_poll(bus, long_polls, tp)

        # when it waits again from the same position and another process publishes there
        second = asyncio.create_task(bus.wait({tp: 0}, BOUND_S))
        await other.publish([Outgoing(topics.TRIGGERS, "k", b"x", partition=0)])

        # then the long-poll left on the wire brings the record to that wait, on the same
        # waiter: no other waiter was made, and the wait sent no Fetch of its own
        async with asyncio.timeout(PROMPT_S):
            assert await second
    waiters = bus._waiters  # white box
    assert len([*waiters._idle, *waiters.busy, *waiters._settling]) == 1
    assert long_polls.count == 1


async def test_a_waiter_whose_long_poll_is_answered_goes_back_to_the_pool(
    deployment: Deployment,
) -> None:
    # given a wait that timed out while its waiter's long-poll was at the broker
    bus = await deployment.open()
    tp = TopicPartition(topics.TRIGGERS, 0)
    async with asyncio.timeout(BOUND_S):
        assert not await bus.wait({tp: 0}, 0.15)
        # when the broker answers that long-poll (its fetch wait is over)
        await asyncio.gather(*bus._waiters._settling.values())  # white box
        # then the waiter is idle again and the next wait takes it, making none
        idle = list(bus._waiters._idle)
        waiting = asyncio.create_task(bus.wait({tp: 0}, BOUND_S))
        await asyncio.sleep(0)  # one step: it takes the idle waiter
        assert len(idle) == 1 and bus._waiters.busy == set(idle)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting


async def test_closing_stops_the_waiters_still_waiting_for_their_long_poll(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a bus whose waiter's wait ended with its long-poll at the broker
    bus = await deployment.open()
    bus._waiters._fetch_wait_ms = LONG_POLL_MS  # white box
    long_polls = LongPolls(monkeypatch)
    async with asyncio.timeout(BOUND_S):
        waiting = asyncio.create_task(bus.wait({TopicPartition(topics.TRIGGERS, 0): 0},
                                               BOUND_S))
        await long_polls.sent.wait()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        (settling,) = bus._waiters._settling  # white box
        # when the bus closes
        await bus.close()
    # then that waiter is stopped at once, not after its long-poll
    assert settling._closed and not bus._waiters._settling  # white box: aiokafka's flag


async def test_a_wait_that_starts_a_new_waiter_ends_at_a_hand_off_that_comes_meanwhile(
    deployment: Deployment, kafka_bootstrap: str,
) -> None:
    # given a wait on an empty partition of a bus with no idle waiter, whose new waiter is
    # held in its bootstrap (its first Metadata request held by a proxy)
    bus = await deployment.open()
    tp = TopicPartition(topics.TRIGGERS, 0)
    async with MetadataHold(kafka_bootstrap).running() as proxy, asyncio.timeout(BOUND_S):
        bus._waiters._bootstrap = proxy.address  # white box: the waiters it starts from here
        waiting = asyncio.create_task(bus.wait({tp: 0}, BOUND_S))
        await proxy.held.wait()
        # when this bus appends a record there (handed over to its own waits)
        await bus.append([Outgoing(topics.TRIGGERS, "dataset", b"arrived", partition=0)])
        # then the wait ends at once, the new waiter still starting
        assert await waiting
        # and once started, that waiter is in the pool for the next wait
        proxy.release()
        await asyncio.gather(*bus._waiters._starting)  # white box
        assert len(bus._waiters._idle) == 1 and not bus._waiters.busy


class FetchWaits:
    """The fetch wait of every Fetch request written to a connection (white box: aiokafka's
    connection `send`), the reader's own (wait 0) left out."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.waits: list[int] = []
        send = AIOKafkaConnection.send

        def spied(conn: Any, request: Any, expect_response: bool = True) -> Any:
            wait = getattr(request, "_max_wait_ms", None)
            if isinstance(wait, int) and wait > 0:
                self.waits.append(wait)
            return send(conn, request, expect_response)

        monkeypatch.setattr(AIOKafkaConnection, "send", spied)


async def test_a_quiet_wait_long_polls_longer_after_its_first_long_polls_found_nothing(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a bus with a waiter in its pool, and a partition nobody writes to
    bus = await deployment.open()
    tp = TopicPartition(topics.TRIGGERS, 0)
    async with asyncio.timeout(BOUND_S):
        assert not await bus.wait({tp: 0}, 0.01)
        await asyncio.gather(*bus._waiters._settling.values())  # white box: back in the pool
        fetches = FetchWaits(monkeypatch)

        # when a consumer waits a second there
        assert not await bus.wait({tp: 0}, 1.0)

    # then its first long-polls wait the waiters' fetch wait, and once they found nothing the
    # next one waits for (about) the rest of the wait: a few Fetches, not one per 100 ms
    assert fetches.waits[0] == WAITER_FETCH_WAIT_MS
    assert max(fetches.waits) > 5 * WAITER_FETCH_WAIT_MS
    assert len(fetches.waits) <= 1000 * QUIET_AFTER_S / WAITER_FETCH_WAIT_MS + 2
