"""DAG validation and ordering: every rejection names the tasks involved."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from events.pipeline import TaskSpec
from orchestrator.core import dag
from orchestrator.core.errors import SpecError
from tests.core.harness import pipeline, task
from tests.core.support import gate_task, register_task


def problems(*tasks: TaskSpec) -> list[str]:
    with pytest.raises(SpecError) as err:
        dag.validate(pipeline(*tasks, name="demo"))
    return err.value.problems


def test_a_valid_dag_passes_validation() -> None:
    dag.validate(pipeline(task("a"), task("b", "a"), task("c", "a"), task("d", "b", "c")))


def test_a_cycle_is_rejected_with_the_path_of_the_cycle() -> None:
    found = problems(task("a", "c"), task("b", "a"), task("c", "b"), task("d"))

    (message,) = found
    assert message.startswith("pipeline 'demo': tasks form a cycle: ")
    path = message.rsplit(": ", 1)[1].split(" -> ")
    assert path[0] == path[-1], "the cycle closes on its first task"
    assert set(path) == {"a", "b", "c"}


def test_a_task_depending_on_itself_is_a_cycle() -> None:
    (message,) = problems(task("a", "a"))

    assert "cycle: a -> a" in message


def test_an_unknown_dependency_is_rejected_naming_the_task_and_the_missing_dep() -> None:
    (message,) = problems(task("a"), task("b", "nope"))

    assert message == ("pipeline 'demo': task 'b' depends on unknown task 'nope' "
                       "(known: a, b)")


def test_a_duplicate_task_name_is_rejected_naming_the_task() -> None:
    (message,) = problems(task("a"), task("b"), task("a"))

    assert message == "pipeline 'demo': task 'a' is declared twice"


def test_every_structural_problem_is_reported_not_only_the_first() -> None:
    found = problems(task("a"), task("a"), task("b", "x"), task("c", "y"))

    assert len(found) == 3
    assert any("'a' is declared twice" in p for p in found)
    assert any("'b' depends on unknown task 'x'" in p for p in found)
    assert any("'c' depends on unknown task 'y'" in p for p in found)


def test_a_function_task_without_a_function_is_rejected() -> None:
    (message,) = problems(TaskSpec(name="a"))

    assert "task 'a' has no function" in message


def test_a_gate_must_depend_on_the_task_it_reads_metrics_from() -> None:
    gate = gate_task("g", metrics_from="train").model_copy(update={"deps": ("other",)})

    found = problems(task("train"), task("other"), gate)

    assert found == ["pipeline 'demo': gate 'g' must depend on the task it reads metrics from"]


def test_a_register_must_come_after_the_task_whose_artifact_it_registers() -> None:
    found = problems(task("train"), task("other"),
                     register_task("reg", "other", artifact_from="train"))

    assert found == ["pipeline 'demo': register 'reg' must come after the task whose "
                     "artifact it registers"]


def test_a_register_may_reach_its_artifact_through_intermediate_tasks() -> None:
    dag.validate(pipeline(task("train"), gate_task("gate", metrics_from="train"),
                          register_task("reg", "gate", artifact_from="train")))


def test_topological_order_puts_every_dependency_first_and_keeps_declaration_order() -> None:
    spec = pipeline(task("join", "left", "right"), task("right", "root"),
                    task("left", "root"), task("root"), task("solo"))

    order = [t.name for t in dag.topological(spec)]

    assert order == ["root", "solo", "right", "left", "join"]
    position = {name: i for i, name in enumerate(order)}
    for t in spec.tasks:
        assert all(position[d] < position[t.name] for d in t.deps)


def test_dependents_and_ancestors_follow_the_edges() -> None:
    spec = pipeline(task("a"), task("b", "a"), task("c", "b"), task("d", "a"))

    assert dag.dependents(spec) == {"a": ("b", "d"), "b": ("c",), "c": (), "d": ()}
    assert dag.ancestors(spec, "c") == {"a", "b"}
    assert dag.ancestors(spec, "a") == set()


# --- big and hostile specs: a spec is input anyone who can write baton.intents may send ----


def passes_order(tasks: tuple[TaskSpec, ...]) -> list[str]:
    """The order as it was first defined (a pass over the declaration per round): the
    reference the linear version must reproduce exactly, since folded runs hold it."""
    done: set[str] = set()
    order: list[str] = []
    while len(order) < len(tasks):
        for t in tasks:
            if t.name not in done and all(d in done for d in t.deps):
                order.append(t.name)
                done.add(t.name)
    return order


@st.composite
def dags(draw: st.DrawFn) -> tuple[TaskSpec, ...]:
    """Random DAGs in a random declaration order (dependencies often declared later)."""
    n = draw(st.integers(1, 14))
    deps = [draw(st.sets(st.integers(0, i - 1), max_size=3)) if i else set() for i in range(n)]
    declared = draw(st.permutations(range(n)))
    return tuple(task(f"t{i}", *(f"t{d}" for d in sorted(deps[i]))) for i in declared)


@given(dags())
def test_the_linear_order_is_the_order_of_declaration_passes(tasks: tuple[TaskSpec, ...]) -> None:
    assert [t.name for t in dag.topological(pipeline(*tasks))] == passes_order(tasks)


def chain_listed_backwards(n: int) -> tuple[TaskSpec, ...]:
    return tuple(task(f"t{i}", *([f"t{i - 1}"] if i else [])) for i in reversed(range(n)))


def test_a_5000_task_chain_listed_backwards_validates_and_orders_without_recursion() -> None:
    # given a chain far deeper than Python's recursion limit, dependents declared first
    spec = pipeline(*chain_listed_backwards(5000))
    # when it is validated and ordered, then it is valid and runs from its first link
    dag.validate(spec)
    assert [t.name for t in dag.topological(spec)] == [f"t{i}" for i in range(5000)]


def test_a_cycle_at_the_end_of_a_5000_task_chain_is_found_with_its_path() -> None:
    tasks = (task("t0", "t4999"), *chain_listed_backwards(5000)[:-1])

    (message,) = problems(*tasks)

    assert message.startswith("pipeline 'demo': tasks form a cycle: ")
    path = message.rsplit(": ", 1)[1].split(" -> ")
    assert (len(path), path[0], path[-1]) == (5001, path[-1], path[0])


def test_what_is_remembered_per_spec_answers_only_for_that_spec_object() -> None:
    # given more specs than are remembered, each made and dropped in turn (ids get reused)
    for i in range(3 * dag._REMEMBERED):
        spec = pipeline(task(f"a{i}"), task(f"b{i}", f"a{i}"), name=f"p{i}")
        dag.validate(spec)

        # when its order and maps are asked for, then they are its own
        assert [t.name for t in dag.topological(spec)] == [f"a{i}", f"b{i}"]
        assert dag.places(spec) == {f"a{i}": 0, f"b{i}": 1}
        assert dag.positions(spec) == {f"a{i}": 0, f"b{i}": 1}
        assert dag.dependents(spec) == {f"a{i}": (f"b{i}",), f"b{i}": ()}
    assert len(dag._FACTS) <= dag._REMEMBERED


def test_a_remembered_spec_is_still_validated_as_the_same_spec() -> None:
    spec = pipeline(task("a", "b"), task("b", "a"), name="loop")
    for _ in range(2):  # the second answer comes from what was remembered
        with pytest.raises(SpecError):
            dag.validate(spec)
