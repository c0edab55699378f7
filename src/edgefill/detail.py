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
   A block deeper in the hole than that search reaches (the middle of a large hole) is matched
   against the whole window instead, on a GLOBAL_STRIDE px grid of all-known positions (one
   matrix product for all such blocks); before, those blocks got no detail and the middle of a
   large hole stayed a blur inside a ring of restored grain.
2. At full size the photo's own high band, ``photo - upscale(downscale(photo))`` (exactly what
   the round trip through the reduced size removes), is read at the matched position scaled
   up, and added to ``up`` on the block's hole pixels. Source pixels that lie in the hole add
   nothing.

Known pixels are never touched (the caller pastes only hole pixels anyway). Cost: one
``matchTemplate`` per block over a (2 * SEARCH + block) square of the reduced image, plus for the
deep blocks one (blocks x candidates) product of their templates with the grid's patches.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

BLOCK = 6  # reduced-scale px per matched block
CONTEXT = 4  # reduced-scale px of surroundings matched with each block
SEARCH = 40  # reduced-scale px searched in each direction
GLOBAL_STRIDE = 4  # reduced-scale grid of the candidates for blocks beyond SEARCH of known ones
GLOBAL_CHUNK = 512  # deep blocks scored at once (bounds the score matrix: chunk x candidates)

Box = tuple[int, int, int, int]  # y0, x0, y1, x1 at the reduced scale


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
    workers: int = 1,
) -> np.ndarray:
    """``up`` (uint8 HxWx3, the upscaled reduced fill) with the photo's high band copied into
    ``hole`` (bool HxW) by patch matching on ``small`` (uint8 hxwx3, the reduced composite) with
    ``small_hole`` (bool hxw, the reduced hole). ``photo``: uint8 HxWx3, the window at full size.
    ``workers`` threads share the local search by rows of blocks (OpenCV releases the GIL; rows
    of blocks write disjoint rows of the result): the same result for any number.
    """
    hh, ww = hole.shape
    h, w = small_hole.shape
    out = up.copy()
    if not hole.any() or small_hole.all() or (h, w) == (hh, ww):
        return out
    band = high_band(photo, (h, w))
    scale = (hh / h, ww / w)
    ref = small.astype(np.float32)

    def match_rows(rows: range) -> list[tuple[Box, Box]]:
        """Local search for the blocks of ``rows``; returns the blocks it found too deep."""
        deep = []
        for y0 in rows:
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
                region = ref[ry0:ry1, rx0:rx1]  # holds the template's own box: never smaller
                valid = _all_known(small_hole[ry0:ry1, rx0:rx1], th, tw)
                if not valid.any():
                    deep.append(((y0, x0, y1, x1), (ty0, tx0, ty1, tx1)))
                    continue
                score = cv2.matchTemplate(region, templ, cv2.TM_SQDIFF)
                score[~valid] = np.inf
                my, mx = np.unravel_index(int(np.argmin(score)), score.shape)
                offset = (ry0 + my - ty0, rx0 + mx - tx0)  # reduced-scale offset of the match
                _add_detail(out, band, hole, (y0, x0, y1, x1), offset, scale)
        return deep

    rows = range(0, h, block)
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            parts = list(pool.map(match_rows, [rows[k::workers] for k in range(workers)]))
    else:
        parts = [match_rows(rows)]
    deep = [entry for part in parts for entry in part]
    for (blk, _), offset in zip(
        deep, _global_offsets(ref, small_hole, [t for _, t in deep]), strict=True
    ):
        if offset is not None:
            _add_detail(out, band, hole, blk, offset, scale)
    return out


def _global_offsets(
    ref: np.ndarray, small_hole: np.ndarray, boxes: list[Box]
) -> list[tuple[int, int] | None]:
    """For each template box (ty0, tx0, ty1, tx1) of ``ref`` (float32 hxwx3), the offset to the
    all-known position on the GLOBAL_STRIDE grid with the least sum of squared differences
    (None when the window has no such position): ``|c|^2 - 2 t.c`` for all candidates c at once."""
    offsets: list[tuple[int, int] | None] = [None] * len(boxes)
    by_shape: dict[tuple[int, int], list[int]] = {}
    for i, (ty0, tx0, ty1, tx1) in enumerate(boxes):
        by_shape.setdefault((ty1 - ty0, tx1 - tx0), []).append(i)
    for (th, tw), ids in by_shape.items():  # boxes lie inside the window: th <= h, tw <= w
        ys, xs = np.nonzero(_all_known(small_hole, th, tw)[::GLOBAL_STRIDE, ::GLOBAL_STRIDE])
        if not len(ys):
            continue
        ys, xs = ys * GLOBAL_STRIDE, xs * GLOBAL_STRIDE
        patches = np.lib.stride_tricks.sliding_window_view(ref, (th, tw), axis=(0, 1))
        cand = patches[ys, xs].reshape(len(ys), -1)  # (K, 3 * th * tw)
        norms = np.einsum("kd,kd->k", cand, cand)
        for c0 in range(0, len(ids), GLOBAL_CHUNK):
            chunk = ids[c0 : c0 + GLOBAL_CHUNK]
            templ = np.stack(
                [
                    ref[b[0] : b[2], b[1] : b[3]].transpose(2, 0, 1).reshape(-1)
                    for b in (boxes[i] for i in chunk)
                ]
            )
            best = np.argmin(norms[None] - 2 * templ @ cand.T, axis=1)
            for i, k in zip(chunk, best, strict=True):
                offsets[i] = (int(ys[k]) - boxes[i][0], int(xs[k]) - boxes[i][1])
    return offsets


def _add_detail(
    out: np.ndarray,
    band: np.ndarray,
    hole: np.ndarray,
    blk: Box,
    offset: tuple[int, int],
    scale: tuple[float, float],
) -> None:
    """Add to ``out``'s hole pixels of the reduced-scale block ``blk`` (y0, x0, y1, x1) the photo's
    high band found ``offset`` (reduced px) away, both scaled to full size by ``scale``."""
    (y0, x0, y1, x1), (dy, dx), (sy, sx) = blk, offset, scale
    hh, ww = hole.shape
    fy0, fy1 = round(y0 * sy), round(y1 * sy)
    fx0, fx1 = round(x0 * sx), round(x1 * sx)
    mine = hole[fy0:fy1, fx0:fx1]
    if not mine.any():
        return
    oy, ox = round(dy * sy), round(dx * sx)
    sy0 = min(max(fy0 + oy, 0), hh - (fy1 - fy0))
    sx0 = min(max(fx0 + ox, 0), ww - (fx1 - fx0))
    src = (slice(sy0, sy0 + fy1 - fy0), slice(sx0, sx0 + fx1 - fx0))
    detail = band[src][mine]
    detail[hole[src][mine]] = 0  # damaged pixels carry no detail worth copying
    target = out[fy0:fy1, fx0:fx1]
    target[mine] = np.clip(target[mine] + detail, 0, 255).astype(np.uint8)
