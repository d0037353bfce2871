"""Bring your own animal model: a state_dict, TorchScript or safetensors file (or, trusted, a pickle).

The format is read from the file itself, not its name:

* safetensors: tensors only; the architecture comes from ``arch=`` or the file's metadata
  (``{"arch": ..., "mean": "[...]", "std": "[...]", "input_size": "224"}``, values JSON-encoded);
* TorchScript (a zip with ``code/``): the model itself; mean/std/input_size may ride along as an
  extra file ``meta.json``;
* ``torch.save`` output, loaded with ``weights_only=True``: a state_dict, or a checkpoint dict
  holding one under ``state_dict`` / ``model_state_dict`` / ``model`` with optional ``arch``,
  ``mean``, ``std`` (or ``normalization: {mean, std}``) and ``input_size``;
* a whole pickled model (``torch.save(model)``): unpickling runs arbitrary code from the file, so it
  is refused unless ``trust_pickle=True`` (``--trust-pickle``).

The architecture for a state_dict is any torchvision classification model name, built with as
many outputs as the labels file has classes. The loaded model is checked with one dummy forward
pass: its output must have one column per label.
"""

from __future__ import annotations

import json
import pickle
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apps.classifier.animal.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocessor
from apps.classifier.animal.vision import ensure_torchvision_importable
from apps.classifier.base import ClassifierError

STATE_KEYS = ("state_dict", "model_state_dict", "model")
DEFAULT_INPUT_SIZE = 224


@dataclass
class CustomModel:
    module: Any  # torch.nn.Module or torch.jit.ScriptModule, in eval mode, on the CPU
    preprocessor: Preprocessor
    kind: str  # "safetensors", "torchscript", "state_dict", "pickle"
    arch: str | None


