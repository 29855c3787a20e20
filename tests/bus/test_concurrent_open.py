"""Opening one new bus file from many connections at once never fails with "locked".

Seen in CI when `baton up` and `baton run` started together: switching a new file to WAL
fails at once, without waiting, while another connection is doing the same. Without the
retry, about one trial in fifteen below failed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bus import sqlite_schema as sql


async def test_many_connections_opening_a_new_file_together_all_succeed(tmp_path: Path) -> None:
    failures: list[BaseException] = []
    for trial in range(40):
        # given a file nobody has created yet
        path = tmp_path / f"bus-{trial}.db"
        # when eight connections open it at the same moment
        opened = await asyncio.gather(*(sql.open_connection(path, f"opener-{i}")
                                        for i in range(8)), return_exceptions=True)
        # then none of them failed
        for conn in opened:
            if isinstance(conn, BaseException):
                failures.append(conn)
            else:
                await conn.close()
    assert failures == []
