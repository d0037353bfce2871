"""Pick the torch device: CUDA when present, otherwise the CPU, unless the caller names one."""

from __future__ import annotations

from apps.classifier.base import ClassifierError

AUTO = "auto"


def resolve_device(requested: str | None = None) -> str:
    """ "auto"/None -> "cuda" or "cpu"; anything else is checked ("cuda:1" on a one-GPU host fails)."""
    import torch

    if requested in (None, "", AUTO):
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(str(requested))
    except (RuntimeError, ValueError) as exc:
        raise ClassifierError(f"invalid device {requested!r}: {exc}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ClassifierError(f"device {requested!r} requested but CUDA is not available here; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ClassifierError(f"device {requested!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif device.type != "cpu":
        backend = getattr(torch.backends, device.type, None)
        available = getattr(backend, "is_available", None)
        if available is None or not available():
            raise ClassifierError(f"device {requested!r} is not available here; use --device cpu")
    return str(device)
