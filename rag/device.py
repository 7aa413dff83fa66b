"""Where the torch models run (RAG_DEVICE=auto|cpu|cuda) and in which precision.

`auto` takes a CUDA GPU when torch sees one and the CPU otherwise, so a machine without a GPU
runs exactly as before. On a GPU the generator runs in bfloat16 where the card supports it
(Ampere and later), in float32 elsewhere; fine-tuning keeps float32 weights and computes in
bfloat16 (`training_precision`). The embedder and the reranker stay float32 everywhere: index
vectors built on a GPU must be the vectors a CPU process searches them with.
"""

from __future__ import annotations

import contextlib
from typing import Any

from rag.errors import ModelLoadError


def resolve_device(requested: str) -> str:
    """The device, "cpu" or "cuda", for a RAG_DEVICE value; cuda and no GPU: a load error."""
    if requested not in ("auto", "cpu", "cuda"):
        raise ModelLoadError(f"RAG_DEVICE is auto, cpu or cuda, not {requested!r}")
    if requested == "cpu":
        return "cpu"
    import torch

    available = torch.cuda.is_available()
    if requested == "cuda" and not available:
        built = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
        raise ModelLoadError(
            f"RAG_DEVICE=cuda, but torch {torch.__version__} ({built}) sees no CUDA GPU: "
            "install a CUDA build of torch and check nvidia-smi, or set RAG_DEVICE=auto or cpu"
        )
    return "cuda" if available else "cpu"


def computes_in_bf16() -> bool:
    """Whether the GPU has bf16 units (Ampere and later). torch's own check answers yes also
    for older cards that only emulate bf16, which is slower than their float32."""
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)


def generation_dtype(device: str) -> Any:
    """bfloat16 on a GPU that computes in it natively, float32 otherwise (the CPU included:
    torch's bf16 kernels there are slower than float32 on most CPUs and change the answers)."""
    import torch

    if device == "cuda" and computes_in_bf16():
        return torch.bfloat16
    return torch.float32


def model_device(model: Any) -> Any:
    """The device a torch module's weights live on (the CPU for one without weights, such as
    the stand-ins of the tests)."""
    import torch

    parameters = getattr(model, "parameters", None)
    first = next(iter(parameters()), None) if parameters is not None else None
    return first.device if first is not None else torch.device("cpu")


def on_device(inputs: Any, device: Any) -> Any:
    """A tokenizer's tensors moved to `device`; on the CPU the inputs themselves, untouched."""
    if str(device) == "cpu":
        return inputs
    return {name: value.to(device) for name, value in inputs.items()}


def training_precision(device: Any) -> contextlib.AbstractContextManager:
    """Mixed precision for a training step: bf16 autocast on a GPU that supports it, the
    weights and the optimiser's state kept in float32 (an update of 3e-4 is below bf16's
    resolution for most weights). On the CPU: nothing, float32 as before."""
    import torch

    kind = torch.device(device).type
    if kind == "cuda" and computes_in_bf16():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
