"""Object selection without a model: a box and/or scribbles -> a proposed mask (OpenCV GrabCut).

    hole = select_object(rgb, box=(x0, y0, x1, y1))                 # bool HxW, True = object
    hole = select_object(rgb, box=box, scribbles=marks)              # marks: 255 object, 128 not

GrabCut (Rother et al., 2004) fits colour models to the object and its surroundings and cuts
along the strongest boundary between them. It needs no download and runs in well under a second
on the working size, so the web page can propose a mask the user then refines with the brush.
The proposal is grown by a few pixels: a fill must cover the object's outline and soft edge, or
a rim of the object stays visible around the hole.
"""

from __future__ import annotations

import cv2
import numpy as np

from edgefill.errors import EdgefillError
from edgefill.masks import check_grow, grow_hole

WORKING_SIZE = 640  # longest side GrabCut works at; the mask is scaled back to the photo
ITERATIONS = 5
GROW_FRACTION = 0.005  # default growth: 0.5 % of the photo's longer side (12 px at 2400 px)
OBJECT, NOT_OBJECT = 255, 128  # scribble values


def parse_box(text: str, width: int, height: int) -> tuple[int, int, int, int]:
    """``"x0,y0,x1,y1"`` (photo pixels, any corner order) as a box clipped to the photo."""
    try:
        x0, y0, x1, y1 = (round(float(v)) for v in text.split(","))
    except ValueError:
        raise EdgefillError(f"box must be four numbers x0,y0,x1,y1, got {text!r}") from None
    x0, x1 = sorted((min(max(x0, 0), width), min(max(x1, 0), width)))
    y0, y1 = sorted((min(max(y0, 0), height), min(max(y1, 0), height)))
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise EdgefillError(f"box {text!r} is too small: draw it around the object")
    return x0, y0, x1, y1


def default_grow(width: int, height: int) -> int:
    return max(2, round(GROW_FRACTION * max(width, height)))


def _initial_labels(
    shape: tuple[int, int], box: tuple[int, int, int, int] | None, scribbles: np.ndarray | None
) -> np.ndarray:
    """GrabCut's starting labels; scribbles are certain.

    With a box: probably object inside it, surely background outside (the user framed it).
    Without one: probably object around the object marks and probably background elsewhere, so
    the cut can grow to the whole object however little of it was marked.
    """
    h, w = shape
    labels = np.full((h, w), cv2.GC_BGD, np.uint8)
    obj = scribbles == OBJECT if scribbles is not None else None
    if box is None:
        if obj is None or not obj.any():
            raise EdgefillError("draw a box around the object or mark it with a scribble first")
        labels[:] = cv2.GC_PR_BGD
        ys, xs = np.nonzero(obj)
        pad = max(8, int(ys.max() - ys.min()), int(xs.max() - xs.min()))
        box = (xs.min() - pad, ys.min() - pad, xs.max() + pad + 1, ys.max() + pad + 1)
    x0, y0, x1, y1 = (int(v) for v in box)
    labels[max(y0, 0) : min(y1, h), max(x0, 0) : min(x1, w)] = cv2.GC_PR_FGD
    if scribbles is not None:
        labels[scribbles == NOT_OBJECT] = cv2.GC_BGD
        labels[obj] = cv2.GC_FGD
    return labels


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Close holes inside the selection (a shirt's logo is part of the person to remove)."""
    h, w = mask.shape
    flood = np.zeros((h + 2, w + 2), np.uint8)
    flood[1:-1, 1:-1] = mask
    cv2.floodFill(flood, None, (0, 0), 1)  # the border ring is all 0: floods the outside
    return mask | (flood[1:-1, 1:-1] == 0)


def select_object(
    rgb: np.ndarray,
    box: tuple[int, int, int, int] | None = None,
    scribbles: np.ndarray | None = None,
    grow: int | None = None,
) -> np.ndarray:
    """A proposed object mask (bool HxW) from a box (x0, y0, x1, y1) and/or scribbles.

    ``scribbles``: uint8 HxW, 255 = surely the object, 128 = surely not, 0 = unknown. Without a
    box the region around the object marks counts as possibly object. ``grow``: px added around
    the proposal so the fill covers the object's outline (None: see ``default_grow``).
    """
    h, w = rgb.shape[:2]
    if grow is None:
        grow = default_grow(w, h)
    if scribbles is not None and scribbles.shape != (h, w):
        raise EdgefillError(
            f"scribbles are {scribbles.shape[1]}x{scribbles.shape[0]} but the photo is {w}x{h}"
        )
    check_grow(grow)  # before GrabCut runs
    scale = min(1.0, WORKING_SIZE / max(h, w))
    sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
    small = rgb if scale == 1 else cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA)
    small_box = None if box is None else tuple(round(v * scale) for v in box)
    small_marks = None
    if scribbles is not None:
        small_marks = cv2.resize(scribbles, (sw, sh), interpolation=cv2.INTER_NEAREST)
    labels = _initial_labels((sh, sw), small_box, small_marks)  # type: ignore[arg-type]
    if not (labels == cv2.GC_PR_FGD).any() and not (labels == cv2.GC_FGD).any():
        raise EdgefillError("the box is too small at this photo's size: draw it larger")
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    bgr = np.ascontiguousarray(small[..., ::-1])
    cv2.setRNGSeed(0)  # GrabCut's k-means start: the same clicks give the same proposal
    try:
        cv2.grabCut(bgr, labels, None, bgd, fgd, ITERATIONS, cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # a box whose inside or outside has no pixels of one kind
        labels = _initial_labels((sh, sw), small_box, small_marks)  # type: ignore[arg-type]
    obj = ((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)).astype(np.uint8)
    obj = _fill_holes(obj).astype(np.uint8)
    if scale != 1:
        obj = cv2.resize(obj, (w, h), interpolation=cv2.INTER_LINEAR)
    return grow_hole(obj > 0, grow)
