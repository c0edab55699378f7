"""Hole pre-fills: what the image generator G2 sees inside the hole (``model.hole_fill``).

- ``white``: the hole painted white (the EdgeConnect reference); G2 paints the whole hole.
- ``telea``: OpenCV's Telea fast-marching fill; G2 adds a correction to it.
- ``patchmatch``: PatchMatch (Barnes et al. 2009) copies real texture from the known region
  into the hole; G2 adds a correction to it along the edge guide. A small network cannot
  synthesise texture, an exemplar method can: this gives G2 that ability.

These run on numpy uint8 images: in DataLoader workers during training and per window in the
inference pipeline, never inside the networks.
"""

from __future__ import annotations

import cv2
import numpy as np

from edgefill.config import HOLE_FILLS
from edgefill.errors import EdgefillError

TELEA_RADIUS = 3  # OpenCV's documented example value
PATCHMATCH_RADIUS = 3  # pypatchmatch's patch_size is a radius: 7x7 patches
GREY = 128  # the fill of an image without a single known pixel


def telea(rgb: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """OpenCV Telea fill of ``hole`` (bool HxW) in ``rgb`` (uint8 HxWx3)."""
    return cv2.inpaint(rgb, hole.astype(np.uint8) * 255, TELEA_RADIUS, cv2.INPAINT_TELEA)


def patchmatch_unavailable() -> str | None:
    """Why the PatchMatch fill cannot run here (None when it can)."""
    try:
        import patchmatch
    except ImportError:
        return "the PyPI package pypatchmatch is not installed (pip install pypatchmatch)"
    except Exception as exc:  # the ctypes library can fail to load in many ways
        return f"pypatchmatch failed to load: {exc}"
    if not getattr(patchmatch, "patchmatch_available", False):
        return "pypatchmatch is installed but its compiled library did not load"
    return None


def patchmatch(rgb: np.ndarray, hole: np.ndarray, seed: int = 0) -> np.ndarray:
    """PatchMatch fill (7x7 patches); deterministic for a given ``seed``."""
    reason = patchmatch_unavailable()
    if reason is not None:
        raise EdgefillError(f"the PatchMatch hole fill cannot run: {reason}")
    import patchmatch as pm

    pm.set_random_seed(seed)  # the library's generator is global: seed right before each use
    return pm.inpaint(rgb, hole.astype(np.uint8), patch_size=PATCHMATCH_RADIUS)


def fill_hole(kind: str, rgb: np.ndarray, hole: np.ndarray, seed: int = 0) -> np.ndarray:
    """``rgb`` (uint8 HxWx3) with ``hole`` (bool HxW) pre-filled by ``kind`` (see HOLE_FILLS).

    Pixels outside the hole are returned exactly; an image without any known pixel is mid-grey
    for the classical fills (they have nothing to copy from).
    """
    if kind not in HOLE_FILLS:
        raise EdgefillError(f"hole fill must be one of {HOLE_FILLS}, got {kind!r}")
    hole = hole.astype(bool, copy=False)
    if not hole.any():
        return rgb.copy()
    rgb = np.ascontiguousarray(rgb)
    if kind == "white":
        fill = np.full_like(rgb, 255)
    elif hole.all():
        fill = np.full_like(rgb, GREY)
    elif kind == "telea":
        fill = telea(rgb, hole)
    else:
        fill = patchmatch(rgb, hole, seed)
    return np.where(hole[..., None], fill, rgb)
