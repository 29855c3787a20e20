"""A year of history: a million runs folded as a coordinator keeps them (issue #16).

The log: one run of `bench/replay.py`'s pipeline (`SPEC`: ingest -> features -> train ->
evaluate, each on the first attempt), decided by the pure core (`replay.Driver`), 22 events;
every other run is that run's records with its own run id and trigger key stamped in
(`stamped`): a run's events differ from another's only there and in their times. The last
1,000 runs are left live (created, the first task placed). Runs go to the partition groups of
baton.runs as the coordinator places them (12 partitions).

Figures:
- memory per ended run: what the index of ended runs (`core/ended.py`) holds per run, after
  all were folded (its packed arrays and the runs not merged yet, by `sys.getsizeof`);
- coordinator RSS: a fresh process (`python -m bench.history fold`) that folds the whole log
  into one bounded state per group (`CoordinatorState(retire=True)`, what each group loop
  keeps), with the 1,000 live runs at the end; its RSS before (imports done) and after;
- takeover: the fullest group's snapshot (taken by that process before the live runs, so the
  live runs' events are its tail) written to an embedded bus with that tail, then a group loop
  claims and restores it: read the snapshot's parts, decode them, fold the tail (best of 3);
- replay: 10,000 stamped runs' records into a bounded state, one core, both ways: the
  validating path (decode + evolve of every event) and the trusted fold a group's restore
  uses (core/trusted_fold.py: a run that begins and ends among the records is entered from
  its run_created and its end; the others' heads are read for type, version and sequence);
- log bytes per run: the stamped run's records as the coordinator writes them (each
  `run_created` names its pipeline version; the spec is on baton.pipelines once), and as
  builds before point 5 wrote them (the spec in every `run_created`). Readers fill the spec
  in from the version (`pipeline_versions.with_known_spec`: the version was met before).
- projector RSS: another fresh process hands every run's records to a Projector's `take`
  (2,000 records a transaction, into SQLite), which keeps only live runs; then `baton runs
  list`'s query, the first 50 rows (median of 20).
- `baton up`'s RSS, main process and whole tree, idle and after 10,000 runs (at most
  `--runs`) of a one-task pipeline requested 500 at a time, and after a burst of half as
  many again requested at once (bench/up_memory.py).
- router takeover: 20,000 triggers (at most `--runs`) routed by a real router, then a new
  router's restore from its snapshot and the log after it, against the whole log folded
  (bench/router_history.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.common import Figure, Report, temp_home
from bench.replay import SPEC, Driver
from bench.router_history import TRIGGERS as ROUTER_TRIGGERS
from bench.router_history import measure_router
from bench.up_memory import GROWTH_TARGET_BYTES, IDLE_TARGET_MB, WAVE, measure_up, rss_mb
from bus import Bus, Outgoing, Record, TopicPartition, open_bus_url
from events import topics
from events.codec import decode, encode
from events.envelope import Envelope
from events.intents import RunRequested
from events.payloads import Payload
from events.topics import DEFAULT_PARTITIONS, partition_for
from events.triggers import TriggerInfo
from orchestrator.core.evolve import evolve
from orchestrator.core.ids import run_id_for
from orchestrator.core.state import CoordinatorState
from orchestrator.core.trusted_fold import TrustedFold
from orchestrator.service import snapshot_codec, snapshots
from orchestrator.service.champion_tracker import ChampionTracker
from orchestrator.service.fleet_tracker import FleetTracker
from orchestrator.service.group_loop import GROUP, GroupLoop, route
from orchestrator.service.pipeline_versions import KNOWN, with_known_spec
from orchestrator.store.projections import Projector, connect, list_runs

RUNS = 1_000_000
UP_RUNS = 10_000
"""Runs through a real `baton up` for its memory figures (at most `--runs`)."""
LIVE = 1_000
KEY = "k0stamp"
"""The template run's trigger key: unique text, replaced by each run's own."""
REPLAY_RUNS = 10_000
"""Runs the replay rate is measured over (at most `--runs`: the smoke test's 120 runs fold in
a moment, where 10,000 took the suite ~14 s to fold twice both ways)."""
BYTES_TARGET = 100.0
RSS_TARGET_MB = 300.0
TAKEOVER_TARGET_S = 1.0
REPLAY_TARGET = 250_000.0
PROJECTOR_TARGET_MB = 200.0
PROJECT_BATCH = 2000
"""Records per `take`: what one read of the projector's own loop brings (Projector.batch)."""
FIRST_PAGE_TARGET_MS = 50.0


