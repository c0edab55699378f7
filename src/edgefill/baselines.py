"""Classical inpainting baselines behind one interface, for comparisons with the model.

Every method takes an RGB uint8 HxWx3 photo and a bool HxW hole (True = hole) and returns an
RGB uint8 HxWx3 photo whose pixels outside the hole are bit-identical to the input: each raw
result is composed with the photo (``compose``), whatever the library did outside the hole.

| name       | method                                                    | library                        |
|------------|-----------------------------------------------------------|--------------------------------|
| telea      | fast marching (Telea 2004), radius 3                      | OpenCV ``cv2.inpaint``         |
| ns         | Navier-Stokes fluid diffusion (Bertalmio et al. 2001)     | OpenCV ``cv2.inpaint``         |
| biharmonic | biharmonic equation, smooth continuation                  | scikit-image                   |
| fsr        | frequency-selective reconstruction, fast variant          | OpenCV contrib ``cv2.xphoto``  |
| patchmatch | exemplar-based PatchMatch (Barnes et al. 2009), 7x7 patch | PyPI ``pypatchmatch``          |

FSR's "best" variant is not offered: it took about 90 s per 256x256 photo on 2 CPU cores.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from edgefill import prefill
from edgefill.config import BASELINES
from edgefill.errors import EdgefillError

RADIUS = 3  # neighbourhood radius of Telea / Navier-Stokes, OpenCV's documented example value


def compose(result: np.ndarray, image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """``result`` inside the hole, ``image`` everywhere else (uint8 HxWx3)."""
    return np.where(hole[..., None], result, image).astype(np.uint8)


def _check(image: np.ndarray, hole: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise EdgefillError(
            f"baseline input must be RGB uint8 HxWx3, got {image.shape} {image.dtype}"
        )
    if hole.shape != image.shape[:2]:
        raise EdgefillError(f"mask is {hole.shape[::-1]} but the photo is {image.shape[1::-1]}")


def _telea(image: np.ndarray, hole: np.ndarray, seed: int) -> np.ndarray:
    return prefill.telea(image, hole)


def _ns(image: np.ndarray, hole: np.ndarray, seed: int) -> np.ndarray:
    return cv2.inpaint(image, hole.astype(np.uint8) * 255, RADIUS, cv2.INPAINT_NS)


def _biharmonic(image: np.ndarray, hole: np.ndarray, seed: int) -> np.ndarray:
    from skimage.restoration import inpaint_biharmonic

    out = inpaint_biharmonic(image, hole, channel_axis=-1)  # float in [0, 1]
    return np.clip(np.round(out * 255), 0, 255).astype(np.uint8)


def _fsr(image: np.ndarray, hole: np.ndarray, seed: int) -> np.ndarray:
    bgr = prefill.fsr(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), hole)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _patchmatch(image: np.ndarray, hole: np.ndarray, seed: int) -> np.ndarray:
    return prefill.patchmatch(image, hole, seed)


_METHODS: dict[str, Callable[[np.ndarray, np.ndarray, int], np.ndarray]] = {
    "telea": _telea,
    "ns": _ns,
    "biharmonic": _biharmonic,
    "fsr": _fsr,
    "patchmatch": _patchmatch,
}


def unavailable_reason(name: str) -> str | None:
    """Why baseline ``name`` cannot run here (None when it can)."""
    if name not in _METHODS:
        return f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}"
    if name == "fsr":
        return prefill.fsr_unavailable()
    if name == "patchmatch":
        return prefill.patchmatch_unavailable()
    return None


def inpaint(name: str, image: np.ndarray, hole: np.ndarray, seed: int = 0) -> np.ndarray:
    """Fill ``hole`` in ``image`` with baseline ``name``; pixels outside the hole never change."""
    reason = unavailable_reason(name)
    if reason is not None:
        raise EdgefillError(f"baseline {name} is unavailable: {reason}")
    _check(image, hole)
    hole = hole.astype(bool)
    if not hole.any():
        return image.copy()
    image = np.ascontiguousarray(image)
    return compose(_METHODS[name](image, hole, seed), image, hole)
