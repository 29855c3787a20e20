"""Pipelines in YAML: the same fields as the Python API, compiled to the same spec.

A YAML file is read in two checked steps: `YamlPipeline` checks the spellings only YAML has
(`retries`, `backoff_s`, `max_lost_attempts`, `resources.memory`, `register`, tasks as a
mapping) and passes every other field through to `PipelineSpec`, which checks the rest.
Whatever is wrong, in either step, becomes one line in `_problem`: the file, the task, the
field, its value, and what would be valid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, get_args

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)
from pydantic_core import ErrorDetails

from events.common import Resources
from events.pipeline import PipelineSpec, RegisterSpec, TaskSpec
from orchestrator.core.errors import SpecError
from orchestrator.pipelines.validation import check

MAX_RETRIES = 99
"""A spec allows 100 attempts (RetryPolicy.max_attempts): the first and 99 retries."""
MAX_LOST_ATTEMPTS = 100
"""RetryPolicy.max_lost_attempts: at most 100 attempts lost to agents."""


def load_yaml(path: Path) -> PipelineSpec:
    """Read, normalise and validate one pipeline file; any problem is a one-line SpecError."""
    doc = _read(path)
    try:
        spec = PipelineSpec.model_validate(YamlPipeline.model_validate(doc).to_spec())
    except ValidationError as exc:
        raise SpecError([_problem(path, doc, exc.errors(include_url=False)[0])]) from None
    check(spec, source=str(path))
    return spec


# -- reading ---------------------------------------------------------------------------------


def _read(path: Path) -> Any:
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise SpecError([f"{path}: cannot read it: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise SpecError([f"{path}: the file is not UTF-8 text (byte {exc.object[exc.start]:#04x}"
                         f" at offset {exc.start}): save it as UTF-8"]) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError([f"{path}: {_yaml_syntax(exc)}"]) from None


def _yaml_syntax(exc: yaml.YAMLError) -> str:
    """PyYAML's message spans lines (it quotes the source); a terminal gets one line."""
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return f"the file is not valid YAML: {_one_line(str(exc))}"
    mark = exc.problem_mark
    context = f" ({exc.context})" if exc.context else ""
    return (f"the file is not valid YAML: line {mark.line + 1}, column {mark.column + 1}: "
            f"{exc.problem}{context}")


# -- the YAML form ---------------------------------------------------------------------------


def memory_megabytes(value: object) -> int:
    """`memory` as the Python API and `--memory` read it; 0 and sizes under 1 MB fit nothing."""
    from agents.capabilities import parse_memory

    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("is not a size")
    try:
        megabytes = parse_memory(str(value))
    except ValueError:
        raise ValueError("is not a size") from None
    if megabytes < 1:
        raise ValueError("is not a size")
    return megabytes


Megabytes = Annotated[int, BeforeValidator(memory_megabytes)]
Retries = Annotated[int, Field(strict=True, ge=0, le=MAX_RETRIES)]
"""Strict: `retries: 1.5` or `retries: "two"` is a mistake to point out, not to round."""
LostAttempts = Annotated[int, Field(strict=True, ge=1, le=MAX_LOST_ATTEMPTS)]


