"""The digits pipeline's train step as a small PyTorch network, on the GPU the task was given.

Everything but `train` is the digits pipeline's own code (ingest, features, evaluate, gate,
register); only the model changes. PyTorch is an optional extra (`pip install -e '.[torch]'`),
so it is imported inside `train`: the coordinator, `baton pipelines validate` and CPU agents
load this module without it. numpy too is imported where it is used, so the coordinator,
which only reads the pipeline's declaration, never loads it.

The trained network is returned as numpy weights (`MLPClassifier`), not as a torch module:
evaluate, the model registry and drift monitors then load it without torch, and a model
trained on a GPU loads on a machine that has none.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agents.task_api import Result, Scalar, TaskContext, TaskError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    FloatArray = npt.NDArray[np.float64]
    IntArray = npt.NDArray[np.int64]

HIDDEN = 128
EPOCHS = 40
MAX_EPOCHS = 10_000
BATCH_SIZE = 64
LEARNING_RATE = 3e-3
SEED = 0
# What the pipelines' train task requests. A network this small trains fastest on one thread:
# more only contend (0.7 s on one, 6.5 s on two threads of a busy 2-core machine).
CPU_THREADS = 1
PROGRESS_REPORTS = 10  # progress events per training, whatever the number of epochs
N_CLASSES = 10
INSTALL_HINT = "install the torch extra on this agent: pip install -e '.[torch]'"


@dataclass(frozen=True)
class MLPClassifier:
    """One hidden ReLU layer, as plain arrays; `predict` is the network's forward pass."""

    w1: FloatArray
    b1: FloatArray
    w2: FloatArray
    b2: FloatArray

    def predict(self, X: npt.ArrayLike) -> IntArray:
        import numpy as np

        hidden = np.maximum(np.asarray(X, dtype=np.float64) @ self.w1.T + self.b1, 0.0)
        logits = hidden @ self.w2.T + self.b2
        return np.asarray(np.argmax(logits, axis=1), dtype=np.int64)


def train(features: dict[str, Any], ctx: TaskContext) -> Result:
    """Train on the GPU the agent assigned, else on the CPU; the result says which and why.

    Only `ctx.gpus` decides whether a GPU may be used: the agent sets CUDA_VISIBLE_DEVICES
    to exactly those GPUs (so the first one is `cuda:0` here), while a task given no GPU may
    still see every GPU of the machine and must leave them to the tasks they were given to.
    """
    import numpy as np

    epochs = _epochs(ctx)
    torch = _import_torch()
    device, note = _device(torch, ctx.gpus)
    torch.set_num_threads(CPU_THREADS)
    torch.manual_seed(SEED)
    X = torch.as_tensor(np.asarray(features["X_train"], dtype=np.float32), device=device)
    y = torch.as_tensor(np.asarray(features["y_train"], dtype=np.int64), device=device)
    # Built on the CPU from the seed, then moved: the same initial weights on every device.
    model = torch.nn.Sequential(
        torch.nn.Linear(X.shape[1], HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, N_CLASSES)
    ).to(device)
    ctx.progress(0.0, f"training MLP({HIDDEN}) on {_describe(torch, device)}")
    started = time.perf_counter()
    final_loss = _fit(torch, model, X, y, epochs, ctx)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    classifier = _to_numpy(model)
    train_accuracy = float(np.mean(classifier.predict(features["X_train"]) == features["y_train"]))
    metrics = {
        "epochs": float(epochs),
        "train_seconds": seconds,
        "final_loss": final_loss,
        "train_accuracy": train_accuracy,
    }
    metadata = _facts(torch, device, ctx.gpus, note)
    return Result(value=classifier, metrics=metrics, metadata=metadata)


def _fit(torch: Any, model: Any, X: Any, y: Any, epochs: int, ctx: TaskContext) -> float:
    """Mini-batch Adam; returns the last epoch's mean loss. Shuffling has its own seeded
    generator, so the batches are the same on every device."""
    optimiser = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    loss_fn = torch.nn.CrossEntropyLoss()
    shuffle = torch.Generator().manual_seed(SEED)
    report_every = max(1, epochs // PROGRESS_REPORTS)
    mean_loss = 0.0
    for epoch in range(1, epochs + 1):
        loss_sum = torch.zeros((), device=X.device)
        order = torch.randperm(X.shape[0], generator=shuffle).to(X.device)
        for batch in order.split(BATCH_SIZE):
            optimiser.zero_grad()
            loss = loss_fn(model(X[batch]), y[batch])
            loss.backward()
            optimiser.step()
            loss_sum += loss.detach() * batch.shape[0]
        if epoch % report_every == 0 or epoch == epochs:
            mean_loss = float(loss_sum) / X.shape[0]  # waits for the GPU: only when reporting
            ctx.progress(epoch / epochs, f"epoch {epoch}/{epochs} loss {mean_loss:.4f}")
    return mean_loss


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise TaskError(
            f"PyTorch is not installed here ({exc}); {INSTALL_HINT}", retryable=False
        ) from None
    return torch


def _epochs(ctx: TaskContext) -> int:
    """`baton run digits_torch --param epochs=5` changes it per run; params arrive as text."""
    raw = ctx.params.get("epochs", EPOCHS)
    try:
        epochs = int(raw)
    except (TypeError, ValueError):
        epochs = 0
    if not 1 <= epochs <= MAX_EPOCHS:
        raise TaskError(
            f"param epochs={raw!r}: use a whole number from 1 to {MAX_EPOCHS}", retryable=False
        )
    return epochs


def _device(torch: Any, gpus: tuple[int, ...]) -> tuple[Any, str]:
    """`cuda:0` is the first GPU the agent assigned, because it set CUDA_VISIBLE_DEVICES."""
    if not gpus:
        return torch.device("cpu"), "no GPU assigned to this task"
    if not torch.cuda.is_available():
        return torch.device("cpu"), (
            f"GPU {','.join(map(str, gpus))} assigned, but torch sees no CUDA device "
            "(a simulated GPU, or a CPU-only torch build): trained on the CPU"
        )
    return torch.device("cuda", 0), f"GPU {','.join(map(str, gpus))} assigned"


def _describe(torch: Any, device: Any) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return "cpu"


def _facts(torch: Any, device: Any, gpus: tuple[int, ...], note: str) -> dict[str, Scalar]:
    """Where the model was trained, in the run's record: `baton runs show ID --json`."""
    on_gpu = device.type == "cuda"
    return {
        "algorithm": f"MLP(64-{HIDDEN}-{N_CLASSES}, relu, adam)",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if on_gpu else "cpu",
        "device_note": note,
        "assigned_gpus": ",".join(map(str, gpus)),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
        "torch_version": str(torch.__version__),
        "cuda_version": str(torch.version.cuda or "none"),
        "seed": SEED,
    }


def _to_numpy(model: Any) -> MLPClassifier:
    first, _, second = model
    return MLPClassifier(w1=_array(first.weight), b1=_array(first.bias),
                         w2=_array(second.weight), b2=_array(second.bias))


def _array(tensor: Any) -> FloatArray:
    import numpy as np

    return np.asarray(tensor.detach().cpu().numpy(), dtype=np.float64)
