"""Refinement of a completed photo: a seamless seam, crisper contours, clean flat areas.

    out = refine(result, hole, edges)          # uint8 HxWx3; pixels outside the hole unchanged

Three steps, all confined to the hole (``out[~hole] == result[~hole]`` bit for bit):

1. Seam (gradient-domain / Poisson blending, Perez et al. 2003). The network's colours can be
   slightly off where the filled region meets the kept photo. We add to the filled pixels a
   correction ``c`` that is harmonic (Laplace's equation) inside the hole and equals the mismatch
   at its border, so the fill keeps its own gradients but meets the photo without a step. The
   mismatch is measured robustly (``border_mismatch``): the known side is read a few pixels out
   (a crack's rim or a halo the mask missed does not count), and only an offset that is the same
   all round the hole is corrected (a bright thread along one side of a crack is structure, not
   a colour cast), so a refinement does not brighten or darken thin fills. With
   ``band`` the correction is solved only within ``band`` px of the border and fades to zero
   deeper inside (a feathered seam; also bounds the cost on huge holes).
2. Contours: an unsharp mask weighted by the proximity to the predicted edges (the edge map G1
   drew inside the hole), so object outlines the network rendered soft get crisper.
3. Flat areas: total-variation denoising (Chambolle) weighted by flatness and by the distance to
   predicted edges, so smooth regions lose the network's faint blotches and checkerboard.

``RefineParams()`` (what ``--refine`` runs) is the seam only: sharpening made PSNR and LPIPS
slightly worse and TV changed them by less than the noise; the robust seam is neutral on
well-coloured fills and removes colour casts and crack rims (docs/restoration.md,
benchmarks/bench_refine.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import sparse
from scipy.sparse.linalg import splu

from edgefill.errors import EdgefillError

MAX_UNKNOWNS = 120_000  # larger seam solves go coarse-to-fine (see ``seam_correction``)
# The seam's border values (``border_values``): statistics of the known pixels within
# BORDER_RADIUS px (a square) of each known pixel touching the hole, leaving out the RIM px
# closest to the hole; a systematic rim counts when it exceeds RIM_GATE robust deviations of that
# neighbourhood, a single pixel is an outlier beyond OUTLIER deviations (at least NOISE_FLOOR).
BORDER_RADIUS = 3
RIM = 1.5
RIM_GATE = 2.0
OUTLIER = 3.0
NOISE_FLOOR = 2 / 255
MISMATCH_RADIUS = 6  # px: the neighbourhood over which a border offset must be consistent


@dataclass(frozen=True)
class RefineParams:
    seam: bool = True
    band: int | None = None  # px: solve the seam only this deep into the hole (None = all)
    # Off by default: on the validation photos they did not help (docs/restoration.md); try
    # sharpen=0.6, tv=0.04.
    sharpen: float = 0.0  # unsharp-mask amount on predicted contours (0 = off)
    sharpen_sigma: float = 1.0
    edge_reach: float = 1.5  # px: how far from a predicted edge the sharpening reaches
    tv: float = 0.0  # TV weight in flat areas (0 = off)
    flat_std: float = 0.03  # local std (0-1 scale) below which an area counts as flat


Slices = tuple[slice, slice]


def _neighbours(hole: np.ndarray) -> list[tuple[Slices, Slices]]:
    """For the four 4-neighbour offsets: (p slices, q slices) with q = p + offset in the image."""
    h, w = hole.shape
    out = []
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        dst = (slice(max(0, -dy), h - max(0, dy)), slice(max(0, -dx), w - max(0, dx)))
        src = (slice(max(0, dy), h - max(0, -dy)), slice(max(0, dx), w - max(0, -dx)))
        out.append((dst, src))
    return out


def _nanquantile(a: np.ndarray, q: float) -> np.ndarray:
    """``np.nanquantile(a, q, axis=1)`` (linear interpolation) for N x K x C arrays with at
    least one finite value per (n, c), without NumPy's slow per-row loop."""
    ordered = np.sort(a, axis=1)  # NaN sorts last
    count = np.maximum((~np.isnan(a)).sum(1), 1)
    pos = q * (count - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, count - 1)
    v_lo = np.take_along_axis(ordered, lo[:, None], 1)[:, 0]
    v_hi = np.take_along_axis(ordered, hi[:, None], 1)[:, 0]
    return v_lo + (v_hi - v_lo) * (pos - lo)


