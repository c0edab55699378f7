"""Hole pre-fills: what the image generator G2 sees inside the hole (``model.hole_fill``).

- ``white``: the hole painted white (the EdgeConnect reference); G2 paints the whole hole.
- ``telea``: OpenCV's Telea fast-marching fill; G2 adds a correction to it. Thin hole parts
  (scratches, hairs: no pixel more than THIN_RADIUS px from a known one) get a biharmonic
  interpolation instead, which continues the gradients across a scratch where Telea leaves a
  seam, unless the pixels around them look like a damage rim the mask missed (``rim_offsets``):
  the biharmonic fill would carry the rim's gradient into the hole, so those keep Telea's.
- ``patchmatch``: PatchMatch (Barnes et al. 2009) copies real texture from the known region
  into the hole; G2 adds a correction to it along the edge guide. A small network cannot
  synthesise texture, an exemplar method can: this gives G2 that ability.

``exemplar_fill`` is the copy a ``model.exemplar`` G2 blends with: PatchMatch's, except on thin
hole parts, which get the smooth fill with some of PatchMatch's grain and, within a time budget,
half their luminance from OpenCV's frequency-selective reconstruction (``fsr_luma``).

These run on numpy uint8 images: in DataLoader workers during training and per window in the
inference pipeline, never inside the networks.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
import torch

from edgefill.config import HOLE_FILLS
from edgefill.errors import EdgefillError
from edgefill.image import resize_hole

TELEA_RADIUS = 3  # OpenCV's documented example value
THIN_RADIUS = 5.0  # px: hole components whose farthest pixel is this close to a known one are thin
# Grey levels: thin components whose rim is further off keep Telea's fill. Chosen on 16 training
# photos at 256 px (model card, session 10): damage with soft rims (``bench_detect.cases``) and
# clean scratch masks; their components' median offsets are 4.1 and 0.4.
RIM_TOLERANCE = 2.0
PATCHMATCH_RADIUS = 3  # pypatchmatch's patch_size is a radius: 7x7 patches
GREY = 128  # the fill of an image without a single known pixel
GUIDE_REACH = 6.0  # px: distances to the nearest edge beyond this count as "far from edges"
GUIDE_WEIGHT = 1.0  # default weight of the edge guide against the patch distance
# px: the guide splits the photo into the regions between edges (``edge_guide_map``) after
# widening each edge line by this much on either side, which closes the small gaps Canny leaves
# in contours. Through the release's G2 for drawn edges, on 24 training photos with true edges
# (model card, session 34), hole-LPIPS at 30-40 / 40-50 / 50-60 %: no regions 0.3557 / 0.4010 /
# 0.4211, REGION_CLOSE 1: 0.3548 / 0.3991 / 0.4205, 2: 0.3534 / 0.3954 / 0.4168.
REGION_CLOSE = 2
GOLDEN = (5**0.5 - 1) / 2
# The inference pipeline runs PatchMatch on windows larger than this (px, longer side) at the
# reduced size and upscales its fill: half the side costs a quarter of the time (a 512 px photo
# with a 20 % hole: about 0.8 s instead of 2.7 s on the project's busy CPU) and, on 12 training
# photos at 512 px, raised the fill's LPIPS from 0.097 to 0.100 (model card, session 9). G2 then
# corrects the fill at full size. Training crops and the 256 px evaluation never reach it.
PATCHMATCH_MAX_SIDE = 256
# The copy a ``model.exemplar`` G2 blends with keeps, on thin hole parts, the smooth fill plus
# this share of PatchMatch's fine detail (its difference to a Gaussian blur of this sigma, px).
# Chosen on 24 training photos with thin scratches (model card, session 11): PatchMatch's copy
# alone 0.00707 LPIPS / 40.94 dB, the smooth fill 0.00791 / 41.71, with half the detail 0.00703 /
# 41.75, with all of it 0.00671 / 41.39.
THIN_DETAIL = 0.5
THIN_DETAIL_SIGMA = 1.0
# Half of the thin parts' luminance then comes from OpenCV's frequency-selective reconstruction
# (FSR, fast profile, ``fsr_luma``): it continues local texture and edges across a scratch, and
# its errors are not the smooth fill's or the copy's, so the average beats all three. On 43
# training photos with thin scratches, pasted alone (model card, session 13): FSR 0.00721 LPIPS /
# 43.93 dB, the fill above 0.00777 / 43.60, the half-and-half mix 0.00680 / 44.34.
THIN_FSR = 0.5
# FSR costs about 0.1-0.15 ms per thin pixel on one core (luminance only; 1.0 s for 7,577 px),
# so a window with more thin pixels than this (about 0.6 s of FSR, half of what the networks take
# at the 512 px working size) keeps the fill without it rather than break the time budget: 1 %
# scratches on a 4000x3000 photo, one 384x512 window, would have taken 0.6 s longer (2.5 s).
THIN_FSR_MAX_PIXELS = 5000
FSR_BLOCK = 16  # OpenCV's FSR works on blocks of this size (px)
FSR_MARGIN = 64  # px of context around the thin parts FSR sees (32 px lost 0.00015 LPIPS)
EXEMPLAR = "exemplar"  # fill_batch's name for exemplar_fill


def telea(rgb: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """OpenCV Telea fill of ``hole`` (bool HxW) in ``rgb`` (uint8 HxWx3)."""
    return cv2.inpaint(rgb, hole.astype(np.uint8) * 255, TELEA_RADIUS, cv2.INPAINT_TELEA)


def thin_parts(hole: np.ndarray, radius: float = THIN_RADIUS) -> np.ndarray:
    """The hole's connected components (8-connected) none of whose pixels lies more than
    ``radius`` px from a known pixel: scratches and hairs, not blobs or strokes."""
    h8 = hole.astype(np.uint8)
    n, labels = cv2.connectedComponents(h8, connectivity=8)
    if n <= 1:
        return np.zeros_like(hole, dtype=bool)
    dist = cv2.distanceTransform(h8, cv2.DIST_L2, 3)
    deepest = np.zeros(n, np.float32)
    inside = hole.astype(bool)
    np.maximum.at(deepest, labels[inside], dist[inside])  # hole pixels only: few on a big scan
    thin = deepest <= radius
    thin[0] = False  # label 0: the known pixels
    return thin[labels]


def _biharmonic_values(rgb: np.ndarray, hole: np.ndarray) -> tuple[np.ndarray, ...]:
    """(ys, xs, values float64 NxC) of ``biharmonic`` before rounding. Only the hole and its
    stencil are read: no whole-image float copy, which dominated on a 12 MP photo."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import spsolve

    h, w = hole.shape
    ys, xs = np.nonzero(hole)
    index = np.full((h, w), -1, np.int32)
    index[ys, xs] = np.arange(len(ys))
    py, px = np.nonzero(cv2.dilate(hole.astype(np.uint8), np.ones((3, 3), np.uint8)))
    rhs = np.zeros((len(py), rgb.shape[2]))
    rows, cols, vals = [], [], []
    for dy, dx, c in ((0, 0, 4.0), (-1, 0, -1.0), (1, 0, -1.0), (0, -1, -1.0), (0, 1, -1.0)):
        qy, qx = np.clip(py + dy, 0, h - 1), np.clip(px + dx, 0, w - 1)  # edge pixels repeat
        j = index[qy, qx]
        unknown = j >= 0
        rows.append(np.nonzero(unknown)[0])
        cols.append(j[unknown])
        vals.append(np.full(int(unknown.sum()), c))
        rhs[~unknown] += c * rgb[qy[~unknown], qx[~unknown]].astype(np.float64)
    lap = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(len(py), len(ys)),
    )
    x = spsolve((lap.T @ lap).tocsc(), -(lap.T @ rhs))
    return ys, xs, x.reshape(len(ys), -1)


