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