def border_values(values: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Trustworthy known-side values for the seam (float32 HxWx3; only the known pixels that
    touch the hole differ from ``values``).

    The pixel right next to a hole is the least trustworthy one: a crack's bright or dark rim the
    damage mask did not cover, a bright line hugging a thin hole. Taken as the Dirichlet value of
    the seam it is spread over the whole of a thin fill (a 2 px crack is all border), which made
    ``--refine`` brighten fills along real cracks. For each such pixel q, a plane is fitted to the
    known pixels in the square of radius BORDER_RADIUS around q that lie more than RIM px from
    the hole; ``med`` is its value at q (a ramp across the border is not a rim) and ``mad`` the
    robust deviation of the samples from it (1.4826 x median |residual|, at least NOISE_FLOOR):

    1. a *systematic* rim (the median over the touching pixels in that square of value - med)
       larger than RIM_GATE x mad is subtracted; smaller ones are texture and stay;
    2. a value still further than OUTLIER x mad from ``med`` is replaced by ``med``.

    Elsewhere the pixel's own value stays, so on textured borders the seam keeps its pixel-exact
    continuity. Where no known pixel lies beyond the rim, all known ones in the square count.
    """
    h, w = hole.shape
    out = values.astype(np.float32, copy=True)
    known = ~hole
    touch = known & (cv2.dilate(hole.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)
    ys, xs = np.nonzero(touch)
    if len(ys) == 0:
        return out
    dist = cv2.distanceTransform(known.astype(np.uint8), cv2.DIST_L2, 5)
    r = BORDER_RADIUS
    oy, ox = np.mgrid[-r : r + 1, -r : r + 1].reshape(2, -1)
    py, px = ys[:, None] + oy[None], xs[:, None] + ox[None]
    inside = (py >= 0) & (py < h) & (px >= 0) & (px < w)
    py, px = np.clip(py, 0, h - 1), np.clip(px, 0, w - 1)
    # Only what q sees without looking across the hole: the far side of a thin crack (or a
    # bright line along it) is not the colour q's side of the fill has to meet.
    for k in range(1, r):
        sy = np.clip(ys[:, None] + np.round(oy * k / r).astype(int)[None], 0, h - 1)
        sx = np.clip(xs[:, None] + np.round(ox * k / r).astype(int)[None], 0, w - 1)
        inside &= ~hole[sy, sx]
    far = inside & (dist[py, px] > RIM)  # known (distance > 0) and beyond the rim
    usable = np.where(far.any(1, keepdims=True), far, inside & known[py, px])
    # A plane (per channel) fitted to those samples predicts q: a ramp across the border is
    # not a rim. Least squares, regularised towards a constant where the samples are one-sided.
    wgt = usable.astype(np.float32)
    design = np.stack([np.ones_like(oy), oy, ox], 1).astype(np.float32)  # k x 3
    gram = np.einsum("nk,ki,kj->nij", wgt, design, design) + np.diag([1e-4, 1.0, 1.0])
    vals = out[py, px]  # n x k x 3
    coef = np.linalg.solve(gram, np.einsum("nk,ki,nkc->nic", wgt, design, vals))
    med = coef[:, 0]  # the plane at q
    resid = np.where(usable[..., None], vals - np.einsum("ki,nic->nkc", design, coef), np.nan)
    mad = _nanquantile(np.abs(resid), 0.5) * 1.4826
    mad = np.maximum(mad, NOISE_FLOOR)
    own = out[ys, xs]
    delta = np.full(out.shape, np.nan, np.float32)
    delta[ys, xs] = own - med
    delta_near = np.where(inside[..., None], delta[py, px], np.nan)
    rim = _nanquantile(delta_near, 0.5)  # q itself always counts: never all-NaN
    fixed = own - np.where(np.abs(rim) > RIM_GATE * mad, rim, 0)
    out[ys, xs] = np.where(np.abs(fixed - med) <= OUTLIER * mad, fixed, med)
    return out


def border_mismatch(
    photo: np.ndarray,
    fill: np.ndarray,
    hole: np.ndarray,
    prediction: np.ndarray | None,
    radius: int = MISMATCH_RADIUS,
) -> np.ndarray:
    """The colour offset the seam removes, at each known pixel q touching the hole (HxWx3).

    D(q) = B(q) - mean fill of q's 4-neighbours in the hole, B = ``border_values`` of the photo
    (with ``prediction``: B of photo - prediction). A colour cast of the fill shows as the same
    offset all round the hole, on both sides of a thin crack; real structure that meets the hole
    (a bright thread along one side, a dark object the hole touches) on one side only. So D is
    replaced by the value closest to zero within the inter-quartile range of D over the touching
    pixels within ``radius`` px: a consistent offset is corrected, a mixed one left alone.
    """
    h, w = hole.shape
    known = ~hole
    linked = np.zeros((h, w), bool)
    total = np.zeros((h, w, 3), np.float32)
    count = np.zeros((h, w), np.float32)
    for dst, src in _neighbours(hole):  # q in dst, its neighbour p in src
        link = known[dst] & hole[src]
        linked[dst] |= link
        total[dst] += np.where(link[..., None], fill[src], 0)
        count[dst] += link
    out = np.zeros((h, w, 3), np.float32)
    ys, xs = np.nonzero(linked)
    if len(ys) == 0:
        return out
    if prediction is not None:
        d = border_values(photo.astype(np.float32) - prediction, hole)
    else:
        d = border_values(photo, hole) - total / np.maximum(count, 1)[..., None]
    d = np.where(linked[..., None], d, np.nan)
    oy, ox = np.mgrid[-radius : radius + 1, -radius : radius + 1].reshape(2, -1)
    for i in range(0, len(ys), 8192):  # bounded memory on long scratches
        cy, cx = ys[i : i + 8192, None], xs[i : i + 8192, None]
        near = d[np.clip(cy + oy[None], 0, h - 1), np.clip(cx + ox[None], 0, w - 1)]
        lo = _nanquantile(near, 0.25)  # q itself counts: never all-NaN
        hi = _nanquantile(near, 0.75)
        out[cy[:, 0], cx[:, 0]] = np.clip(0, lo, hi)
    return out


def seam_correction(
    photo: np.ndarray,
    fill: np.ndarray,
    hole: np.ndarray,
    prediction: np.ndarray | None = None,
    band: int | None = None,
    radius: int = MISMATCH_RADIUS,
) -> np.ndarray:
    """Harmonic correction (float32 HxWx3, zero outside the hole) that removes the seam.

    ``photo``: the known pixels (float HxWx3, used outside the hole); ``fill``: the network's values
    (used inside); ``prediction``: the network's raw output everywhere, when available, gives the
    mismatch photo - prediction on the border; without it the mismatch across each border link
    is B(outside) - fill(inside), with B the robust ``border_values`` of the photo (a median a
    few pixels out, not the rim pixel). With ``band``, hole pixels deeper than ``band`` px are
    held at zero correction.

    Holes with more than ``MAX_UNKNOWNS`` pixels are solved coarse-to-fine: the correction on a
    downsampled grid, upsampled, then solved exactly in a band along the border with the coarse
    values holding the band's inner edge (the harmonic correction is smooth away from the border).
    """
    h, w = hole.shape
    corr = np.zeros((h, w, 3), np.float32)
    if not hole.any() or hole.all():
        return corr
    dist = cv2.distanceTransform(hole.astype(np.uint8), cv2.DIST_L2, 5)
    unknown = hole if band is None else hole & (dist <= band)
    if int(unknown.sum()) <= MAX_UNKNOWNS:
        return _solve(photo, fill, hole, unknown, prediction, corr, radius)
    f = int(np.ceil(np.sqrt(unknown.sum() / (MAX_UNKNOWNS / 2))))
    small = (max(1, w // f), max(1, h // f))

    def down(a: np.ndarray) -> np.ndarray:
        return cv2.resize(a, small, interpolation=cv2.INTER_AREA)

    coarse_hole = down(hole.astype(np.float32)) > 0.5
    coarse_band = None if band is None else max(1, band // f)
    pred_small = None if prediction is None else down(prediction)
    coarse_radius = max(2, radius // f)  # the same neighbourhood in photo pixels
    coarse = seam_correction(
        down(photo), down(fill), coarse_hole, pred_small, coarse_band, coarse_radius
    )
    inner = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR) * hole[..., None]
    ring = 4 * f
    while True:  # the exact band along the border; shrink it until the solve is small enough
        unknown = hole & (dist <= ring) if band is None else hole & (dist <= min(ring, band))
        if int(unknown.sum()) <= 4 * MAX_UNKNOWNS or ring <= 2:  # thin bands factor cheaply
            break
        ring //= 2
    return _solve(photo, fill, hole, unknown, prediction, inner, radius)


def _solve(
    photo: np.ndarray,
    fill: np.ndarray,
    hole: np.ndarray,
    unknown: np.ndarray,
    prediction: np.ndarray | None,
    inner: np.ndarray,
    radius: int = MISMATCH_RADIUS,
) -> np.ndarray:
    """Laplace's equation on ``unknown`` pixels (5-point stencil, Neumann at the image border).

    Dirichlet values: across a link to a known pixel q, the mismatch B(q) - fill(p), where B is
    ``border_values`` of the photo (with ``prediction``: B of photo - prediction, alone); to a
    hole pixel outside ``unknown``, ``inner`` there. Returns ``inner`` with the unknown pixels
    replaced by the solution.
    """
    h, w = hole.shape
    mismatch = border_mismatch(photo, fill, hole, prediction, radius)
    n = int(unknown.sum())
    index = np.full((h, w), -1, np.int64)
    index[unknown] = np.arange(n)
    diag = np.zeros(n, np.float64)
    rhs = np.zeros((n, 3), np.float64)
    rows, cols, vals = [np.arange(n)], [np.arange(n)], [diag]
    for dst, src in _neighbours(hole):
        p_unknown = unknown[dst]
        np.add.at(diag, index[dst][p_unknown], 1.0)  # every link inside the image
        both = p_unknown & unknown[src]
        rows.append(index[dst][both])
        cols.append(index[src][both])
        vals.append(-np.ones(int(both.sum())))
        kn = p_unknown & ~hole[src]
        if kn.any():
            np.add.at(rhs, index[dst][kn], mismatch[src][kn])
        deep = p_unknown & hole[src] & ~unknown[src]
        if deep.any():
            np.add.at(rhs, index[dst][deep], inner[src][deep])
    a = sparse.csc_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    )
    out = inner.astype(np.float32, copy=True)
    out[unknown] = splu(a).solve(rhs).astype(np.float32)
    return out


def _bbox(hole: np.ndarray, margin: int) -> tuple[slice, slice]:
    ys, xs = np.nonzero(hole)
    h, w = hole.shape
    return (
        slice(max(0, ys.min() - margin), min(h, ys.max() + margin + 1)),
        slice(max(0, xs.min() - margin), min(w, xs.max() + margin + 1)),
    )


def refine(
    result: np.ndarray,
    hole: np.ndarray,
    edges: np.ndarray | None = None,
    prediction: np.ndarray | None = None,
    params: RefineParams | None = None,
) -> np.ndarray:
    """Refine a completed photo inside ``hole``; returns uint8 HxWx3.

    ``result``: uint8 HxWx3, the photo with the hole filled; ``hole``: bool HxW; ``edges``: float
    HxW in [0, 1], the composite edge map used for the completion (predicted edges inside the
    hole), optional; ``prediction``: the network's raw uint8 output over the whole photo, optional
    (a slightly more exact seam). Pixels outside the hole are returned unchanged, bit for bit.
    """
    p = params or RefineParams()
    result = np.asarray(result)
    hole = np.asarray(hole, bool)
    if result.ndim != 3 or result.shape[2] != 3 or result.dtype != np.uint8:
        raise EdgefillError(
            f"refine expects an RGB uint8 HxWx3 image, got {result.dtype} {result.shape}"
        )
    if hole.shape != result.shape[:2]:
        raise EdgefillError(f"mask is {hole.shape[::-1]} but the image is {result.shape[1::-1]}")
    if edges is not None and edges.shape != hole.shape:
        raise EdgefillError(
            f"edge map is {edges.shape[::-1]} but the image is {result.shape[1::-1]}"
        )
    if not hole.any():
        return result.copy()
    margin = 8 + int(3 * max(p.sharpen_sigma, p.edge_reach)) + (p.band or 0)
    ys, xs = _bbox(hole, margin)
    img = result[ys, xs].astype(np.float32) / 255.0
    m = hole[ys, xs]
    y = img.copy()
    if p.seam:
        pred = None if prediction is None else prediction[ys, xs].astype(np.float32) / 255.0
        y = y + seam_correction(img, img, m, pred, p.band)
    near_edge = np.zeros(m.shape, np.float32)
    if edges is not None and (p.sharpen > 0 or p.tv > 0):
        e = (edges[ys, xs] * m).astype(np.float32)
        if e.any():
            near_edge = cv2.GaussianBlur(e, (0, 0), p.edge_reach)
            near_edge = np.clip(near_edge / max(near_edge.max(), 1e-6) * 2.0, 0, 1)
    if p.sharpen > 0 and near_edge.any():
        blur = cv2.GaussianBlur(y, (0, 0), p.sharpen_sigma)
        y = y + p.sharpen * near_edge[..., None] * (y - blur)
    if p.tv > 0:
        from skimage.restoration import denoise_tv_chambolle

        smooth = denoise_tv_chambolle(np.clip(y, 0, 1), weight=p.tv, channel_axis=-1)
        gray = y.mean(2)
        mu = cv2.GaussianBlur(gray, (0, 0), 2.0)
        std = np.sqrt(np.maximum(cv2.GaussianBlur(gray * gray, (0, 0), 2.0) - mu * mu, 0))
        flat = np.exp(-((std / p.flat_std) ** 2)) * (1 - near_edge)
        y = y + flat[..., None] * (smooth.astype(np.float32) - y)
    out = result.copy()
    patch = np.clip(np.round(y * 255), 0, 255).astype(np.uint8)
    out[ys, xs] = np.where(m[..., None], patch, result[ys, xs])
    return out