def _is_safetensors(head: bytes, size: int) -> bool:
    return len(head) >= 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < size


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any("/code/" in name or name.endswith("/constants.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _meta_value(meta: Mapping[str, Any], key: str) -> Any:
    value = meta.get(key)
    if value is None and isinstance(meta.get("normalization"), Mapping):
        value = meta["normalization"].get(key)
    if isinstance(value, str) and key != "arch":
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ClassifierError(f"model metadata {key!r} is not JSON: {value!r}") from None
    tolist = getattr(value, "tolist", None)
    return tolist() if callable(tolist) else value


def _preprocessor(meta: Mapping[str, Any], input_size: int | None) -> Preprocessor:
    mean = _meta_value(meta, "mean") or IMAGENET_MEAN
    std = _meta_value(meta, "std") or IMAGENET_STD
    size = input_size or _meta_value(meta, "input_size") or DEFAULT_INPUT_SIZE
    if isinstance(size, list | tuple):
        size = size[-1]
    try:
        if len(mean) != 3 or len(std) != 3 or any(float(s) <= 0 for s in std):
            raise ValueError
        return Preprocessor.for_input(int(size), [float(m) for m in mean], [float(s) for s in std])
    except (TypeError, ValueError):
        raise ClassifierError(f"model normalisation must be three means and three positive stds, got mean={mean!r} std={std!r}") from None


def _build(arch: str | None, state: Mapping[str, Any], num_classes: int, path: Path) -> Any:
    ensure_torchvision_importable()
    from torchvision.models import get_model, list_models

    if not arch:
        raise ClassifierError(
            f"{path} holds weights only: name their architecture with --arch (arch=), a torchvision model "
            "name such as resnet18, or store 'arch' in the checkpoint"
        )
    if arch not in list_models():
        raise ClassifierError(f"unknown torchvision architecture {arch!r}")
    model = get_model(arch, weights=None, num_classes=num_classes)
    # Checkpoints saved from DataParallel prefix every key with "module.".
    cleaned = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        model.load_state_dict(cleaned)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        detail = " ".join(line.strip() for line in str(exc).splitlines()[1:3])
        raise ClassifierError(f"{path} does not fit {arch} with {num_classes} classes: {first} {detail}") from None
    return model


def _from_checkpoint(obj: Any, path: Path) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """(state_dict, metadata) from a torch.load result."""
    import torch

    if isinstance(obj, Mapping):
        for key in STATE_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                return inner, obj
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj, {}
    raise ClassifierError(f"{path} is neither a state_dict nor a checkpoint with one under {', '.join(STATE_KEYS)}")


def load_custom_model(
    path: str | Path,
    *,
    num_classes: int,
    arch: str | None = None,
    input_size: int | None = None,
    trust_pickle: bool = False,
) -> CustomModel:
    import torch

    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(16)
    except OSError as exc:
        raise ClassifierError(f"cannot read model file {path}: {exc.strerror or exc}") from None
    if _is_safetensors(head, size):
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as reader:
                metadata: dict[str, Any] = dict(reader.metadata() or {})
                state = {key: reader.get_tensor(key) for key in reader.keys()}  # noqa: SIM118 (not a dict)
        except (SafetensorError, OSError, ValueError) as exc:
            raise ClassifierError(f"cannot read safetensors file {path}: {exc}") from None
        chosen = arch or metadata.get("arch")
        custom = CustomModel(_build(chosen, state, num_classes, path), _preprocessor(metadata, input_size), "safetensors", chosen)
    elif head.startswith(b"PK\x03\x04") and _is_torchscript(path):
        extra = {"meta.json": ""}
        try:
            with warnings.catch_warnings():  # TorchScript is deprecated upstream but still what users have
                warnings.simplefilter("ignore", FutureWarning)
                module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)  # type: ignore[no-untyped-call]
        except Exception as exc:
            raise ClassifierError(f"cannot load TorchScript model {path}: {type(exc).__name__}: {exc}") from None
        try:
            meta = json.loads(extra["meta.json"]) if extra["meta.json"] else {}
        except json.JSONDecodeError:
            raise ClassifierError(f"{path}: meta.json inside the TorchScript file is not JSON") from None
        custom = CustomModel(module, _preprocessor(meta, input_size), "torchscript", None)
    else:
        custom = _load_torch_save(path, num_classes, arch, input_size, trust_pickle)
    custom.module.eval()
    _check_outputs(custom, num_classes, path)
    return custom


def _load_torch_save(path: Path, num_classes: int, arch: str | None, input_size: int | None, trust_pickle: bool) -> CustomModel:
    import torch

    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
        kind = "state_dict"
    except pickle.UnpicklingError as exc:
        if not trust_pickle:
            if "Unsupported global" in str(exc):  # the pickle names classes or functions to call
                raise ClassifierError(
                    f"{path} is a pickled Python object (such as a whole model saved with torch.save(model)); "
                    "unpickling it can run arbitrary code. Re-save it as a state_dict, TorchScript or "
                    "safetensors, or pass --trust-pickle (trust_pickle=True) if you trust where it came from"
                ) from None
            raise ClassifierError(
                f"{path} is not a model file torch can read safely (state_dict, checkpoint, TorchScript or "
                "safetensors); if it is a pickle you trust, pass --trust-pickle"
            ) from None
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=False)
        except Exception as exc:
            raise ClassifierError(f"cannot unpickle {path}: {type(exc).__name__}: {exc}") from None
        kind = "pickle"
    except Exception as exc:
        raise ClassifierError(f"{path} is not a model file torch can read: {type(exc).__name__}: {exc}") from None
    if isinstance(obj, torch.nn.Module):
        return CustomModel(obj, _preprocessor({}, input_size), kind, type(obj).__name__)
    state, meta = _from_checkpoint(obj, path)
    chosen = arch or (meta.get("arch") if isinstance(meta.get("arch"), str) else None)
    return CustomModel(_build(chosen, state, num_classes, path), _preprocessor(meta, input_size), kind, chosen)


def _check_outputs(custom: CustomModel, num_classes: int, path: Path) -> None:
    import torch

    probe = torch.zeros(1, 3, custom.preprocessor.crop_size, custom.preprocessor.crop_size)
    try:
        with torch.inference_mode():
            output = custom.module(probe)
    except Exception as exc:
        raise ClassifierError(f"model {path} fails on a test input: {type(exc).__name__}: {exc}") from None
    shape = tuple(getattr(output, "shape", ()))
    if shape != (1, num_classes):
        raise ClassifierError(f"model {path} outputs shape {shape} for one image; the labels file has {num_classes} classes")
