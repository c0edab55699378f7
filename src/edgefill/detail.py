"""Full-resolution detail for a fill made at reduced size (the crop / resize HD strategies).

    out = restore_detail(photo, hole, up, small, small_hole)   # uint8 HxWx3

A window too large for the networks is filled at a reduced size ``small`` (h x w) and upscaled
to ``up`` (H x W): the structure is right, but everything finer than the reduced grid is gone
and the fill looks like a blur next to the grain and texture of the scan around it. The missing
band is copied from the known part of the photo, by patch matching guided by the fill:

1. The reduced composite (known pixels + the network's fill) is cut into BLOCK x BLOCK blocks;
   each block that touches the hole, with CONTEXT px around it, is matched (sum of squared
   differences, ``cv2.matchTemplate``) against every position within SEARCH px whose pixels are
   all known. The best match is where the photo looks, at the reduced scale, like the fill.
2. At full size the photo's own high band, ``photo - upscale(downscale(photo))`` (exactly what
   the round trip through the reduced size removes), is read at the matched position scaled
   up, and added to ``up`` on the block's hole pixels. Source pixels that lie in the hole add
   nothing.

Known pixels are never touched (the caller pastes only hole pixels anyway). Cost: one
``matchTemplate`` per block over a (2 * SEARCH + block) square of the reduced image.
"""

from __future__ import annotations

import cv2
import numpy as np

BLOCK = 6  # reduced-scale px per matched block
CONTEXT = 4  # reduced-scale px of surroundings matched with each block
SEARCH = 40  # reduced-scale px searched in each direction


def high_band(photo: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``photo - upscale(downscale(photo))`` (int16): the detail lost at ``size`` (h, w), with
    the same resampling the pipeline uses (area down, bicubic up)."""
    h, w = size
    hh, ww = photo.shape[:2]
    small = cv2.resize(photo, (w, h), interpolation=cv2.INTER_AREA)
    back = cv2.resize(small, (ww, hh), interpolation=cv2.INTER_CUBIC)
    return cv2.subtract(photo, back, dtype=cv2.CV_16S)


def _all_known(hole: np.ndarray, th: int, tw: int) -> np.ndarray:
    """valid[y, x]: the th x tw box with top-left (y, x) holds no hole pixel (integral image)."""
    ii = cv2.integral(hole.astype(np.uint8))
    h, w = hole.shape
    count = ii[th : h + 1, tw : w + 1] - ii[: h + 1 - th, tw : w + 1]
    count = count - ii[th : h + 1, : w + 1 - tw] + ii[: h + 1 - th, : w + 1 - tw]
    return count == 0


def restore_detail(
    photo: np.ndarray,
    hole: np.ndarray,
    up: np.ndarray,
    small: np.ndarray,
    small_hole: np.ndarray,
    block: int = BLOCK,
    context: int = CONTEXT,
    search: int = SEARCH,
) -> np.ndarray:
    """``up`` (uint8 HxWx3, the upscaled reduced fill) with the photo's high band copied into
    ``hole`` (bool HxW) by patch matching on ``small`` (uint8 hxwx3, the reduced composite) with
    ``small_hole`` (bool hxw, the reduced hole). ``photo``: uint8 HxWx3, the window at full size.
    """
    hh, ww = hole.shape
    h, w = small_hole.shape
    out = up.copy()
    if not hole.any() or small_hole.all() or (h, w) == (hh, ww):
        return out
    band = high_band(photo, (h, w))
    sy, sx = hh / h, ww / w
    ref = small.astype(np.float32)
    for y0 in range(0, h, block):
        for x0 in range(0, w, block):
            y1, x1 = min(y0 + block, h), min(x0 + block, w)
            if not small_hole[y0:y1, x0:x1].any():
                continue
            ty0, tx0 = max(0, y0 - context), max(0, x0 - context)
            ty1, tx1 = min(h, y1 + context), min(w, x1 + context)
            templ = ref[ty0:ty1, tx0:tx1]
            th, tw = ty1 - ty0, tx1 - tx0
            ry0, rx0 = max(0, ty0 - search), max(0, tx0 - search)
            ry1, rx1 = min(h, ty1 + search), min(w, tx1 + search)
            region = ref[ry0:ry1, rx0:rx1]
            if region.shape[0] < th or region.shape[1] < tw:
                continue
            valid = _all_known(small_hole[ry0:ry1, rx0:rx1], th, tw)
            if not valid.any():
                continue
            score = cv2.matchTemplate(region, templ, cv2.TM_SQDIFF)
            score[~valid] = np.inf
            my, mx = np.unravel_index(int(np.argmin(score)), score.shape)
            dy, dx = ry0 + my - ty0, rx0 + mx - tx0  # reduced-scale offset of the match
            fy0, fy1 = round(y0 * sy), round(y1 * sy)
            fx0, fx1 = round(x0 * sx), round(x1 * sx)
            mine = hole[fy0:fy1, fx0:fx1]
            if not mine.any():
                continue
            oy, ox = round(dy * sy), round(dx * sx)
            sy0 = min(max(fy0 + oy, 0), hh - (fy1 - fy0))
            sx0 = min(max(fx0 + ox, 0), ww - (fx1 - fx0))
            src = (slice(sy0, sy0 + fy1 - fy0), slice(sx0, sx0 + fx1 - fx0))
            detail = band[src][mine]
            detail[hole[src][mine]] = 0  # damaged pixels carry no detail worth copying
            target = out[fy0:fy1, fx0:fx1]
            target[mine] = np.clip(target[mine] + detail, 0, 255).astype(np.uint8)
    return out
