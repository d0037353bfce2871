"""torchvision, importable beside a CPU-only torch.

torchvision's wheels are built against the CUDA build of torch. Beside the CPU build of the same
release (what ./run installs, to keep several GB of CUDA libraries off the disk), its C++ extension
cannot load, because it links libtorch_cuda. torchvision is made to run without that extension: the
extension holds only the detection operators (nms, roi_align, deform_conv2d...), which snip never
calls. Its import, though, registers fake kernels for torchvision::nms and torchvision::qnms without
first checking that the extension loaded, and so it fails with "operator torchvision::nms does not
exist". Declaring those two schemas before the import lets it finish. Calling a detection operator
then raises torchvision's own "Couldn't load custom C++ ops" error, as in any build without it.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from typing import Any

# The operators that torchvision's import registers fake kernels for unconditionally, with the
# schemas its extension would have declared.
_UNGUARDED_FAKE_KERNELS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}

# torch forgets a library's definitions when the Library object is collected.
_declared: list[Any] = []


def _extension_path() -> Path | None:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        finder = importlib.machinery.FileFinder(
            folder, (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES)
        )
        found = finder.find_spec("torchvision._C")
        if found is not None and found.origin:
            return Path(found.origin)
    return None


def _extension_loads(torch: Any, path: Path | None) -> bool:
    if path is None:
        return False
    try:
        # The same call torchvision makes; a second load of the same file is a no-op.
        torch.ops.load_library(str(path))
    except (OSError, ImportError, RuntimeError):
        return False
    return True


def ensure_torchvision_importable() -> bool:
    """Make ``import torchvision`` work; True when its C++ extension is loaded, False without it.

    Call it before the first import of torchvision. It does nothing when torchvision is already
    imported, is not installed (the import then fails as usual), or loads its extension.
    """
    if "torchvision" in sys.modules:
        return bool(sys.modules["torchvision"].extension._has_ops())
    if importlib.util.find_spec("torchvision") is None:
        return False
    import torch

    if _extension_loads(torch, _extension_path()):
        return True
    make_library: Any = torch.library.Library  # untyped in torch's stubs
    library = make_library("torchvision", "FRAGMENT")
    for name, schema in _UNGUARDED_FAKE_KERNELS.items():
        if not hasattr(torch.ops.torchvision, name):
            library.define(schema)
    _declared.append(library)
    return False
