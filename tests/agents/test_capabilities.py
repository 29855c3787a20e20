"""Capabilities come from detection, and flags override it with clear errors on typos."""

from __future__ import annotations

import pytest

from agents.capabilities import (
    detect_capabilities,
    detect_gpus,
    parse_gpu_spec,
    parse_labels,
    parse_memory,
)
from events.common import GpuInfo


@pytest.mark.parametrize(
    ("text", "megabytes"),
    [("512", 512), ("512M", 512), ("512Mi", 512), ("2G", 2048), ("2Gi", 2048), ("1.5Gi", 1536)],
)
def test_memory_sizes_are_read_as_megabytes(text: str, megabytes: int) -> None:
    assert parse_memory(text) == megabytes


@pytest.mark.parametrize("text", ["2X", "", "Gi", "-1", "0"])
def test_an_unreadable_memory_size_explains_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match="use a number of megabytes or a size such as 512Mi"):
        parse_memory(text)


def test_labels_are_read_from_key_value_pairs() -> None:
    assert parse_labels(["zone=eu-1", "tier = fast"]) == {"zone": "eu-1", "tier": "fast"}


@pytest.mark.parametrize("item", ["zone", "=eu-1"])
def test_a_label_without_key_and_value_explains_the_form(item: str) -> None:
    with pytest.raises(ValueError, match="write labels as key=value"):
        parse_labels([item])


@pytest.mark.parametrize("spec", ["none", "0"])
def test_no_gpus_can_be_requested(spec: str) -> None:
    assert parse_gpu_spec(spec) == ()


def test_a_gpu_count_simulates_that_many_gpus() -> None:
    assert parse_gpu_spec("2") == (
        GpuInfo(index=0, model="simulated"),
        GpuInfo(index=1, model="simulated"),
    )


def test_a_gpu_model_and_memory_describe_each_gpu() -> None:
    gpus = parse_gpu_spec("2xA100:40960")
    assert [(g.index, g.model, g.memory_mb) for g in gpus] == [
        (0, "A100", 40960),
        (1, "A100", 40960),
    ]


@pytest.mark.parametrize("spec", ["two", "x", "-1", "2x", "2xA100 :1"])
def test_an_unreadable_gpu_spec_explains_the_accepted_forms(spec: str) -> None:
    with pytest.raises(ValueError, match=r"use 'none', a count such as 2, or COUNTxMODEL:MEMORY"):
        parse_gpu_spec(spec)


def test_an_unreadable_gpu_memory_names_the_gpu_flag() -> None:
    with pytest.raises(ValueError, match=r"gpus '2xA100:lots': memory 'lots': use a number"):
        parse_gpu_spec("2xA100:lots")


def test_gpu_detection_never_raises() -> None:
    assert all(isinstance(gpu, GpuInfo) for gpu in detect_gpus())


def test_flags_override_detected_capabilities() -> None:
    # when
    caps = detect_capabilities(cpus=1.5, memory="2Gi", gpus="1xT4:16Gi", labels=["zone=a"])
    # then
    assert caps.cpus == 1.5
    assert caps.memory_mb == 2048
    assert caps.gpus == (GpuInfo(index=0, model="T4", memory_mb=16384),)
    assert caps.labels == {"zone": "a"}


def test_without_flags_the_machine_is_detected() -> None:
    # when
    caps = detect_capabilities(gpus="none")
    # then
    assert caps.cpus >= 1
    assert caps.memory_mb > 0
