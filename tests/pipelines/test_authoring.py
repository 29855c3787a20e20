"""Python and YAML declare the same specs; validation says where a pipeline is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from events import codec
from events.common import Resources
from events.pipeline import DEFAULT_MAX_LOST_ATTEMPTS, PipelineSpec, TaskSpec
from events.runs import RunCreated
from orchestrator.core.errors import SpecError
from orchestrator.pipelines.loader import load_pipeline
from orchestrator.pipelines.validation import check
from orchestrator.pipelines.yaml_spec import memory_megabytes
from tests.pipelines.bad_yaml import BAD_YAML, BadYaml, train_with

HERE = Path(__file__).parent
GOLDEN = HERE.parent / "golden"


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


@pytest.mark.parametrize("bad", BAD_YAML.values(), ids=BAD_YAML.keys())
def test_a_wrong_yaml_file_is_one_line_naming_the_file_task_and_field(
    tmp_path: Path, bad: BadYaml
) -> None:
    # given: a pipeline file with one mistake
    path = bad.written(tmp_path)
    # when: it is loaded
    with pytest.raises(SpecError) as err:
        load_pipeline(str(path))
    # then: one problem, on one line, starting with the file
    (problem,) = err.value.problems
    assert problem.startswith(f"{path}: ") and "\n" not in problem
    for fragment in bad.names:
        assert fragment in problem


def test_a_wrong_memory_size_says_what_a_size_is(tmp_path: Path) -> None:
    path = tmp_path / "my.yaml"
    path.write_bytes(train_with("resources: {memory: 12X}"))
    with pytest.raises(SpecError) as err:
        load_pipeline(str(path))
    assert str(err.value) == (
        f"{path}: task 'train': resources.memory '12X' is not a size: use a number of "
        "megabytes or a number with Mi, Gi or Ti (e.g. 512Mi or 4Gi), greater than 0")


@pytest.mark.parametrize(("value", "megabytes"), [
    (512, 512), ("512", 512), ("512Mi", 512), ("1.5Gi", 1536), ("4G", 4096), ("1Ti", 1048576)])
def test_yaml_memory_reads_megabytes_and_sizes(value: object, megabytes: int) -> None:
    assert memory_megabytes(value) == megabytes


@pytest.mark.parametrize("value", ["12X", 0, "0", "-1Gi", -5, 0.5, "", True, None, [512]])
def test_yaml_memory_that_is_not_a_size_above_0_is_refused(value: object) -> None:
    with pytest.raises(ValueError, match=r"^is not a size$"):
        memory_megabytes(value)


def test_yaml_tasks_may_be_a_mapping_and_retries_a_whole_number(tmp_path: Path) -> None:
    # given: the sample pipeline, its tasks written as a mapping keyed by name
    path = tmp_path / "mapped.yaml"
    path.write_text(
        "name: sample\ntriggers:\n  - {on: data_arrived, dataset: numbers}\ntasks:\n"
        "  load: {function: 'tests.pipelines.sample:load', retries: 2, backoff_s: 0.5,\n"
        "         timeout_s: 30, resources: {cpus: 0.5, memory: 256Mi}}\n"
        "  total: {function: 'tests.pipelines.sample:total', deps: [load],\n"
        "          resources: {labels: {pool: cpu}}}\n"
        "  gate: {kind: gate, deps: [total], gate: {metrics_from: total, minimum: {total: 1}}}\n")
    # when / then: it is the same spec as the list form and the Python one
    assert load_pipeline(str(path)) == load_pipeline("tests.pipelines.sample:pipe")


def test_python_declares_gpu_constraints_schedule_to_start_and_pipeline_concurrency() -> None:
    # given / when
    spec = load_pipeline("tests.pipelines.sample:gpu_pipe")
    # then
    assert spec.max_concurrent_tasks == 2
    task = spec.task("train")
    assert task.resources == Resources(gpus=1, gpu_memory_mb=40960, gpu_model="A100",
                                       labels={"pool": "training"})
    assert task.schedule_to_start_timeout_s == 600


def test_python_and_yaml_set_the_bound_on_attempts_lost_to_agents_alike(tmp_path: Path) -> None:
    # given: one task allowing 2 lost attempts and no retries, in Python and in YAML
    path = tmp_path / "oom.yaml"
    path.write_text("name: oom\ntasks:\n  - {name: grow, function: 'tests.pipelines.sample:grow',"
                    " max_lost_attempts: 2}\n")

    # when / then: the same spec, whose retry policy carries the bound and no retries
    from_python = load_pipeline("tests.pipelines.sample:oom_pipe")
    from_yaml = load_pipeline(str(path))
    assert from_python == from_yaml
    assert from_python.version() == from_yaml.version()
    retry = from_python.task("grow").retry
    assert (retry.max_attempts, retry.max_lost_attempts) == (1, 2)


def test_a_spec_leaving_the_lost_bound_at_its_default_keeps_its_version_and_wire_form() -> None:
    # given: a run created before max_lost_attempts existed (a recorded decision history)
    line = (GOLDEN / "histories" / "linear_run.jsonl").read_text().splitlines()[2]
    wire = json.loads(line)["decisions"][0]
    created = codec.decode(json.dumps(wire).encode()).data
    assert isinstance(created, RunCreated)

    # when: its spec is read by today's code
    spec = created.spec
    assert spec is not None  # a log written before the spec went by reference carries it

    # then: the bound is the default, left out of the wire form, and the version is unchanged
    assert all(t.retry.max_lost_attempts == DEFAULT_MAX_LOST_ATTEMPTS for t in spec.tasks)
    assert "max_lost_attempts" not in spec.model_dump_json()
    assert spec.version() == created.pipeline_version
    changed = spec.tasks[0].retry.model_copy(update={"max_lost_attempts": 2})
    assert "max_lost_attempts" in changed.model_dump_json()


def test_python_and_yaml_declare_the_same_canary_step(tmp_path: Path) -> None:
    # given a canary after a registration, in Python and in YAML
    path = tmp_path / "released.yaml"
    path.write_text(
        "name: released\ndeadline_s: 3600\ntasks:\n"
        "  - {name: fit, function: 'tests.pipelines.sample:fit'}\n"
        "  - {name: gate, kind: gate, deps: [fit], gate: {metrics_from: fit, "
        "minimum: {accuracy: 0.8}}}\n"
        "  - {name: register, kind: register, deps: [gate], "
        "register: {model: digits, artifact_from: fit}}\n"
        "  - name: canary\n    kind: canary\n    deps: [register]\n    canary:\n"
        "      model: digits\n      version_from: register\n      timeout_s: 1800\n"
        "      max_error_rate_increase: 0.02\n"
        "      steps: [{percent: 5, hold_s: 60}, {percent: 50, requests: 500}]\n")
    # when / then: one spec, whose canary runs on no agent's capacity
    from_python = load_pipeline("tests.pipelines.sample:canary_pipe")
    assert from_python == load_pipeline(str(path))
    canary = from_python.task("canary")
    assert canary.kind == "canary" and canary.resources.cpus == 0
    assert canary.canary is not None and [s.percent for s in canary.canary.steps] == [5, 50]


def test_python_and_yaml_declare_schedules_and_conditions_alike(tmp_path: Path) -> None:
    # given the same schedules and triggers in YAML (on: read back from YAML's `on:` true)
    path = tmp_path / "report.yaml"
    path.write_text("""\
name: joined
tasks:
  - name: join
    function: 'tests.e2e.schedule_pipelines:join'
    resources: {cpus: 0.25, memory: 64}
triggers:
  - on: condition
    condition:
      all_of:
        - {data: sales, where: {min_rows: 100}}
        - {data: fx}
    partition_by: date
    timeout_s: 600
""")
    # when / then: the Python pipeline and the YAML file are one spec
    assert load_pipeline(str(path)) == load_pipeline("tests.e2e.schedule_pipelines:joined")
    timed = tmp_path / "timed.yaml"
    timed.write_text("""\
name: ticking
tasks:
  - name: tick
    function: 'tests.e2e.schedule_pipelines:tick'
    resources: {cpus: 0.25, memory: 64}
schedules:
  - name: all
    every_s: 2
    overlap: allow_all
    catchup: {policy: all, max_runs: 100, window_s: 3600}
  - name: latest
    every_s: 2
    offset_s: 1
    overlap: allow_all
    catchup: {policy: latest, window_s: 3600}
""")
    assert load_pipeline(str(timed)) == load_pipeline("tests.e2e.schedule_pipelines:ticking")
