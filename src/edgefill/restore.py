"""Restore a damaged photo in one call: detect the damage, inpaint it, refine the result.

    from edgefill.restore import restore
    r = restore("old_print.jpg")                   # detects scratches and dust itself
    r.save("restored.png"); r.save_side_by_side("before_after.png")

With ``mask`` the detection is skipped and that mask is the hole.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgefill.detect import DEFAULT_SENSITIVITY, detect_damage
from edgefill.image import (
    DEFAULT_MAX_PIXELS,
    ImageInput,
    ImageMeta,
    compose_deep,
    load_photo,
    save_image,
)
from edgefill.masks import prepare_inputs
from edgefill.pipeline import Inpainter
from edgefill.refine import RefineParams, refine


@dataclass
class RestoreResult:
    image: np.ndarray  # uint8 HxWx3, the restored photo
    before: np.ndarray  # uint8 HxWx3, the photo as it came in
    mask: np.ndarray  # bool HxW, the pixels that were repaired
    edges: np.ndarray  # float32 HxW, the composite edge map used for completion
    detected: bool  # True when the mask came from the damage detector
    alpha: np.ndarray | None = None
    deep: np.ndarray | None = None  # the photo's 16-bit samples, kept outside the repairs
    meta: ImageMeta | None = None  # ICC profile, EXIF, DPI: kept on the restored photo

    def save(self, path: str | Path, quality: int | None = None) -> Path:
        if self.deep is not None:
            arr = compose_deep(self.deep, self.image, self.mask)
        else:
            arr = self.image if self.alpha is None else np.dstack([self.image, self.alpha])
        return save_image(path, arr, quality, self.meta)

    def save_mask(self, path: str | Path) -> Path:
        return save_image(path, self.mask.astype(np.uint8) * 255)

    def side_by_side(self, outline: bool = False) -> np.ndarray:
        return side_by_side(self.before, self.image, self.mask if outline else None)

    def save_side_by_side(self, path: str | Path, outline: bool = False) -> Path:
        return save_image(path, self.side_by_side(outline))


def side_by_side(
    before: np.ndarray, after: np.ndarray, mask: np.ndarray | None = None, gap: int = 8
) -> np.ndarray:
    """Before | after on one canvas (white gutter), labelled; ``mask`` outlines the repairs."""
    h, w = before.shape[:2]
    left = before.copy()
    if mask is not None and mask.any():
        contours, _ = cv2.findContours(
            mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
        )
        cv2.drawContours(left, contours, -1, (255, 40, 40), max(1, round(min(h, w) / 400)))
    canvas = np.full((h, 2 * w + gap, 3), 255, np.uint8)
    canvas[:, :w] = left
    canvas[:, w + gap :] = after
    scale = max(0.4, min(h, w) / 600)
    thick = max(1, round(scale * 2))
    for text, x0 in (("before", 0), ("after", w + gap)):
        org = (x0 + round(10 * scale), round(30 * scale))
        cv2.putText(canvas, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2)
        cv2.putText(canvas, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick)
    return canvas


def restore(
    image: ImageInput,
    mask: ImageInput | None = None,
    inpainter: Inpainter | None = None,
    kind: str = "auto",
    sensitivity: float = DEFAULT_SENSITIVITY,
    method: str = "auto",
    refine_result: bool = True,
    refine_params: RefineParams | None = None,
    resize_mask: bool = False,
    mask_threshold: int = 1,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> RestoreResult:
    """Detect (unless ``mask`` is given) -> inpaint -> refine.

    ``inpainter``: a loaded model (default: ``Inpainter.from_pretrained()``, the shipped weights).
    ``kind``, ``sensitivity``, ``method``: passed to ``detect_damage``. A detected mask that is
    empty returns the photo unchanged (``mask`` all False).
    """
    photo = load_photo(image, max_pixels)
    if mask is not None:  # the one photo+mask path (masks.prepare_inputs); the alpha is kept
        photo, hole, _ = prepare_inputs(photo, mask, resize_mask, mask_threshold, max_pixels)
        detected = False
    else:  # the photo alone; its alpha channel is kept, not taken as a mask
        hole = detect_damage(photo.rgb, kind, sensitivity, method)
        detected = True
    rgb, alpha, extra = photo.rgb, photo.alpha, (photo.deep, photo.meta)
    h, w = rgb.shape[:2]
    if not hole.any():  # nothing found (or an empty mask): the photo comes back as it was
        edges = np.zeros((h, w), np.float32)
        return RestoreResult(rgb.copy(), rgb, hole, edges, detected, alpha, *extra)
    inpainter = inpainter or Inpainter.from_pretrained()
    result, edges = inpainter.inpaint_arrays(rgb, hole)
    if refine_result:
        result = refine(result, hole, edges, params=refine_params)
    return RestoreResult(result, rgb, hole, edges, detected, alpha, *extra)