def biharmonic(rgb: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Biharmonic interpolation of ``hole`` (bool HxW) in ``rgb`` (uint8 HxWx3): the hole's
    values minimise the squared Laplacian over the hole and its one-pixel rim (least squares,
    one sparse solve for all channels). Same result as scikit-image's ``inpaint_biharmonic``
    (the ``biharmonic`` baseline), about ten times faster on a few thin scratches."""
    ys, xs, values = _biharmonic_values(rgb, hole)
    out = rgb.copy()
    out[ys, xs] = np.clip(np.round(values), 0, 255).astype(np.uint8)
    return out


def rim_offsets(rgb: np.ndarray, thin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels of the 8-connected components of ``thin``, each one's rim offset in grey levels).

    The rim offset: how far the known pixels touching a component are, on average, from what a
    biharmonic interpolation from farther out predicts for them. A real scratch or crack often
    has a bright or dark rim below the mask's threshold; it sits consistently off that
    prediction, where the photo's own texture varies both ways and averages out.
    """
    n, labels = cv2.connectedComponents(thin.astype(np.uint8), connectivity=8)
    grown = cv2.dilate(thin.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    ys, xs, values = _biharmonic_values(rgb, grown)
    ring = ~thin[ys, xs]  # the known pixels touching a component, solved as unknown
    ry, rx = ys[ring], xs[ring]
    residual = (rgb[ry, rx].astype(np.float64) - values[ring]).mean(1)
    h, w = thin.shape
    owner = np.zeros(len(ry), labels.dtype)  # the component a ring pixel touches
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            near = labels[np.clip(ry + dy, 0, h - 1), np.clip(rx + dx, 0, w - 1)]
            owner = np.maximum(owner, near)
    total = np.bincount(owner, residual, minlength=n)
    count = np.bincount(owner, minlength=n)
    offsets = np.abs(total) / np.maximum(count, 1)
    offsets[0] = 0.0
    return labels, offsets


def smooth_fill(rgb: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """The ``telea`` pre-fill: Telea, with the thin parts of the hole that show no damage rim
    (``rim_offsets`` at most RIM_TOLERANCE) interpolated biharmonically."""
    fill = telea(rgb, hole)
    thin = thin_parts(hole)
    if thin.any():
        labels, offsets = rim_offsets(fill, thin)  # the rest of the hole as Telea filled it
        clean = (offsets <= RIM_TOLERANCE)[labels] & thin
        if clean.any():
            fill = biharmonic(fill, clean)
    return fill


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


def fills_unavailable(
    hole_fill: str, edge_hole_fill: str, exemplar: bool, thin_fsr: bool = True
) -> str | None:
    """Why the pre-fills of a model (its ``model.*`` fill settings) cannot run here (None when
    they can): a trainer checks before it starts, not when a data worker first needs one.
    ``thin_fsr``: whether the exemplar copy's thin parts use FSR (``exemplar_fill``)."""
    if exemplar or "patchmatch" in (hole_fill, edge_hole_fill):
        reason = patchmatch_unavailable()
        if reason is not None:
            return reason
    return fsr_unavailable() if exemplar and thin_fsr else None  # the exemplar fill's thin parts


def edge_guide_map(
    edges: np.ndarray, reach: float = GUIDE_REACH, close: int = REGION_CLOSE
) -> np.ndarray:
    """PatchMatch's guide (HxWx3 float32) from an edge map; the library compares the first two
    channels between source and target pixel (with wrap-around at 1, so both stay in [0, 0.5]).

    Channel 0: each pixel's distance to the nearest edge, in units of ``reach`` pixels,
    saturated at 1 and scaled into [0, 0.5], so that texture is copied along the edges.
    Channel 1: a code of the region the edges enclose (a connected part of the photo between
    edges, after closing gaps of up to ``close`` pixels on either side of an edge line), so that
    a hole pixel copies from its own side of a drawn contour: the distance alone is the same on
    both sides. Codes step by the golden ratio, so that regions with near labels differ."""
    guide = np.zeros((*edges.shape, 3), np.float32)
    on_edge = (edges >= 0.5).astype(np.uint8)
    if not on_edge.any():
        guide[..., 0] = 0.5
        return guide
    dist = cv2.distanceTransform(1 - on_edge, cv2.DIST_L2, 3)
    guide[..., 0] = np.minimum(dist / reach, 1.0) * 0.5
    if close > 0:
        on_edge = cv2.dilate(on_edge, np.ones((2 * close + 1, 2 * close + 1), np.uint8))
    count, labels = cv2.connectedComponents(1 - on_edge, connectivity=4)
    codes = (np.arange(count) * GOLDEN % 1.0 * 0.5).astype(np.float32)
    codes[0] = 0.0  # label 0: the (closed) edge lines themselves
    guide[..., 1] = codes[labels]
    return guide


def patchmatch(
    rgb: np.ndarray,
    hole: np.ndarray,
    seed: int = 0,
    edges: np.ndarray | None = None,
    guide_weight: float = GUIDE_WEIGHT,
) -> np.ndarray:
    """PatchMatch fill (7x7 patches); deterministic for a given ``seed``.

    ``edges`` (float HxW, the composite edge map: known edges outside the hole, predicted or
    drawn inside) steers the copy (``edge_guide_map``): a hole pixel then prefers source patches
    that lie as far from an edge as it does and on the same side of the edges, so texture is
    copied along the drawn structure, from the region it bounds, and flat regions stay flat.
    """
    reason = patchmatch_unavailable()
    if reason is not None:
        raise EdgefillError(f"the PatchMatch hole fill cannot run: {reason}")
    import patchmatch as pm

    pm.set_random_seed(seed)  # the library's generator is global: seed right before each use
    if edges is None:
        return pm.inpaint(rgb, hole.astype(np.uint8), patch_size=PATCHMATCH_RADIUS)
    return pm.inpaint_regularity(
        rgb,
        hole.astype(np.uint8),
        edge_guide_map(edges),
        patch_size=PATCHMATCH_RADIUS,
        guide_weight=guide_weight,
    )


def reduced_patchmatch(
    rgb: np.ndarray,
    hole: np.ndarray,
    max_side: int,
    seed: int = 0,
    edges: np.ndarray | None = None,
    guide_weight: float = 0.0,
) -> np.ndarray:
    """``patchmatch`` run at a size whose longer side is ``max_side`` and upscaled (bicubic);
    a pixel of the reduced hole is one that any hole pixel falls in, so the hole never shrinks."""
    h, w = hole.shape
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    small_hole = resize_hole(hole, size)
    if small_hole.all():
        return np.full_like(rgb, GREY)
    small_edges = None
    if edges is not None and guide_weight > 0:
        small_edges = cv2.resize(edges.astype(np.float32), size, interpolation=cv2.INTER_AREA)
        small_edges = (small_edges > 0.25).astype(np.float32)
    fill = patchmatch(small, small_hole, seed, small_edges, guide_weight)
    return cv2.resize(fill, (w, h), interpolation=cv2.INTER_CUBIC)


def fill_hole(
    kind: str,
    rgb: np.ndarray,
    hole: np.ndarray,
    seed: int = 0,
    edges: np.ndarray | None = None,
    edge_guide: float = 0.0,
    max_side: int | None = None,
) -> np.ndarray:
    """``rgb`` (uint8 HxWx3) with ``hole`` (bool HxW) pre-filled by ``kind`` (see HOLE_FILLS).

    Pixels outside the hole are returned exactly; an image without any known pixel is mid-grey
    for the classical fills (they have nothing to copy from). With ``edge_guide`` > 0 the
    PatchMatch fill follows ``edges`` (the composite edge map G2 gets; see ``patchmatch``).
    ``max_side``: PatchMatch runs on images with a longer side than this at that reduced size
    (``reduced_patchmatch``; the pipeline passes PATCHMATCH_MAX_SIDE).
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
        fill = smooth_fill(rgb, hole)
    elif max_side is not None and max(hole.shape) > max_side:
        fill = reduced_patchmatch(rgb, hole, max_side, seed, edges, edge_guide)
    elif edge_guide > 0 and edges is not None:
        fill = patchmatch(rgb, hole, seed, edges, edge_guide)
    else:
        fill = patchmatch(rgb, hole, seed)
    return np.where(hole[..., None], fill, rgb)


def exemplar_fill(
    rgb: np.ndarray,
    hole: np.ndarray,
    seed: int = 0,
    edges: np.ndarray | None = None,
    edge_guide: float = 0.0,
    max_side: int | None = None,
    smooth: np.ndarray | None = None,
    thin_fsr: bool = True,
) -> np.ndarray:
    """The copy a ``model.exemplar`` G2 blends with: the PatchMatch fill (``fill_hole``), except
    on the hole's thin parts (``thin_parts``: scratches, hairs), where a copy of the nearest
    patches breaks the line it should continue: there the ``telea`` pre-fill (``smooth_fill``)
    plus THIN_DETAIL of the copy's fine detail, so the scratch gets the photo's grain, with
    THIN_FSR of its luminance from ``fsr_luma`` when the thin parts are small enough
    (THIN_FSR_MAX_PIXELS).

    ``smooth``: that pre-fill (``fill_hole("telea", rgb, hole)``) when the caller has it already
    (G2's own input), so that its biharmonic solve on a scratch runs once. ``thin_fsr=False``
    leaves FSR out (``train.thin_fsr``: training where OpenCV lacks ``cv2.xphoto``)."""
    copy = fill_hole("patchmatch", rgb, hole, seed, edges, edge_guide, max_side)
    hole = hole.astype(bool, copy=False)
    thin = thin_parts(hole)
    if not thin.any():
        return copy
    if smooth is None:
        smooth = smooth_fill(np.ascontiguousarray(rgb), hole)
    smooth = smooth.astype(np.float32)
    grain = copy.astype(np.float32)
    grain -= cv2.GaussianBlur(grain, (0, 0), THIN_DETAIL_SIGMA)
    mixed = smooth + THIN_DETAIL * grain
    if thin_fsr and THIN_FSR > 0 and np.count_nonzero(thin) <= THIN_FSR_MAX_PIXELS:
        # The rest of the hole as copied, so that FSR only reconstructs the thin parts.
        known = np.where((hole & ~thin)[..., None], copy, rgb)
        shift = fsr_luma(known, thin) - luma(mixed)
        mixed += THIN_FSR * shift[..., None]  # moves luminance only: R-Y and B-Y stay
    mixed = np.clip(np.round(mixed), 0, 255).astype(np.uint8)
    return np.where(thin[..., None], mixed, copy)


def luma(rgb: np.ndarray) -> np.ndarray:
    """Luminance (float32 HxW, ITU-R BT.601 weights, as OpenCV's grey and YCrCb's Y)."""
    return rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def fsr_luma(rgb: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Luminance of ``rgb`` (uint8 HxWx3) with ``hole`` (bool HxW) reconstructed by OpenCV's
    frequency-selective reconstruction (``cv2.xphoto``, fast profile; float32 HxW). Only a
    crop around the hole is processed; pixels outside the hole are the photo's luminance."""
    out = luma(rgb)
    ys, xs = np.nonzero(hole)
    if len(ys) == 0:
        return out
    h, w = hole.shape
    # The crop starts on FSR's block grid: FSR is sensitive to where its blocks fall (a crop
    # 5 px off the grid turned a sky corner dark), so it does on the crop what it does on the photo.
    y0 = max(0, ys.min() - FSR_MARGIN) // FSR_BLOCK * FSR_BLOCK
    x0 = max(0, xs.min() - FSR_MARGIN) // FSR_BLOCK * FSR_BLOCK
    y1, x1 = min(h, ys.max() + 1 + FSR_MARGIN), min(w, xs.max() + 1 + FSR_MARGIN)
    crop = hole[y0:y1, x0:x1]
    grey = np.clip(np.round(out[y0:y1, x0:x1]), 0, 255).astype(np.uint8)
    out[y0:y1, x0:x1][crop] = fsr(grey, crop)[crop]
    return out


def fsr_unavailable() -> str | None:
    """Why OpenCV's FSR fill cannot run here (None when it can)."""
    if hasattr(getattr(cv2, "xphoto", None), "inpaint"):
        return None
    return (
        "OpenCV's xphoto module is missing: install opencv-contrib-python-headless instead of "
        "opencv-python(-headless) (they cannot be installed side by side)"
    )


def fsr(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """OpenCV's frequency-selective reconstruction (fast profile) of ``hole`` (bool HxW) in
    ``image`` (uint8 HxW grey, or HxWx3 in BGR order as OpenCV expects)."""
    reason = fsr_unavailable()
    if reason is not None:
        raise EdgefillError(f"the FSR fill cannot run: {reason}")
    src = image.copy()
    src[hole] = 0
    dst = np.zeros_like(src)
    known = (~hole).astype(np.uint8) * 255  # xphoto's mask marks the *known* pixels
    cv2.xphoto.inpaint(src, known, dst, cv2.xphoto.INPAINT_FSR_FAST)
    return dst


def fill_batch(
    kind: str,
    image: torch.Tensor,
    mask: torch.Tensor,
    edges: torch.Tensor | None = None,
    edge_guide: float = 0.0,
    seed: int = 0,
    thin_fsr: bool = True,
) -> torch.Tensor:
    """``fill_hole`` (or ``exemplar_fill`` for kind EXEMPLAR) over a batch of tensors (Bx3 image
    in [0, 1], Bx1 mask and edges), for validation, where the edges come from the network;
    training fills in the data workers. ``thin_fsr``: as in ``exemplar_fill``."""
    if kind == EXEMPLAR:
        fill = functools.partial(exemplar_fill, thin_fsr=thin_fsr)
    else:
        fill = functools.partial(fill_hole, kind)
    rgb = image.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8)
    rgb_np = rgb.permute(0, 2, 3, 1).cpu().numpy()
    holes = (mask[:, 0] >= 0.5).cpu().numpy()
    lines = None if edges is None else edges[:, 0].detach().float().cpu().numpy()
    out = [
        fill(rgb_np[i], holes[i], seed + i, None if lines is None else lines[i], edge_guide)
        for i in range(len(rgb_np))
    ]
    filled = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(image.device, torch.float32)
    return torch.where(mask >= 0.5, filled / 255, image.float())