class _Form(BaseModel):
    """The YAML spellings; every field not declared passes through to the spec's models."""

    model_config = ConfigDict(extra="allow", frozen=True)

    def passed_through(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class YamlResources(_Form):
    memory: Megabytes | None = None

    def to_spec(self) -> dict[str, Any]:
        out = self.passed_through()
        if self.memory is not None:
            out["memory_mb"] = self.memory
        return out


class YamlTask(_Form):
    retries: Retries | None = None
    backoff_s: float | None = Field(default=None, ge=0)
    max_lost_attempts: LostAttempts | None = None
    resources: YamlResources | None = None
    registration: RegisterSpec | None = Field(default=None, alias="register")

    def to_spec(self) -> dict[str, Any]:
        out = self.passed_through()
        resources = self.resources.to_spec() if self.resources is not None else {}
        if resources:  # none given: a gate or registration keeps its zero default
            out["resources"] = resources
        if any(v is not None for v in (self.retries, self.backoff_s, self.max_lost_attempts)):
            backoff = 1.0 if self.backoff_s is None else self.backoff_s
            out["retry"] = {"max_attempts": (self.retries or 0) + 1, "backoff_s": backoff}
            if self.max_lost_attempts is not None:
                out["retry"]["max_lost_attempts"] = self.max_lost_attempts
        if self.registration is not None:
            out["registration"] = self.registration
        return out


class YamlPipeline(_Form):
    tasks: list[YamlTask] = Field(min_length=1)
    triggers: list[Any] | None = None

    @field_validator("tasks", mode="before")
    @classmethod
    def _named(cls, tasks: Any) -> Any:
        """`tasks: {name: {...}}` is allowed as well as a list."""
        if not isinstance(tasks, dict):
            return tasks
        return [{"name": name, **(body or {})} if isinstance(body, dict | None) else body
                for name, body in tasks.items()]

    def to_spec(self) -> dict[str, Any]:
        out = self.passed_through()
        out["tasks"] = [task.to_spec() for task in self.tasks]
        if self.triggers is not None:
            out["triggers"] = [_trigger(t) for t in self.triggers]
        return out


def _trigger(trigger: Any) -> Any:
    """YAML 1.1 reads a bare `on:` key as the boolean True; give it its name back."""
    if isinstance(trigger, dict) and True in trigger and "on" not in trigger:
        return {"on": trigger[True], **{k: v for k, v in trigger.items() if k is not True}}
    return trigger


# -- problems as one line ------------------------------------------------------------------

_HINTS = {
    "": "write name: and tasks: at its top level",
    "tasks": "list the tasks under tasks:, each a mapping with at least name and function",
    "task": "write each task as a mapping with at least name and function",
    "task.resources": "write them as a mapping, e.g. {cpus: 1, memory: 512Mi}",
    "task.retries": f"use a whole number of extra attempts, 0 to {MAX_RETRIES} (e.g. retries: 2)",
    "task.max_lost_attempts": f"use a whole number of attempts, 1 to {MAX_LOST_ATTEMPTS} "
                              "(e.g. max_lost_attempts: 5)",
    "task.resources.memory": "use a number of megabytes or a number with Mi, Gi or Ti "
                             "(e.g. 512Mi or 4Gi), greater than 0",
}
"""What is valid, for the fields whose checks do not say it themselves ("task." for a task's
own fields, "task" for the task itself)."""

_WHAT_IS_WRONG = {
    "missing": "is missing",
    "int_type": "is not a whole number", "int_from_float": "is not a whole number",
    "int_parsing": "is not a whole number", "float_type": "is not a number",
    "float_parsing": "is not a number", "model_type": "is not a mapping",
    "dict_type": "is not a mapping", "model_attributes_type": "is not a mapping",
    "too_short": "is empty",
}


def _problem(path: Path, doc: Any, err: ErrorDetails) -> str:
    """The one place a value that failed its check becomes a message (see the module doc):
    `FILE: task 'NAME': FIELD VALUE what is wrong: what is valid`."""
    task, field = _locate(doc, err["loc"])
    value = "" if err["type"] == "missing" else _shown(err["input"])
    subject = " ".join(filter(None, [field, value])) if field or task else "the file"
    hint = _HINTS.get(f"task.{field}" if task and field else "task" if task else field)
    parts = [str(path), task, f"{subject} {_what_is_wrong(err)}", hint]
    return _one_line(": ".join(part for part in parts if part))


def _locate(doc: Any, loc: tuple[int | str, ...]) -> tuple[str, str]:
    """("tasks", 0, "resources", "memory") -> ("task 'train'", "resources.memory")."""
    if len(loc) >= 2 and loc[0] == "tasks" and isinstance(loc[1], int):
        return _task_name(doc, loc[1]), _dotted(loc[2:])
    return "", _dotted(loc)


def _task_name(doc: Any, index: int) -> str:
    tasks = doc.get("tasks") if isinstance(doc, dict) else None
    if isinstance(tasks, dict):
        return f"task {list(tasks)[index]!r}"
    task = tasks[index] if isinstance(tasks, list) else None
    name = task.get("name") if isinstance(task, dict) else None
    return f"task {name!r}" if isinstance(name, str) else f"task #{index + 1}"


def _dotted(loc: tuple[int | str, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def _what_is_wrong(err: ErrorDetails) -> str:
    if err["type"] == "value_error":  # our own checks (memory_megabytes) say it in their words
        return str(err.get("ctx", {}).get("error", err["msg"]))
    if err["type"] == "extra_forbidden":
        known = _known_fields(err["loc"][:-1])
        return f"is not a known field (known: {', '.join(known)})" if known else (
            "is not a known field")
    wrong = _WHAT_IS_WRONG.get(err["type"])
    return wrong or err["msg"].replace("Input should be", "should be")


_YAML_ONLY = {TaskSpec: ("retries", "backoff_s", "max_lost_attempts", "register"),
              Resources: ("memory",)}
_SPELLED_IN_YAML = {"register": "registration"}


def _known_fields(parent: tuple[int | str, ...]) -> list[str]:
    """The fields a YAML mapping at `parent` may have, found in the spec's own models."""
    model: Any = PipelineSpec
    for part in parent:
        if isinstance(part, str):
            field = model.model_fields.get(_SPELLED_IN_YAML.get(part, part))
            model = _model_in(field.annotation) if field is not None else None
        if model is None:
            return []
    spelled = set(_SPELLED_IN_YAML.values())
    return [*(n for n in model.model_fields if n not in spelled), *_YAML_ONLY.get(model, ())]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model inside `X`, `X | None`, `tuple[X, ...]` or `list[X]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((m for arg in get_args(annotation) if (m := _model_in(arg))), None)


def _shown(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _one_line(text: str) -> str:
    return " ".join(text.split())