@dataclass(frozen=True)
class Template:
    """One run's records as the pure core wrote them, and the text to stamp."""

    ended: tuple[bytes, ...]
    live: tuple[bytes, ...]
    run_id: str
    inline_bytes: int
    """The ended run's log bytes with the spec in its `run_created`, as builds before wrote."""

    def stamped(self, i: int, *, live: bool = False) -> Iterator[bytes]:
        """Run i's records."""
        run_id = run_id_for(SPEC.name, "trigger", f"v{i}")
        for raw in self.live if live else self.ended:
            yield raw.replace(self.run_id.encode(), run_id.encode()).replace(
                KEY.encode(), f"v{i}".encode())


def template() -> Template:
    ended = Driver()
    ended.run_one(KEY)
    live = Driver()
    run_id = run_id_for(SPEC.name, "trigger", KEY)
    payload = {"dataset": "digits", "version": KEY, "uri": f"file:///data/digits/{KEY}.npz",
               "rows": 1078}
    live.feed(RunRequested(run_id=run_id, spec=SPEC, trigger=TriggerInfo(
        type="data_arrived", event_id=KEY, subject="digits", payload=payload)),
        id=f"{run_id}/req")
    KNOWN.setdefault(SPEC.version(), SPEC)  # a reader that met the version once
    return Template(tuple(_logged(e) for e in ended.log), tuple(_logged(e) for e in live.log),
                    run_id, sum(len(encode(e)) for e in ended.log))


def _logged(env: Envelope[Payload]) -> bytes:
    """A decision as the coordinator writes it (`group_loop.route`: by version)."""
    return route(env, 0).value


def read(raw: bytes) -> Envelope[Payload]:
    """A record as a reader folds it: decoded, its spec filled in (the version is known)."""
    return with_known_spec(decode(raw))


def group_of(i: int) -> int:
    return partition_for(run_id_for(SPEC.name, "trigger", f"v{i}"), DEFAULT_PARTITIONS)


