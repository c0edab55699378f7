"""edgefill: edge-guided photo inpainting (EdgeConnect, Nazeri et al. 2019).

from edgefill import Inpainter
result = Inpainter.from_pretrained()("photo.jpg", "mask.png")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgefill.errors import EdgefillError

if TYPE_CHECKING:
    from edgefill.pipeline import Inpainter, InpaintResult

__version__ = "0.1.0"
__all__ = ["EdgefillError", "InpaintResult", "Inpainter", "__version__"]

# The public API, imported on first use: ``import edgefill`` (and ``edgefill --help``) must not
# pay for torch.
_LAZY = {
    "Inpainter": "edgefill.pipeline",
    "InpaintResult": "edgefill.pipeline",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edgefill' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
