"""What the decider keeps of a run once it has ended: enough to answer a late input exactly,
in tens of bytes instead of the run's tens of kilobytes.

A run that has ended takes no more decisions. Every input naming it is recorded as ignored
("run is already succeeded"), and a request under its key is a duplicate or a conflict
(`core/idempotency.py`). Those answers need four facts and nothing else: how it ended, its
last sequence number (the next event's), its correlation id (the trigger's event id, which
every event of the run carries), and the request that made it, as a digest of each defining
field. So a group that ran a million runs holds a million of these, not a million runs (I2:
a key seen a year ago still never starts a second run).

Kept in two parts. The runs that ended lately sit in a dict of `EndedRun`s; once there are
more of them than a fraction of the rest, they are merged into packed, sorted arrays (`_Packed`:
the run id's bytes, status, sequence, digests, correlation), found by binary search. A run id
of Baton's own form (`run-` + 20 hex digits, `ids.run_id_for`) packs into its 10 bytes, so
the index is exact: no two run ids share an entry, and nothing new is ever taken for a run
that ended. Any other run id (hand-made requests, tests) stays whole in the dict.
"""

from __future__ import annotations

import re
import struct
import sys
from array import array
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Final, Literal, get_args

EndedStatus = Literal["succeeded", "failed", "cancelled"]
"""How a run ended (`state.RunStatus` but running)."""
ENDED: Final[tuple[EndedStatus, ...]] = get_args(EndedStatus)
_CODE: Final = {status: code for code, status in enumerate(ENDED, 1)}
KEY_BYTES: Final = 10
"""A run id's 20 hex digits."""
REQUEST_BYTES: Final = 32
"""Four 8-byte digests: the spec, the params, the trigger, the priority (`idempotency`)."""
MERGE_MIN: Final = 1024
"""Lately ended runs kept whole before the first merge; afterwards up to 1/MERGE_SHARE of the
packed ones, so merging (a copy of the arrays) costs O(1) amortised per run."""
MERGE_SHARE: Final = 32
_RUN_ID = re.compile(r"run-[0-9a-f]{20}")
_UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_UUID: Final = b"\x01"
assert array("I").itemsize == 4, "the packed arrays (and snapshots of them) hold 4-byte words"
assert array("Q").itemsize == 8, "a key's first 8 bytes fit one word of `_Packed.highs`"
_TEXT: Final = b"\x00"


@dataclass(frozen=True, slots=True)
class EndedRun:
    run_id: str
    status: EndedStatus
    seq: int
    correlation: str | None
    """The trigger's event id: the correlation id of every event of the run."""
    request: bytes
    """`idempotency.made_by` of the run: what a repeated request is compared with."""