async def project_child(runs: int, live: int, out: Path) -> None:
    """`python -m bench.history project RUNS LIVE OUT`: the projector's write path over every
    run's records (its `take`, PROJECT_BATCH records a transaction), then its
    RSS and `baton runs list`'s first page (`list_runs`, 50 rows), as JSON on stdout."""
    t = template()
    before = rss_mb(os.getpid())
    bus = await open_bus_url("embedded", out)
    path = out / "projections.db"
    try:
        projector = Projector(bus, path)
        ends = [0] * DEFAULT_PARTITIONS
        began = time.perf_counter()
        async with projector.holding() as held:
            assert held
            records: list[Record] = []
            for i in range(runs + live):
                k = group_of(i)
                run_id = run_id_for(SPEC.name, "trigger", f"v{i}")
                for raw in t.stamped(i, live=i >= runs):
                    records.append(Record(topics.RUNS, k, ends[k], run_id, raw, (), 0))
                    ends[k] += 1
                if len(records) >= PROJECT_BATCH or i == runs + live - 1:
                    await projector.take(records, {
                        TopicPartition(topics.RUNS, p): end for p, end in enumerate(ends)})
                    records = []
        project_s = time.perf_counter() - began
        held_runs = len(projector.state.runs)
        after = rss_mb(os.getpid())
        conn = await connect(path)
        try:
            pages = []
            for _ in range(20):
                began = time.perf_counter()
                page = await list_runs(conn, limit=50)
                pages.append(time.perf_counter() - began)
            assert len(page) == 50
        finally:
            await conn.close()
    finally:
        await bus.close()
    print(json.dumps({"rss_before_mb": before, "rss_after_mb": after, "project_s": project_s,
                      "held": held_runs, "first_page_ms": sorted(pages)[len(pages) // 2] * 1000}),
          flush=True)


def fold_child(runs: int, live: int, out: Path) -> None:
    """`python -m bench.history fold RUNS LIVE OUT`: fold everything, report as JSON on
    stdout; the fullest group's snapshot (before its live runs) and its tail go to OUT."""
    t = template()
    before = rss_mb(os.getpid())
    states = [CoordinatorState(retire=True) for _ in range(DEFAULT_PARTITIONS)]
    sizes = [0] * DEFAULT_PARTITIONS
    began = time.perf_counter()
    events = 0
    for i in range(runs):
        k = group_of(i)
        sizes[k] += 1
        state = states[k]
        for raw in t.stamped(i):
            evolve(state, read(raw))
            events += 1
    k = max(range(DEFAULT_PARTITIONS), key=sizes.__getitem__)
    full = states[k]
    header = snapshot_codec.Header(snapshot_codec.FORMAT_VERSION, snapshots.SCHEMA_VERSION,
                                   snapshots.FOLD_HASH, k, 0)
    (out / "snapshot").write_bytes(snapshot_codec.encode(
        snapshot_codec.Document(header, full.runs, full.ended)))
    tail: list[bytes] = []
    for i in range(runs, runs + live):
        g = group_of(i)
        for raw in t.stamped(i, live=True):
            evolve(states[g], read(raw))
            events += 1
            if g == k:
                tail.append(raw)
    (out / "tail").write_bytes(json.dumps([raw.decode() for raw in tail]).encode())
    fold_s = time.perf_counter() - began
    ended = sum(len(s.ended) for s in states)
    print(json.dumps({
        "rss_before_mb": before, "rss_after_mb": rss_mb(os.getpid()), "events": events,
        "fold_s": fold_s, "ended": ended, "live": sum(len(s.runs) for s in states),
        "index_bytes": sum(s.ended.held_bytes() for s in states),
        "group": k, "group_ended": len(full.ended), "group_live": sum(
            1 for i in range(runs, runs + live) if group_of(i) == k),
    }), flush=True)


async def takeover(out: Path, k: int, repeat: int = 3) -> tuple[float, int]:
    """Claim + restore of group k from the child's snapshot and tail on an embedded bus."""
    doc = snapshot_codec.decode((out / "snapshot").read_bytes())
    tail = [raw.encode() for raw in json.loads((out / "tail").read_bytes())]
    with temp_home() as home:
        bus: Bus = await open_bus_url("embedded", home.root)
        try:
            await snapshots.save(bus, snapshots.Snapshot(k, 0, doc.runs, ended=doc.ended))
            await bus.publish([Outgoing(topics.RUNS, "", raw, k) for raw in tail])
            loop = GroupLoop(bus, k, FleetTracker(bus), ChampionTracker(bus), {})
            best = float("inf")
            for _ in range(repeat):
                began = time.perf_counter()
                await bus.claim(GROUP, loop.inputs)
                await loop.restore()
                best = min(best, time.perf_counter() - began)
            assert loop.restore_stats["snapshot_offset"] == 0, "the snapshot was not used"
            assert loop.restore_stats["replayed"] == len(tail)
            assert len(loop.state.ended) == len(doc.ended)
            end = await bus.end_offset(TopicPartition(topics.RUNS, k))
            assert end == len(tail)
            return best, len(tail)
        finally:
            await bus.close()


@dataclass(frozen=True)
class Replay:
    events: int
    validating_per_s: float
    """decode + evolve, every event."""
    trusted_per_s: float
    """The trusted fold (core/trusted_fold.py), what a group's restore does."""


def replay_rate(t: Template, runs: int) -> Replay:
    """Both ways into a bounded state, best of two each, the same state at the end."""
    records = [raw for i in range(runs) for raw in t.stamped(i)]
    best = {"validating": float("inf"), "trusted": float("inf")}
    states: dict[str, CoordinatorState] = {}
    for _ in range(2):
        for way in best:
            state = states[way] = CoordinatorState(retire=True)
            began = time.perf_counter()
            if way == "validating":
                for raw in records:
                    evolve(state, read(raw))
            else:
                fold = TrustedFold(state, _itself)
                for raw in fold.take(records) + fold.finish():
                    evolve(state, read(raw))
            best[way] = min(best[way], time.perf_counter() - began)
    a, b = states["validating"], states["trusted"]
    assert a.runs == b.runs and a.ended == b.ended, "the trusted fold folded otherwise"
    return Replay(len(records), len(records) / best["validating"],
                  len(records) / best["trusted"])


def _itself(raw: bytes) -> bytes:
    return raw


async def measure(runs: int = RUNS, *, live: int = LIVE) -> Report:
    report = Report(f"history: {runs:,} runs of a 4-task pipeline folded as a coordinator "
                    "keeps them")
    t = template()
    log_bytes = sum(len(raw) for raw in t.ended)
    report.row("the log", f"{runs:,} ended runs x {len(t.ended)} events "
               f"+ {live:,} live x {len(t.live)}; {log_bytes:,} bytes per ended run "
               f"({t.inline_bytes:,} with the spec in each run_created, as before point 5)")
    with temp_home() as home:
        out = home.root
        folded = await _child("fold", runs, live, out)
        takeover_s, tail = await takeover(out, int(folded["group"]))
    with temp_home() as home:
        projected = await _child("project", runs, live, home.root)
    up = await measure_up(min(runs, UP_RUNS))
    router = await measure_router(min(runs, ROUTER_TRIGGERS))
    replay_runs = min(runs, REPLAY_RUNS)
    replay = replay_rate(t, replay_runs)
    per_run = folded["index_bytes"] / folded["ended"]
    growth = (folded["rss_after_mb"] - folded["rss_before_mb"]) * 1e6 / (runs + live)
    report.row("fold in a fresh process (decode + evolve, 12 bounded group states)",
               f"{folded['events']:,} events in {folded['fold_s']:.1f} s "
               f"({folded['events'] / folded['fold_s']:,.0f} ev/s)")
    report.row("coordinator RSS: imports done / after the fold",
               f"{folded['rss_before_mb']:.0f} / {folded['rss_after_mb']:.0f} MB "
               f"({growth:,.0f} B per run folded)")
    report.row(f"fullest group ({folded['group']}): claim + restore, best of 3",
               f"{folded['group_ended']:,} ended + {folded['group_live']:,} live runs; "
               f"snapshot + a tail of {tail:,} events: {takeover_s * 1000:,.0f} ms")
    report.row(f"replay of {replay.events:,} events ({replay_runs:,} runs), one core: "
               "validating (decode + evolve each) / trusted fold",
               f"{replay.validating_per_s:,.0f} / {replay.trusted_per_s:,.0f} ev/s")
    report.row("projector in a fresh process: every run's records through its write path",
               f"{projected['project_s']:.1f} s; holds {projected['held']:,.0f} runs after; "
               f"RSS {projected['rss_before_mb']:.0f} -> {projected['rss_after_mb']:.0f} MB")
    report.row(f"baton up (bench.pipelines:noop, one agent, API on): RSS main / tree, idle "
               f"(after one run) and after {up.runs:,} more runs, {WAVE:,} at a time "
               f"({up.seconds:.0f} s)",
               f"{up.idle_main_mb:.0f} / {up.idle_tree_mb:.0f} MB -> {up.after_main_mb:.0f} / "
               f"{up.after_tree_mb:.0f} MB (main at half way {up.half_main_mb:.0f} MB; "
               f"{up.growth_all_runs_bytes:,.0f} B a run over all)")
    report.row(f"baton up: main RSS after a burst of {up.burst:,} runs requested at once "
               "(a burst's peak, not history: bench/up_memory.py)",
               f"{up.burst_main_mb:.0f} MB ({up.burst_growth_per_run_bytes:,.0f} B a run "
               "of the burst)")
    report.row(f"router takeover after {router.decisions:,} trigger decisions (100 "
               "pipelines): the whole log folded / a new router's restore (snapshot + tail)",
               f"{router.whole_s * 1000:,.0f} / {router.restore_s * 1000:,.0f} ms "
               f"({router.replayed:,} records after the snapshot)")
    report.figures += [
        Figure("memory per ended run (the index)", per_run, "B", BYTES_TARGET,
               key="bytes_per_terminal_run"),
        Figure(f"coordinator RSS, {live:,} live runs after folding all", folded["rss_after_mb"],
               "MB", RSS_TARGET_MB, key="coordinator_rss"),
        Figure("takeover of the fullest group (snapshot + tail)", takeover_s, "s",
               TAKEOVER_TARGET_S, key="takeover"),
        Figure("replay, the trusted fold", replay.trusted_per_s, "ev/s", REPLAY_TARGET,
               better="higher", key="replay_events"),
        Figure("replay, validating (decode + evolve)", replay.validating_per_s, "ev/s",
               better="higher", key="replay_validating_events"),
        Figure("log bytes per run", log_bytes, "B", key="log_bytes_per_run"),
        Figure("log bytes per run, the spec inline (before point 5)", t.inline_bytes, "B",
               key="log_bytes_per_run_inline"),
        Figure("projector RSS after projecting all", projected["rss_after_mb"], "MB",
               PROJECTOR_TARGET_MB, key="projector_rss"),
        Figure("runs list first page (50 rows), median of 20", projected["first_page_ms"], "ms",
               FIRST_PAGE_TARGET_MS, key="runs_list_first_page"),
        Figure("router takeover (snapshot + tail)", router.restore_s, "s", TAKEOVER_TARGET_S,
               key="router_takeover"),
        Figure("baton up main process RSS, idle", up.idle_main_mb, "MB", IDLE_TARGET_MB,
               key="up_idle_main_rss"),
        Figure("baton up process tree RSS, idle", up.idle_tree_mb, "MB", key="up_idle_tree_rss"),
        Figure("baton up main process growth per finished run (second half)",
               up.growth_per_run_bytes, "B",
               GROWTH_TARGET_BYTES, key="up_growth_bytes_per_run"),
        Figure(f"baton up main process RSS after a burst of {up.burst:,} at once",
               up.burst_main_mb, "MB", key="up_burst_main_rss"),
    ]
    report.ok = (folded["ended"] == runs and folded["live"] == live
                 and projected["held"] == live)
    report.extra["runs"] = runs
    return report


async def _child(what: str, runs: int, live: int, out: Path) -> dict[str, float]:
    """A fresh process (`fold` or `project`): its RSS is its own work's."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.history", what, str(runs), str(live), str(out),
        stdout=asyncio.subprocess.PIPE)
    stdout, _ = await child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"the {what} process failed (exit {child.returncode})")
    found: dict[str, float] = json.loads(stdout.splitlines()[-1])
    return found


def main() -> Report:
    return asyncio.run(measure())


if __name__ == "__main__":
    if sys.argv[1:2] == ["fold"]:
        fold_child(int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))
    elif sys.argv[1:2] == ["project"]:
        asyncio.run(project_child(int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])))
