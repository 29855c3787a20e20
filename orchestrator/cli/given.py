"""Naming the flag at fault when what a command would publish is refused by the contract.

The check is the consumers' own (`events.codec.checked` and the models): this only maps the
field a refusal names (`data.version`) back to the flag that filled it (`--version`), and says
it in one line with the fix.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from events.errors import EventParseError, EventTooLarge
from orchestrator.cli.errors import UsageError
from orchestrator.printable import printable

MADE_UP_WHEN_ABSENT = frozenset({"--event-id", "--idempotency-key"})
"""Flags whose absence means "make one up"; given empty, they are a mistake, said so."""
SHOWN_CHARS = 60


@dataclass(frozen=True)
class Given:
    """What the command line gave for an event: `fields` maps a field's path in the envelope
    (or a prefix of it) to its flag, `values` each flag to what it was given."""

    what: str
    fields: Mapping[str, str]
    values: Mapping[str, object]

    @contextmanager
    def checking(self) -> Iterator[None]:
        """Turns the contract's refusal inside the block into the one-line usage error."""
        try:
            yield
        except EventParseError as exc:
            raise self.refusal(exc) from None

    def refusal(self, exc: EventParseError) -> UsageError:
        if isinstance(exc, EventTooLarge):
            return self._too_large(exc)
        flag = self.flag_for(exc.field)
        if flag is None:
            return UsageError(f"{self.what} would be refused by the bus: {printable(str(exc))} "
                              "(nothing was published)")
        value = self.values.get(flag)
        hint = "; leave the flag out to have one made up" if (
            flag in MADE_UP_WHEN_ABSENT and value == "") else ""
        return UsageError(f"{flag} {_shown(value)}: {printable(exc.reason)}{hint} (nothing was "
                          "published)")

    def flag_for(self, field: str | None) -> str | None:
        """The flag that filled `field`, or a structure holding it (a param's value)."""
        if field is None:
            return None
        for path, flag in self.fields.items():
            if field == path or field.startswith(f"{path}."):
                return flag
        return None

    def _too_large(self, exc: EventTooLarge) -> UsageError:
        """Blames the largest value given: the one to pass by reference instead."""
        sizes = {flag: len(str(value)) for flag, value in self.values.items()}
        flag = f"{max(sizes, key=sizes.__getitem__)}: " if sizes else ""
        return UsageError(
            f"{flag}{self.what} would be {exc.size:,} bytes, over the {exc.limit:,}-byte limit "
            "of an event: pass large values by reference (a file path or URI), not inline")


def param_flag(key: str) -> str:
    return f"--param {printable(key)}"


def _shown(value: object) -> str:
    if not isinstance(value, str):
        return str(value)
    cut = value[:SHOWN_CHARS]
    return repr(cut) + ("…" if len(value) > SHOWN_CHARS else "")
