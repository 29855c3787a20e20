"""Records a KafkaBus committed handed to its own reads and waits (bus/kafka_handoff.py).

Inside one `baton up` every stage, group loop, agent and the projector share one bus; what it
committed itself is read from memory instead of fetched. Checked here against what Kafka
delivers to another instance: the same records (offsets, headers, timestamps), none twice when
the reader goes on from the broker, nothing of a transaction that did not surely commit, and a
coordinator that took a record from memory and then died is taken over without a decision made
twice.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from bus import BusError, Outgoing, Record, TopicPartition, kafka_batches, kafka_transactions
from bus.kafka import SHORT_WAIT_S, KafkaBus
from events import topics
from events.codec import decode
from events.pipeline import PipelineSpec, TaskSpec
from events.runs import InputIgnored, RunCreated
from orchestrator.service.champion_tracker import ChampionTracker
from orchestrator.service.fleet_tracker import FleetTracker
from orchestrator.service.group_loop import GROUP, GroupLoop
from tests.bus.contract import read_all
from tests.integration.support import intent_record, run_request, tp_for
from tests.integration.tasks import ref
from tests.kafka import test_kafka_bus as kafka_bus_tests
from tests.kafka.test_kafka_bus import BOUND_S, Deployment, Requests, decision, group_inputs

pytestmark = pytest.mark.kafka

RUNS_0 = TopicPartition(topics.RUNS, 0)
REPORTS_0 = TopicPartition(topics.REPORTS, 0)
SPEC = PipelineSpec(name="handed", tasks=(TaskSpec(name="only", function=ref("seed")),))


deployment = kafka_bus_tests.deployment  # the fixture: fresh topics, buses closed after


async def consumed(bus: KafkaBus, tp: TopicPartition, start: int) -> list[Record]:
    """What a consumer reads from `start`, as every consumer reads: from the last offset + 1."""
    return await read_all(bus, tp, start)


async def delivered(deployment: Deployment, writer: KafkaBus, tp: TopicPartition, start: int
                    ) -> list[Record]:
    """What Kafka delivers to an instance that wrote nothing, once everything `writer` wrote
    is decided (its `end_offset` waits past its own writes)."""
    await writer.end_offset(tp)
    return await read_all(await deployment.open(), tp, start)


async def test_a_read_from_where_a_record_this_bus_committed_sits_costs_no_fetch(
    deployment: Deployment,
) -> None:
    # given a bus that committed two records to a partition and appended one to another
    bus = await deployment.open()
    async with asyncio.timeout(BOUND_S):
        written = await bus.commit("coord", group_inputs(0, 1),
                                   [decision(b"a"), decision(b"b")])
        appended = await bus.append([Outgoing(topics.REPORTS, "r", b"c", partition=0)])
        requests = Requests(bus._reader_consumer._client)  # white box: the reader's client
        # when its consumers, standing on those records, wait and read
        woken = await bus.wait({RUNS_0: written[0].offset}, BOUND_S)
        read = await bus.read(RUNS_0, written[0].offset)
        many = await bus.read_many({RUNS_0: written[0].offset, REPORTS_0: appended[0].offset})
    # then they get what was written, from memory: no Fetch, no waiter taken from the pool
    assert woken
    assert read == written
    assert many == written + appended
    assert requests.kinds == []
    assert not bus._waiters.busy and not bus._waiters._idle  # white box: no waiter ever made


async def test_records_appended_at_once_are_handed_over_with_the_timestamps_kafka_stores(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a bus whose appends each take a timestamp of their own (a clock 1 ms on per call),
    # and many at once, so that several share a produce batch (one batch is in flight, the
    # next fills meanwhile)
    bus = await deployment.open()
    now_ms = time.time_ns() // 1_000_000
    clock = iter(range(now_ms, now_ms + 1_000))
    monkeypatch.setattr(kafka_transactions, "time", SimpleNamespace(  # its clock only
        time_ns=lambda: next(clock) * 1_000_000, monotonic=time.monotonic))
    async with asyncio.timeout(BOUND_S):
        # when they are appended at once
        sent = await asyncio.gather(*(bus.append([Outgoing(topics.REPORTS, "r", b"%d" % i,
                                                           partition=0)])
                                      for i in range(20)))
        monkeypatch.undo()
        written = sorted((record for records in sent for record in records),
                         key=lambda r: r.offset)
        # then what a consumer of the bus is handed is what Kafka delivers, timestamps too
        mine = await consumed(bus, REPORTS_0, written[0].offset)
    assert mine == written
    assert mine == await delivered(deployment, bus, REPORTS_0, written[0].offset)
    assert len({r.timestamp_ms for r in mine}) == 20


async def test_a_wait_under_way_ends_when_the_commit_of_the_record_it_waits_for_returns(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a consumer waiting on the log, on the marker after the last record it read, its
    # waiter's long-poll on the wire
    bus = await deployment.open()
    other = await deployment.open()
    listen = bus._handoff.listen  # white box: what ends a wait on a hand-off
    listened: list[asyncio.Future[None]] = []

    def spied(positions: Any) -> asyncio.Future[None]:
        listened.append(listen(positions))
        return listened[-1]

    monkeypatch.setattr(bus._handoff, "listen", spied)
    async with asyncio.timeout(BOUND_S):
        (last,) = await bus.commit("coord", group_inputs(0, 1), [decision(b"read")])
        assert await bus.read(RUNS_0, last.offset) == [last]
        assert not await bus.wait({TopicPartition(topics.TRIGGERS, 0): 0}, SHORT_WAIT_S)  # waiter
        await asyncio.gather(*bus._waiters._settling.values())  # its long-poll answered
        waiting = asyncio.create_task(bus.wait({RUNS_0: last.offset + 1}, BOUND_S))
        await asyncio.sleep(0)  # one step: it takes the idle waiter and starts its long-poll
        assert bus._waiters.busy, "the wait did not start fetching in one step"  # white box
        # when the same bus commits the next decision on that id (one offset past the marker)
        (nxt,) = await bus.commit("coord", group_inputs(0, 2), [decision(b"next")])
        # then the wait is woken by the time the commit returns, not when the markers land:
        # when the commit's record directly follows our marker, the hand-off knows all that
        # lies between. (A broker in trouble right after the test's topics were made, as on
        # a loaded machine, can leave more between: a transaction it aborted, say. Then only
        # the broker can say what that is, and the wait ends when it does.)
        assert not (listened[0].done() and not listened[0].cancelled())  # the waiter's wait
        if nxt.offset == last.offset + 2:
            assert listened[1].done() and not listened[1].cancelled(), (
                "the commit returned, but the wait on its record was not woken")
        assert await waiting
        requests = Requests(bus._reader_consumer._client)
        assert await bus.read(RUNS_0, last.offset + 1) == [nxt]
        assert requests.kinds == []
        # and the waiter, once its long-poll left on the wire is answered, is back in the pool
        await asyncio.gather(*bus._waiters._settling.values())
        assert len(bus._waiters._idle) == 1 and not bus._waiters.busy
        # where it wakes the next wait on what another process writes
        later = asyncio.create_task(bus.wait({TopicPartition(topics.TRIGGERS, 1): 0}, BOUND_S))
        await other.publish([Outgoing(topics.TRIGGERS, "k", b"x", partition=1)])
        assert await later


async def test_what_is_handed_over_across_our_markers_is_what_kafka_delivers(
    deployment: Deployment,
) -> None:
    # given two transactions of one transactional id on a partition (a commit marker between
    # them), with headers
    bus = await deployment.open()
    headers = (("baton-positions", b"\x00\x01"), ("traceparent", b"00-ab-cd-01"))
    async with asyncio.timeout(BOUND_S):
        first = await bus.commit("coord", group_inputs(0, 1), [
            Outgoing(topics.RUNS, "run", b"a", partition=0, headers=headers), decision(b"b")])
        second = await bus.commit("coord", group_inputs(0, 2), [decision(b"c")])
        requests = Requests(bus._reader_consumer._client)
        # when a consumer of the same bus reads from the first record on
        mine = await consumed(bus, RUNS_0, first[0].offset)
        # then it got all three from memory (the Fetch is the read past them, for anything new)
        assert requests.kinds == ["FetchRequest"]
        # and exactly what Kafka delivers to another instance: offsets, keys, values,
        # headers, timestamps
        assert mine == first + second
        assert mine == await delivered(deployment, bus, RUNS_0, first[0].offset)
        assert second[0].offset == first[-1].offset + 2  # the marker in between


async def test_a_read_over_someone_elses_record_inside_our_transaction_is_kafkas_whole(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a transaction of ours with two records on a partition, too large to share a
    # batch, and another producer's record landing between them (an agent's report appended
    # while our transaction is open)
    bus = await deployment.open()
    other = await deployment.open()
    send = kafka_batches.send  # white box: how a transaction hands its batches over

    async def interleaved(producer: Any, rounds: Any) -> list[Any]:
        sent: list[Any] = []
        for i, batches in enumerate(rounds):
            sent += await send(producer, [batches])
            await asyncio.gather(*(future for _, future in sent))  # on the log
            if i == 0:
                await other.append([Outgoing(topics.RUNS, "x", b"theirs", partition=0)])
        return sent

    monkeypatch.setattr(kafka_batches, "send", interleaved)
    a, b = b"a" * 600_000, b"b" * 600_000
    async with asyncio.timeout(BOUND_S):
        ours = await bus.commit("coord", group_inputs(0, 1), [decision(a), decision(b)])
        assert ours[1].offset == ours[0].offset + 2, "the other record did not land between"
        # when a consumer of the same bus reads from our first record on, or from the
        # second, or only one record
        requests = Requests(bus._reader_consumer._client)
        read = await bus.read(RUNS_0, ours[0].offset)
        fetched = requests.count("FetchRequest")
        second = await bus.read(RUNS_0, ours[1].offset)
        first = await bus.read(RUNS_0, ours[0].offset, 1)
    # then the read from the first brought all three, from Kafka, as one read brings them to
    # another instance (from memory it would have stopped at the other producer's record)
    assert read == await delivered(deployment, bus, RUNS_0, ours[0].offset)
    assert [r.value for r in read] == [a, b"theirs", b]
    assert fetched >= 1
    # and the others came from memory
    assert second == [ours[1]] and first == [ours[0]]
    assert requests.count("FetchRequest") == fetched


async def test_a_record_between_transactions_of_two_of_our_ids_is_read_from_kafka(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given our commit's record, another producer's record right after it, and a publish of
    # ours (another transactional id) committed before the commit's marker lands: the offset
    # between our two records is someone else's, the commit's marker comes later
    bus = await deployment.open()
    other = await deployment.open()
    end_txn = AIOKafkaProducer.commit_transaction
    published: list[Record] = []
    ends: list[Any] = []

    async def meanwhile(producer: Any) -> None:
        ends.append(producer)
        if len(ends) == 1:  # the commit's EndTxn (the publish's comes in between)
            await other.append([Outgoing(topics.RUNS, "x", b"theirs", partition=0)])
            published.extend(await bus.publish([decision(b"published")]))
        await end_txn(producer)

    monkeypatch.setattr(AIOKafkaProducer, "commit_transaction", meanwhile)
    async with asyncio.timeout(BOUND_S):
        (committed,) = await bus.commit("coord", group_inputs(0, 1), [decision(b"committed")])
        monkeypatch.undo()
        assert published[0].offset == committed.offset + 2, "not laid out as meant"
        # when a consumer of the bus that read our commit's record reads on
        assert await bus.read(RUNS_0, committed.offset, 1) == [committed]
        mine = await consumed(bus, RUNS_0, committed.offset + 1)
    # then it gets the other producer's record too: what Kafka delivers to another instance
    assert [r.value for r in mine] == [b"theirs", b"published"]
    assert [committed, *mine] == await delivered(deployment, bus, RUNS_0, committed.offset)


async def test_an_append_after_our_transaction_is_handed_over_once_a_fetch_saw_our_marker(
    deployment: Deployment,
) -> None:
    # given a consumer of the bus that read our transaction's record, then read on (a fetch
    # that found only the commit marker)
    bus = await deployment.open()
    async with asyncio.timeout(BOUND_S):
        (txn,) = await bus.commit("agent", {TopicPartition(topics.COMMANDS, 0): 1},
                                  [decision(b"accepted")])
        await bus.end_offset(RUNS_0)  # the markers have landed
        assert await bus.read(RUNS_0, txn.offset) == [txn]
        assert await bus.read(RUNS_0, txn.offset + 1) == []
        # when the same bus appends (a report, after the command's transaction)
        (appended,) = await bus.append([decision(b"started")])
        requests = Requests(bus._reader_consumer._client)
        mine = await bus.read(RUNS_0, txn.offset + 1)
    # then the consumer gets it from memory, as Kafka delivers it
    assert requests.kinds == []
    assert mine == [appended]
    assert [txn, *mine] == await delivered(deployment, bus, RUNS_0, txn.offset)


@pytest.mark.parametrize("outcome", ["unanswered", "aborted"])
async def test_nothing_of_a_transaction_that_did_not_surely_commit_is_handed_over(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch, outcome: str,
) -> None:
    # given a bus whose consumer stands after the last record it read, and a commit whose
    # EndTxn fails: its answer lost (the transaction did commit) or refused (aborted)
    bus = await deployment.open()
    end_txn = AIOKafkaProducer.commit_transaction

    async def failing(producer: Any) -> None:
        if outcome == "unanswered":
            await end_txn(producer)
        raise KafkaConnectionError(f"EndTxn {outcome} (test)")

    async with asyncio.timeout(BOUND_S):
        (before,) = await bus.commit("coord", group_inputs(0, 1), [decision(b"before")])
        assert await bus.read(RUNS_0, before.offset) == [before]
        monkeypatch.setattr(AIOKafkaProducer, "commit_transaction", failing)
        with pytest.raises(BusError):
            await bus.commit("coord", group_inputs(0, 2), [decision(b"unsure")])
        monkeypatch.undo()
        (after,) = await bus.commit("coord", group_inputs(0, 2), [decision(b"after")])
        # when the consumer reads on from where it stands
        requests = Requests(bus._reader_consumer._client)
        got = await bus.read(RUNS_0, before.offset + 1)
        fetched = requests.count("FetchRequest")
        mine = got + await consumed(bus, RUNS_0, got[-1].offset + 1)
    # then it gets what Kafka delivers to another instance, and the first of it from Kafka
    assert mine == await delivered(deployment, bus, RUNS_0, before.offset + 1)
    expected = [b"unsure", b"after"] if outcome == "unanswered" else [b"after"]
    assert [r.value for r in mine] == expected
    assert mine[-1] == after
    assert fetched >= 1


async def test_nothing_of_a_transaction_the_broker_refused_is_handed_over(
    deployment: Deployment,
) -> None:
    # given a commit whose records were partly on the log when the broker refused a record
    bus = await deployment.open()
    tp = TopicPartition(topics.TRIGGERS, 0)
    async with asyncio.timeout(BOUND_S):
        await bus.commit("g", {tp: 1}, [Outgoing(topics.TRIGGERS, "k", b"kept", partition=0)])
        small = Outgoing(topics.TRIGGERS, "k", b"lost", partition=0)
        too_large = Outgoing(topics.TRIGGERS, "k", b"x" * 2_000_000, partition=0)
        with pytest.raises(BusError, match="nothing was written"):
            await bus.commit("g", {tp: 5}, [small, small, too_large])
        await bus.commit("g", {tp: 2}, [Outgoing(topics.TRIGGERS, "k", b"after", partition=0)])
        # when a consumer of the bus reads the partition, and another instance too
        mine = await consumed(bus, tp, 0)
    # then neither sees anything of the refused transaction
    assert mine == await delivered(deployment, bus, tp, 0)
    assert [r.value for r in mine] == [b"kept", b"after"]


class Killed(BaseException):
    """The process dies here: no handler of the group loop runs (it catches Exception)."""


@pytest.mark.parametrize("killed", ["after its commit", "before its commit"])
async def test_an_in_process_hand_off_followed_by_a_crash_never_makes_a_decision_twice(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch, killed: str,
) -> None:
    # given one `baton up` process (one bus): its router commits run requests to intents-k,
    # and its coordinator's group loop k takes them from memory
    up = await deployment.open()
    first = run_request(SPEC, f"first-{uuid.uuid4().hex[:6]}")
    k = tp_for(up, topics.RUNS, first.run_id).partition
    second = next(request for i in range(1000)
                  if tp_for(up, topics.RUNS, (request := run_request(SPEC, f"second-{i}")).run_id
                            ).partition == k)
    loop = GroupLoop(up, k, FleetTracker(up), ChampionTracker(up), {})
    handed: list[Record] = []
    handoff_read = up._handoff.read  # white box: what the loop got from memory

    def spied(tp: TopicPartition, position: int, limit: int) -> list[Record]:
        got = handoff_read(tp, position, limit)
        handed.extend(got)
        return got

    monkeypatch.setattr(up._handoff, "read", spied)

    async def route(n: int, request: Any) -> Record:
        (intent,) = await up.commit(
            "router", {TopicPartition(topics.PIPELINE_TRIGGERS, 0): n},
            [intent_record(up, request, run_id=request.run_id, env_id=f"{request.run_id}/r")])
        return intent

    async with asyncio.timeout(BOUND_S):
        await up.claim(GROUP, loop.inputs)
        await loop.restore()
        one = await route(1, first)
        assert await loop.step()
        two = await route(2, second)  # over the router's marker: the loop stands on it
        if killed == "after its commit":
            assert await loop.step()
        else:
            async def dying(*args: Any, **kwargs: Any) -> list[Record]:
                raise Killed

            monkeypatch.setattr(up, "commit", dying)
            with pytest.raises(Killed):
                await loop.step()
        assert handed == [one, two], "the loop did not take both requests from memory"

        # when the process is gone (nothing of it closed or settled) and another process
        # claims the group, restores it and handles whatever is there
        successor = await deployment.open()
        new = GroupLoop(successor, k, FleetTracker(successor), ChampionTracker(successor), {})
        await successor.claim(GROUP, new.inputs)
        await new.restore()
        while await new.step():
            pass
        log = [decode(r.value).data
               for r in await read_all(successor, TopicPartition(topics.RUNS, k))]

    # then each request made one run, none was taken again, and the successor goes on after
    # the last request
    assert [d.run_id for d in log if isinstance(d, RunCreated)] == [first.run_id,
                                                                    second.run_id]
    assert [d for d in log if isinstance(d, InputIgnored)] == []
    assert new.positions[TopicPartition(topics.INTENTS, k)] == two.offset + 1
