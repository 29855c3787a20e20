"""The fleet view's clock: who is expired, when, and who is woken when capacity frees up.

Driven with a fake monotonic clock and records as they come off baton.agents; the view's
bus is never touched by these methods.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bus import Record
from events import topics
from events.agents import AgentAdvertised, AgentHeartbeat, AgentStopped
from events.codec import encode
from events.common import Capabilities
from events.envelope import envelope
from events.payloads import Payload
from orchestrator.service.fleet_tracker import LEASE_MARGIN_S, FleetTracker

AGENT = "agent-a"
CAPS = Capabilities(cpus=4, memory_mb=4096)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(data: Payload, offset: int = 0) -> Record:
    env = envelope(data, id=f"{AGENT}/{offset}", time=0.0, source="test", subject=AGENT)
    return Record(topics.AGENTS, 0, offset, AGENT, encode(env), (), 0)


def beat(n: int, free_cpus: float = 4.0) -> Record:
    return record(AgentHeartbeat(agent_id=AGENT, beat=n, free_cpus=free_cpus,
                                 free_memory_mb=4096), offset=n)


def fleet(clock: Clock, lease_s: float = 6.0) -> FleetTracker:
    bus: Any = None  # apply/expire/read_through never use it
    view = FleetTracker(bus, expiry_s=10.0, grace_s=5.0, monotonic=clock)
    view._started = view._read_at = clock.now
    view.apply([record(AgentAdvertised(agent_id=AGENT, capabilities=CAPS, lease_s=lease_s))])
    return view


def lost(view: FleetTracker) -> bool:
    return view.agents[AGENT].lost_evidence is not None


def test_an_agent_silent_past_its_expiry_while_the_view_reads_is_lost() -> None:
    # given a view reading the topic every second, and an agent that stopped heartbeating
    clock = Clock()
    view = fleet(clock)
    for _ in range(10):
        clock.now += 1.0
        view.read_through()
        view.expire()
    assert not lost(view)
    # when one more second passes without a heartbeat
    clock.now += 1.0
    view.read_through()
    view.expire()
    # then the agent is lost, with the evidence on the coordinator's clock
    assert lost(view)
    assert "no heartbeat for 11.0s" in str(view.agents[AGENT].lost_evidence)


def test_time_the_view_could_not_read_gives_agents_the_grace_again() -> None:
    # given a view that could not read the topic for 30 s (the broker was away)
    clock = Clock()
    view = fleet(clock)
    clock.now += 30.0
    # when it reads through again, with nothing from the agent yet
    view.read_through()
    view.expire()
    # then nobody is expired during the grace, and a heartbeat in it keeps the agent
    assert not lost(view)
    clock.now += 4.0
    view.apply([beat(1)])
    view.read_through()
    clock.now += 1.5
    view.expire()
    assert not lost(view)


def test_an_agent_still_silent_after_the_grace_is_lost() -> None:
    # given a view that could not read for 30 s, then reads every second
    clock = Clock()
    view = fleet(clock)
    clock.now += 30.0
    view.read_through()
    # when the agent stays silent through the whole grace
    for _ in range(6):
        clock.now += 1.0
        view.read_through()
        view.expire()
    # then it is lost
    assert lost(view)


def test_a_view_restarted_while_it_could_not_read_still_gives_agents_the_grace() -> None:
    # given a view that read the topic, then could not for 30 s, its loop restarted meanwhile
    # (a read that retried in vain ends the loop; the supervisor starts it again)
    clock = Clock()
    view = fleet(clock)
    view.begin()
    clock.now += 30.0
    view.begin()
    # when a read gets through half a second after the restart, the agent still silent
    clock.now += 0.5
    view.read_through()
    view.expire()
    # then the agent gets the grace from that read on, not from the restart
    clock.now += 4.7
    view.read_through()
    view.expire()
    assert not lost(view)


def test_no_agent_is_expired_before_its_own_lease_ran_out() -> None:
    # given an agent advertising a lease longer than the coordinator's expiry
    clock = Clock()
    view = fleet(clock, lease_s=20.0)
    # when it is silent past the expiry but within its lease plus the margin
    for _ in range(int(20.0 + LEASE_MARGIN_S)):
        clock.now += 1.0
        view.read_through()
        view.expire()
    # then it is still live; only past lease + margin is it lost
    assert not lost(view)
    clock.now += 1.0
    view.read_through()
    view.expire()
    assert lost(view)


def test_capacity_freed_on_an_agent_wakes_the_partition_groups() -> None:
    # given a group loop subscribed to the view, and an agent reporting 1 cpu free
    clock = Clock()
    view = fleet(clock)
    woken = asyncio.Event()
    view.room_subscribers.append(woken)
    view.apply([beat(1, free_cpus=1.0)])
    woken.clear()
    # when its load grows, nothing wakes; when an attempt ends and cpus free up, it does
    view.apply([beat(2, free_cpus=0.0)])
    assert not woken.is_set()
    before, agents = view.room, view.version
    view.apply([beat(3, free_cpus=2.0)])
    assert woken.is_set()
    assert (view.room, view.version) == (before + 1, agents)


# -- one agent id, two processes ---------------------------------------------------------------

def advertised(incarnation: str, host: str, pid: int, offset: int) -> Record:
    return record(AgentAdvertised(agent_id=AGENT, capabilities=CAPS, lease_s=6.0, host=host,
                                  pid=pid, incarnation=incarnation), offset=offset)


def test_a_stopped_said_by_an_earlier_process_of_the_id_leaves_its_successor_live() -> None:
    # given an agent process, then a second one under the same id (another home)
    view = fleet(Clock())
    view.apply([advertised("first", "host-a", 11, 1), advertised("second", "host-b", 22, 2)])
    # when the first one stops and says so
    view.apply([record(AgentStopped(agent_id=AGENT, incarnation="first"), offset=3)])
    # then the id stays live: it belongs to the second process
    assert view.agents[AGENT].live
    # and commands go to the second process
    assert view.agents[AGENT].incarnation == "second"
    # and it is flagged as used by two processes, naming both
    assert "host-a (pid 11)" in view.twins[AGENT]
    assert "host-b (pid 22)" in view.twins[AGENT]


def test_an_earlier_process_still_heartbeating_is_flagged_once_and_its_beats_ignored(
        caplog: Any) -> None:
    # given two processes under one id, the second advertised last
    clock = Clock()
    view = fleet(clock)
    view.apply([advertised("first", "host-a", 11, 1), advertised("second", "host-b", 22, 2)])
    seen = view.last_seen[AGENT]
    # when the first keeps heartbeating
    clock.now += 1.0
    for n in (3, 4):
        view.apply([record(AgentHeartbeat(agent_id=AGENT, beat=n, free_cpus=4.0,
                                          free_memory_mb=4096, incarnation="first"), n)])
    # then its beats do not count as the id's, and one warning says what is wrong
    assert view.last_seen[AGENT] == seen
    warnings = [r.getMessage() for r in caplog.records if "two processes" in r.getMessage()]
    assert len(warnings) == 1
    assert "--agent-id" in warnings[0]


def test_a_restarted_agent_is_no_twin_and_events_without_incarnation_still_count() -> None:
    # given an agent that restarted (the old process said its goodbye before the new one)
    view = fleet(Clock())
    view.apply([advertised("first", "host-a", 11, 1),
                record(AgentStopped(agent_id=AGENT, incarnation="first"), offset=2),
                advertised("second", "host-a", 12, 3)])
    # then it is live and nobody is flagged
    assert view.agents[AGENT].live
    assert view.twins == {}
    # when a log from before incarnations says it stopped
    view.apply([record(AgentStopped(agent_id=AGENT), offset=4)])
    # then that still counts
    assert view.agents[AGENT].stopped
