"""Pipeline files with one mistake each, and what the one-line error must name: shared by the
loader's unit tests and the CLI's end-to-end tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


def train_with(field: str) -> bytes:
    """A valid one-task pipeline, plus one line in its task 'train'."""
    return (b"name: p\ntasks:\n  - name: train\n    function: tests.pipelines.sample:load\n"
            + f"    {field}\n".encode())


@dataclass(frozen=True)
class BadYaml:
    content: bytes
    names: tuple[str, ...]
    """Fragments the error line must hold besides the file: the task, the field, the fix."""

    def written(self, directory: Path) -> Path:
        """The mistake as a user's file, `my.yaml` in `directory`."""
        path = directory / "my.yaml"
        path.write_bytes(self.content)
        return path


BAD_YAML = {
    "memory with an unknown unit": BadYaml(train_with("resources: {memory: 12X}"), (
        "task 'train': resources.memory '12X' is not a size: use a number of megabytes",
        "(e.g. 512Mi or 4Gi), greater than 0")),
    "memory of 0": BadYaml(train_with("resources: {memory: 0}"), (
        "task 'train': resources.memory 0 is not a size", "greater than 0")),
    "negative memory": BadYaml(train_with("resources: {memory: -1Gi}"), (
        "task 'train': resources.memory '-1Gi' is not a size", "greater than 0")),
    "fractional retries": BadYaml(train_with("retries: 1.5"), (
        "task 'train': retries 1.5 is not a whole number", "0 to 99 (e.g. retries: 2)")),
    "retries in words": BadYaml(train_with("retries: two"), (
        "task 'train': retries 'two' is not a whole number", "0 to 99")),
    "no lost attempts allowed": BadYaml(train_with("max_lost_attempts: 0"), (
        "task 'train': max_lost_attempts 0 should be greater than or equal to 1",
        "1 to 100 (e.g. max_lost_attempts: 5)")),
    "fractional lost attempts": BadYaml(train_with("max_lost_attempts: 2.5"), (
        "task 'train': max_lost_attempts 2.5 is not a whole number", "1 to 100")),
    "cpus in words": BadYaml(train_with("resources: {cpus: abc}"), (
        "task 'train': resources.cpus 'abc' is not a number",)),
    "negative timeout": BadYaml(train_with("timeout_s: -3"), (
        "task 'train': timeout_s -3 should be greater than 0",)),
    "misspelt resource": BadYaml(train_with("resources: {memroy: 1Gi}"), (
        "task 'train': resources.memroy '1Gi' is not a known field", "cpus, memory_mb",
        "memory)")),
    "task that is not a mapping": BadYaml(b"name: p\ntasks:\n  - train\n", (
        "task #1: 'train' is not a mapping", "each task as a mapping with at least name")),
    "no tasks": BadYaml(b"name: p\n", ("tasks is missing", "list the tasks under tasks:")),
    "not UTF-8": BadYaml(b"name: p\ntasks:\n  - name: tr\xffain\n", (
        "the file is not UTF-8 text (byte 0xff at offset 27)", "save it as UTF-8")),
    "YAML syntax error": BadYaml(b"name: p\ntasks: [\n  - name: train\n", (
        "the file is not valid YAML: line 3, column 3",)),
}
