"""torchvision beside the torch ./run installs: the import works, models run, detection ops fail clearly.

Each case runs in a fresh interpreter, because the point is what happens on the first import.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _fresh(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120, check=False
    )


def test_torchvision_imports_and_runs_a_model_after_the_guard() -> None:
    result = _fresh(
        """
        import torch
        from apps.classifier.animal.vision import ensure_torchvision_importable

        has_ops = ensure_torchvision_importable()
        import torchvision
        from torchvision.models import get_model

        assert has_ops == torchvision.extension._has_ops(), has_ops
        assert ensure_torchvision_importable() == has_ops  # a second call, after the import, agrees
        torch.manual_seed(0)
        model = get_model("resnet18", weights=None, num_classes=7).eval()
        with torch.no_grad():
            out = model(torch.rand(2, 3, 64, 64))
        assert tuple(out.shape) == (2, 7), out.shape
        print("ops" if has_ops else "no-ops")
        if not has_ops:
            try:
                torchvision.ops.nms(torch.zeros(2, 4), torch.zeros(2), 0.5)
            except RuntimeError as error:
                print("nms:", error)
        """
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] in ("ops", "no-ops")
    if lines[0] == "no-ops":
        # A detection operator without the extension fails with torchvision's own explanation.
        assert lines[1].startswith("nms: Couldn't load custom C++ ops"), lines

