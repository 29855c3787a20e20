"""Python and YAML declare the same specs; validation says where a pipeline is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from events.common import Resources
from events.pipeline import PipelineSpec, TaskSpec
from orchestrator.core.errors import SpecError
from orchestrator.pipelines.loader import load_pipeline
from orchestrator.pipelines.validation import check

HERE = Path(__file__).parent


def test_python_and_yaml_compile_to_the_same_spec_and_version() -> None:
    # given / when
    from_python = load_pipeline("tests.pipelines.sample:pipe")
    from_yaml = load_pipeline(str(HERE / "sample.yaml"))
    # then
    assert from_python == from_yaml
    assert from_python.version() == from_yaml.version()
    assert from_python.task("total").deps == ("load",)
    assert from_python.task("load").retry.max_attempts == 3


def test_the_version_changes_when_the_spec_changes() -> None:
    spec = load_pipeline("tests.pipelines.sample:pipe")
    changed = spec.model_copy(update={"deadline_s": 10.0})
    assert changed.version() != spec.version()


def spec_of(*tasks: TaskSpec) -> PipelineSpec:
    return PipelineSpec(name="bad", tasks=tasks)


def fn(name: str, *deps: str, function: str = "tests.pipelines.sample:load", **res: float
       ) -> TaskSpec:
    return TaskSpec(name=name, function=function, deps=deps, resources=Resources(**res))


@pytest.mark.parametrize(("spec", "message"), [
    (spec_of(fn("a", "b"), fn("b", "a")), "cycle: a -> b -> a"),
    (spec_of(fn("a", "nope")), "task 'a' depends on unknown task 'nope'"),
    (spec_of(fn("a", function="no.such.module:f")), "task 'a': cannot import module"),
    (spec_of(fn("a", function="tests.pipelines.sample:missing")), "has no attribute 'missing'"),
    (spec_of(fn("a", function="tests.pipelines.sample")), "must look like 'package.module:"),
    (spec_of(fn("a", gpu_memory_mb=1000)), "gpus is 0"),
    (spec_of(fn("a", cpus=0)), "requests no cpus and no gpus"),
    (spec_of(fn("t", function="tests.pipelines.sample:total")), "parameter(s) load name no"),
])
def test_invalid_pipelines_are_rejected_naming_where(spec: PipelineSpec, message: str) -> None:
    with pytest.raises(SpecError) as err:
        check(spec, source="test")
    assert message in str(err.value)
    assert "pipeline 'bad'" in str(err.value)


def test_a_yaml_file_with_a_wrong_field_names_the_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("name: p\ntasks:\n  - {name: a, function: 'x:y', timeout_s: -1}\n")
    with pytest.raises(SpecError) as err:
        load_pipeline(str(path))
    assert str(path) in str(err.value) and "tasks.0.timeout_s" in str(err.value)


def test_python_declares_gpu_constraints_schedule_to_start_and_pipeline_concurrency() -> None:
    # given / when
    spec = load_pipeline("tests.pipelines.sample:gpu_pipe")
    # then
    assert spec.max_concurrent_tasks == 2
    task = spec.task("train")
    assert task.resources == Resources(gpus=1, gpu_memory_mb=40960, gpu_model="A100",
                                       labels={"pool": "training"})
    assert task.schedule_to_start_timeout_s == 600
