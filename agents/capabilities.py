"""What this machine can run: detected CPUs, memory and GPUs, overridable by flags."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from collections.abc import Sequence

import psutil

from events.common import Capabilities, GpuInfo

log = logging.getLogger(__name__)

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:(M|Mi|G|Gi|T|Ti))?\s*$", re.IGNORECASE)
_MB_PER_UNIT = {"": 1, "m": 1, "mi": 1, "g": 1024, "gi": 1024, "t": 1024**2, "ti": 1024**2}
_GPU_SPEC = re.compile(r"^(\d+)x([^:\s]+)(?::(.+))?$")
_NVIDIA_SMI_QUERY = [
    "nvidia-smi",
    "--query-gpu=index,name,memory.total",
    "--format=csv,noheader,nounits",
]


def parse_memory(text: str) -> int:
    """Megabytes; G and Gi both mean 1024 MB, since agents advertise whole binary sizes."""
    match = _MEMORY.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(
            f"memory {text!r}: use a number of megabytes or a size such as 512Mi or 4Gi"
        )
    unit = (match.group(2) or "").lower()
    return int(float(match.group(1)) * _MB_PER_UNIT[unit])


def parse_labels(items: Sequence[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"label {item!r}: write labels as key=value, e.g. zone=eu-1")
        labels[key.strip()] = value.strip()
    return labels


def parse_gpu_spec(spec: str) -> tuple[GpuInfo, ...]:
    """`--gpus` lets a CPU-only machine pretend to have GPUs, for demos and tests."""
    text = spec.strip()
    if text.lower() == "none" or text == "0":
        return ()
    if text.isdigit():
        return tuple(GpuInfo(index=i, model="simulated") for i in range(int(text)))
    match = _GPU_SPEC.match(text)
    if match is None:
        raise ValueError(
            f"gpus {spec!r}: use 'none', a count such as 2, or COUNTxMODEL:MEMORY "
            "such as 2xA100:40960 (memory in MB or a size such as 40Gi)"
        )
    count, model, memory = match.groups()
    try:
        memory_mb = parse_memory(memory) if memory else 0
    except ValueError as exc:
        raise ValueError(f"gpus {spec!r}: {exc}") from None
    return tuple(GpuInfo(index=i, model=model, memory_mb=memory_mb) for i in range(int(count)))


def detect_gpus() -> tuple[GpuInfo, ...]:
    """Best effort: a machine without drivers simply has no GPUs, it is not an error."""
    try:
        return _gpus_from_nvml()
    except Exception as exc:
        log.debug("NVML unavailable: %s", exc)
    try:
        return _gpus_from_nvidia_smi()
    except Exception as exc:
        log.debug("nvidia-smi unavailable: %s", exc)
    return ()


def _gpus_from_nvml() -> tuple[GpuInfo, ...]:
    import pynvml

    pynvml.nvmlInit()
    try:
        return tuple(_nvml_gpu(pynvml, i) for i in range(pynvml.nvmlDeviceGetCount()))
    finally:
        pynvml.nvmlShutdown()


def _nvml_gpu(pynvml: object, index: int) -> GpuInfo:
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)  # type: ignore[attr-defined]
    name = pynvml.nvmlDeviceGetName(handle)  # type: ignore[attr-defined]
    memory = pynvml.nvmlDeviceGetMemoryInfo(handle)  # type: ignore[attr-defined]
    model = name.decode() if isinstance(name, bytes) else str(name)
    return GpuInfo(index=index, model=model, memory_mb=int(memory.total) // 2**20)


def _gpus_from_nvidia_smi() -> tuple[GpuInfo, ...]:
    if shutil.which("nvidia-smi") is None:
        return ()
    done = subprocess.run(_NVIDIA_SMI_QUERY, capture_output=True, text=True, timeout=5, check=True)
    return tuple(_smi_gpu(line) for line in done.stdout.splitlines() if line.strip())


def _smi_gpu(line: str) -> GpuInfo:
    index, name, memory = (part.strip() for part in line.split(","))
    return GpuInfo(index=int(index), model=name, memory_mb=int(float(memory)))


def detect_capabilities(
    *,
    cpus: float | None = None,
    memory: str | None = None,
    gpus: str | None = None,
    labels: Sequence[str] = (),
) -> Capabilities:
    """Flags win over detection so an operator can reserve part of a shared machine."""
    return Capabilities(
        cpus=cpus if cpus is not None else _detect_cpus(),
        memory_mb=parse_memory(memory) if memory is not None else _detect_memory_mb(),
        gpus=parse_gpu_spec(gpus) if gpus is not None else detect_gpus(),
        labels=parse_labels(labels),
    )


def _detect_cpus() -> float:
    """Affinity, not the core count, so a pinned container advertises what it may use."""
    if hasattr(os, "sched_getaffinity"):
        return float(len(os.sched_getaffinity(0)))
    return float(os.cpu_count() or 1)


def _detect_memory_mb() -> int:
    return int(psutil.virtual_memory().total // 2**20)
