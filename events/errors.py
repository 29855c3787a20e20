"""One root error for the contract, so callers can dead-letter anything the contract refuses."""


class EventError(Exception):
    """Base of every error raised by the events package."""


class EventParseError(EventError):
    """A payload that is not a valid event: the message names the field and what is wrong."""

    def __init__(self, reason: str, *, field: str | None = None) -> None:
        self.reason = reason
        self.field = field
        super().__init__(f"{field}: {reason}" if field else reason)


class UnknownEventType(EventParseError):
    """The envelope names a type this version of Baton does not know."""


class UnknownSchemaVersion(EventParseError):
    """The envelope names a schema version newer than this reader understands."""


class EventTooLarge(EventParseError):
    """Over the size every reader accepts: large payloads travel by reference, never inline.

    Carries the numbers, so a producer can say by how much and which of its inputs to move out.
    """

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"event is {size} bytes, over the {limit} limit")
