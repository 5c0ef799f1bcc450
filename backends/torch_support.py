"""What every torch-based backend (Cheetah, compiled Cheetah, the in-house tracker) needs
from torch, written once: dtype names, device checks and synchronisation.

torch is imported inside the functions, so importing an adapter never imports torch (the
registry lists backends without loading their codes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from backends.base import Unsupported

if TYPE_CHECKING:
    import torch

#: dtype names of the torch backends, in report order.
TORCH_DTYPES: tuple[str, ...] = ("float64", "float32")
#: Device types of the torch backends.
TORCH_DEVICES: tuple[str, ...] = ("cpu", "cuda")


def torch_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """The torch dtype of a dtype name (``float64`` or ``float32``); a torch dtype as is."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    return {"float64": torch.float64, "float32": torch.float32}[dtype]


def device_support(backend: str, device: str, dtype: str) -> Unsupported | None:
    """Why a torch backend cannot run on ``device`` in ``dtype`` (None when it can): an
    unknown dtype or device type, or CUDA asked for where torch has no usable GPU."""
    if dtype not in TORCH_DTYPES:
        return Unsupported(f"dtype {dtype!r}: {backend} runs {' or '.join(TORCH_DTYPES)}")
    import torch

    try:
        device_type = torch.device(device).type
    except (RuntimeError, TypeError):
        device_type = str(device)
    if device_type not in TORCH_DEVICES:
        return Unsupported(f"device {device!r}: {backend} runs on cpu or cuda")
    if device_type == "cuda" and not torch.cuda.is_available():
        return Unsupported("CUDA requested but torch.cuda.is_available() is False "
                           f"(torch {torch.__version__} build without a usable GPU)")
    return None


def synchronize(device: Any) -> None:
    """Wait for the work queued on a CUDA device (nothing to wait for on the CPU)."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def cuda_synchronizer(device: Any):
    """``torch.cuda.synchronize`` for a CUDA device, else None (a timing loop's hook)."""
    if not str(device).startswith("cuda"):
        return None
    import torch

    return torch.cuda.synchronize


__all__ = ["TORCH_DEVICES", "TORCH_DTYPES", "cuda_synchronizer", "device_support",
           "synchronize", "torch_dtype"]
