"""Base for payloads: each concrete event names its wire type and schema version."""

from __future__ import annotations

from typing import ClassVar

from events.common import Frozen


class Payload(Frozen):
    """A payload type; `TYPE` and `VERSION` are what the envelope carries."""

    TYPE: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1


class RunPayload(Payload):
    """Everything keyed by run id (intents, reports, the run log) carries it explicitly."""

    run_id: str