@dataclass(slots=True)
class Ended:
    """Every run of a partition group that has ended (module doc). Equal when they hold the
    same runs, however those are split between the two parts."""

    _recent: dict[str, EndedRun] = field(default_factory=dict)
    _packed: _Packed = field(default_factory=lambda: _Packed.empty())
    _odd: int = 0
    """How many of `_recent` have ids that cannot be packed (they stay there)."""

    def __len__(self) -> int:
        return len(self._recent) + len(self._packed)

    def __contains__(self, run_id: str) -> bool:
        """Asked of every run created (evolve): found without building its entry."""
        if run_id in self._recent:
            return True
        key = _key(run_id)
        return key is not None and self._packed._find(key) is not None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ended) and sorted(self, key=_by_id) == sorted(other, key=_by_id)

    def __iter__(self) -> Iterator[EndedRun]:
        yield from self._recent.values()
        yield from self._packed

    def held_bytes(self) -> int:
        """What the index holds, by `sys.getsizeof`: its packed arrays, and each run not
        merged yet (the dict's share, the entry and its strings); what #16 bounds per run."""
        size = self._packed.held_bytes() + sys.getsizeof(self._recent)
        for run_id, run in self._recent.items():
            size += sum(sys.getsizeof(x) for x in (run_id, run, run.correlation, run.request))
        return size

    def get(self, run_id: str) -> EndedRun | None:
        found = self._recent.get(run_id)
        if found is not None:
            return found
        key = _key(run_id)
        return None if key is None else self._packed.get(key, run_id)

    def add(self, run: EndedRun) -> None:
        """A run that has just ended (never one already here: a run ends once)."""
        self._recent[run.run_id] = run
        if _key(run.run_id) is None:
            self._odd += 1
        elif len(self._recent) - self._odd >= max(MERGE_MIN, len(self._packed) // MERGE_SHARE):
            self._merge()

    def bump(self, run_id: str, seq: int) -> None:
        """The run's log grew (an input recorded as ignored): `seq` is its new last sequence."""
        found = self._recent.get(run_id)
        if found is not None:
            self._recent[run_id] = EndedRun(found.run_id, found.status, seq, found.correlation,
                                            found.request)
            return
        key = _key(run_id)
        if key is None or not self._packed.set_seq(key, seq):
            raise KeyError(run_id)

    def packed(self) -> bytes:
        """Every entry as bytes (what a snapshot holds): the recent ones merged first."""
        self._merge()
        return self._packed.to_bytes(list(self._recent.values()))

    @classmethod
    def from_bytes(cls, raw: bytes) -> Ended:
        """What `packed` wrote; ValueError when the bytes are not that."""
        packed, odd = _Packed.from_bytes(raw)
        return cls({run.run_id: run for run in odd}, packed, len(odd))

    def _merge(self) -> None:
        fresh = [run for run in self._recent.values() if _key(run.run_id) is not None]
        if fresh:
            self._packed = self._packed.merged(fresh)
            for run in fresh:
                del self._recent[run.run_id]


def _by_id(run: EndedRun) -> str:
    return run.run_id


def _key(run_id: str) -> bytes | None:
    return bytes.fromhex(run_id[4:]) if _RUN_ID.fullmatch(run_id) else None


def _packed_correlation(correlation: str | None) -> bytes:
    if correlation is None:
        return b""
    if _UUID_TEXT.fullmatch(correlation):  # what `baton publish` and the API give
        return _UUID + bytes.fromhex(correlation.replace("-", ""))
    return _TEXT + correlation.encode()


def _correlation(raw: bytes) -> str | None:
    if not raw:
        return None
    if raw[:1] == _UUID:
        h = raw[1:].hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    return raw[1:].decode()


@dataclass(slots=True)
class _Packed:
    """Parallel arrays, sorted by run id: what `EndedRun`s cost once merged (about 76 bytes
    each: the digests and the correlation id most of it, 8 the lookup's `highs`)."""

    keys: bytes
    status: bytes
    seqs: array[int]
    requests: bytes
    correlations: bytes
    starts: array[int]
    """Where each run's correlation begins in `correlations` (one more: the end)."""
    highs: array[int]
    """Each key's first 8 bytes as a number (big-endian, so in the keys' order): what a
    lookup bisects, in C, instead of slicing a key out of `keys` at every step in Python
    (every run created asks whether it ended already). Not in snapshots: made from `keys`."""

    @classmethod
    def empty(cls) -> _Packed:
        return cls(b"", b"", array("I"), b"", b"", array("I", [0]), array("Q"))

    def __len__(self) -> int:
        return len(self.status)

    def __iter__(self) -> Iterator[EndedRun]:
        for i in range(len(self)):
            yield self._at(i, "run-" + self.keys[i * KEY_BYTES:(i + 1) * KEY_BYTES].hex())

    def held_bytes(self) -> int:
        return sum(sys.getsizeof(part) for part in (
            self.keys, self.status, self.seqs, self.requests, self.correlations, self.starts,
            self.highs))

    def get(self, key: bytes, run_id: str) -> EndedRun | None:
        i = self._find(key)
        return None if i is None else self._at(i, run_id)

    def set_seq(self, key: bytes, seq: int) -> bool:
        i = self._find(key)
        if i is None:
            return False
        self.seqs[i] = seq
        return True

    def _find(self, key: bytes) -> int | None:
        i = self._place(key)
        return i if i < len(self) and self._key_at(i) == key else None

    def _place(self, key: bytes, lo: int = 0) -> int:
        """Where `key` is, or would go, among the keys from `lo` on."""
        highs, high = self.highs, int.from_bytes(key[:8], "big")
        i = bisect_left(highs, high, lo)
        while i < len(highs) and highs[i] == high and self._key_at(i) < key:
            i += 1
        return i

    def _key_at(self, i: int) -> bytes:
        return self.keys[i * KEY_BYTES:(i + 1) * KEY_BYTES]

    def _at(self, i: int, run_id: str) -> EndedRun:
        return EndedRun(run_id, ENDED[self.status[i] - 1], self.seqs[i],
                        _correlation(self.correlations[self.starts[i]:self.starts[i + 1]]),
                        self.requests[i * REQUEST_BYTES:(i + 1) * REQUEST_BYTES])

    def merged(self, fresh: list[EndedRun]) -> _Packed:
        """These and `fresh` (ids not among these), sorted: the old arrays copied in slices
        between the new runs' places, so a merge is a few copies, not a loop over every run."""
        new = sorted(((_key(r.run_id), r) for r in fresh), key=lambda kr: kr[0] or b"")
        pieces: dict[str, list[bytes]] = {"keys": [], "status": [], "requests": [],
                                         "correlations": []}
        seqs: array[int] = array("I")
        starts: array[int] = array("I", [0])
        highs: array[int] = array("Q")
        at = 0
        for key, run in new:
            assert key is not None
            upto = self._place(key, at)
            self._copy(at, upto, pieces, seqs, starts, highs)
            corr = _packed_correlation(run.correlation)
            pieces["keys"].append(key)
            pieces["status"].append(bytes([_CODE[run.status]]))
            pieces["requests"].append(run.request)
            pieces["correlations"].append(corr)
            seqs.append(run.seq)
            starts.append(starts[-1] + len(corr))
            highs.append(int.from_bytes(key[:8], "big"))
            at = upto
        self._copy(at, len(self), pieces, seqs, starts, highs)
        return _Packed(b"".join(pieces["keys"]), b"".join(pieces["status"]), seqs,
                       b"".join(pieces["requests"]), b"".join(pieces["correlations"]), starts,
                       highs)

    def _copy(self, lo: int, hi: int, pieces: dict[str, list[bytes]], seqs: array[int],
              starts: array[int], highs: array[int]) -> None:
        if lo >= hi:
            return
        highs.extend(self.highs[lo:hi])
        pieces["keys"].append(self.keys[lo * KEY_BYTES:hi * KEY_BYTES])
        pieces["status"].append(self.status[lo:hi])
        pieces["requests"].append(self.requests[lo * REQUEST_BYTES:hi * REQUEST_BYTES])
        first, last = self.starts[lo], self.starts[hi]
        pieces["correlations"].append(self.correlations[first:last])
        seqs.extend(self.seqs[lo:hi])
        shift = starts[-1] - first
        starts.extend(s + shift for s in self.starts[lo + 1:hi + 1])

    # -- bytes, for snapshots -------------------------------------------------------------

    def to_bytes(self, odd: list[EndedRun]) -> bytes:
        """Counts, then each array; the odd runs after, each as packed fields."""
        n = len(self)
        parts = [_u64(n), self.keys, self.status, self.seqs.tobytes(), self.requests,
                 self.starts.tobytes(), self.correlations, _u64(len(odd))]
        for run in odd:
            parts += [_blob(run.run_id.encode()), bytes([_CODE[run.status]]), _u64(run.seq),
                      run.request, _blob(_packed_correlation(run.correlation))]
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, raw: bytes) -> tuple[_Packed, list[EndedRun]]:
        reader = _Reader(memoryview(raw))
        n = reader.u64()
        keys, status = reader.take(n * KEY_BYTES), reader.take(n)
        seqs = array("I")
        seqs.frombytes(reader.take(n * 4))
        requests = reader.take(n * REQUEST_BYTES)
        starts = array("I")
        starts.frombytes(reader.take((n + 1) * 4))
        if starts[0] != 0 or any(a > b for a, b in pairwise(starts)):
            raise ValueError("correlation offsets out of order")
        correlations = reader.take(starts[-1])
        if any(code not in range(1, len(ENDED) + 1) for code in status):
            raise ValueError("unknown status code")
        odd = []
        for _ in range(reader.u64()):
            run_id = reader.blob().decode()
            code = reader.take(1)[0]
            if code not in range(1, len(ENDED) + 1):
                raise ValueError("unknown status code")
            seq, request = reader.u64(), reader.take(REQUEST_BYTES)
            odd.append(EndedRun(run_id, ENDED[code - 1], seq, _correlation(reader.blob()),
                                request))
        reader.end()
        highs = array("Q", (high for high, _ in struct.iter_unpack(">QH", keys)))
        return cls(keys, status, seqs, requests, correlations, starts, highs), odd


def _u64(n: int) -> bytes:
    return n.to_bytes(8, "little")


def _blob(raw: bytes) -> bytes:
    return _u64(len(raw)) + raw


@dataclass(slots=True)
class _Reader:
    raw: memoryview
    at: int = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.at + n > len(self.raw):
            raise ValueError("truncated")
        out = bytes(self.raw[self.at:self.at + n])
        self.at += n
        return out

    def u64(self) -> int:
        return int.from_bytes(self.take(8), "little")

    def blob(self) -> bytes:
        return self.take(self.u64())

    def end(self) -> None:
        if self.at != len(self.raw):
            raise ValueError("bytes after the end")
