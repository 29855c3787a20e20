"""Errors of the core: bad specs, inputs that cannot apply, and a log that cannot be folded."""


class CoreError(Exception):
    """Root of every error the pure core raises."""


class SpecError(CoreError):
    """A pipeline spec that cannot run; the message says where and how to fix it."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class InvalidInput(CoreError):
    """An input that is well-formed but cannot apply (unknown run...): it is dead-lettered."""


class LogCorrupt(CoreError):
    """The run log itself is inconsistent (a sequence gap): halt loudly, never skip."""
