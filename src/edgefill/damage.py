"""Realistic synthetic old-print damage at scan resolution, with exact per-kind masks.

    scan = render_damage(rgb, rng, kinds=("craquelure",))    # one kind, or several
    scan.image, scan.labels                                   # uint8 HxWx3, uint8 HxW (kind index)
    noisy = scan_effects(scan.image, rng)                     # grain / half-tone, then JPEG

Kinds (``DAMAGE_TYPES``): white and dark scratches with soft rims and varying width, branching
cracks, craquelure (a dense polygonal crack network over part of the print), folds and creases
(bright core, dark shoulder), tears at the borders, dust, hairs and fibres, water stains (a faint
tint with a darker tide line). Sizes are in pixels of a print scanned at 1000 px on its short side
and scale with ``scale`` (default: short side / 1000).

The truth is exact: a pixel is damaged when the damage changed it by at least ``visible`` (before
grain and JPEG, which touch every pixel). The soft rim of a scratch is damage where it is visible,
so a mask that leaves the rim leaves a ghost line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

DAMAGE_TYPES = (
    "scratch_white",
    "scratch_dark",
    "crack",
    "craquelure",
    "fold",
    "tear",
    "dust",
    "hair",
    "stain",
)
# Which of the detector's two outputs a kind belongs to: line-like (0) or blob-like (1).
LINE_TYPES = ("scratch_white", "scratch_dark", "crack", "craquelure", "fold", "hair")


@dataclass
class Scan:
    image: np.ndarray  # uint8 HxWx3, the damaged photo (before scan effects)
    labels: np.ndarray  # uint8 HxW: 0 clean, i + 1 = DAMAGE_TYPES[i]

    @property
    def mask(self) -> np.ndarray:
        return self.labels > 0

    def kind_mask(self, kind: str) -> np.ndarray:
        return self.labels == DAMAGE_TYPES.index(kind) + 1

    def line_blob(self) -> np.ndarray:
        """Targets for the two-output detector: bool 2xHxW (line-like, blob-like)."""
        line_ids = [DAMAGE_TYPES.index(k) + 1 for k in LINE_TYPES]
        line = np.isin(self.labels, line_ids)
        return np.stack([line, self.mask & ~line])


# ----------------------------------------------------------------------------- primitives


def _path(
    rng: np.random.Generator,
    h: int,
    w: int,
    length: float,
    wiggle: float,
    step: float = 3.0,
    start: tuple[float, float] | None = None,
    angle: float | None = None,
    inertia: float = 0.85,
) -> np.ndarray:
    """A random smooth curve (N x 2 float xy) of about ``length`` px; ``wiggle`` = turn per px,
    ``inertia`` = how much of the last turn carries on."""
    n = max(2, int(length / step))
    x, y = start if start is not None else (rng.uniform(0, w), rng.uniform(0, h))
    a = rng.uniform(0, 2 * math.pi) if angle is None else angle
    turn = 0.0
    pts = np.empty((n, 2), np.float32)
    for i in range(n):
        pts[i] = x, y
        turn = inertia * turn + rng.normal(0, wiggle) * step
        a += turn
        x += step * math.cos(a)
        y += step * math.sin(a)
    return pts


def _profile(rng: np.random.Generator, n: int, lo: float, hi: float, gaps: bool = True):
    """A smoothly varying value along a path, with occasional gaps (0)."""
    k = max(3, n // 15)
    ctrl = rng.uniform(lo, hi, k)
    v = np.interp(np.linspace(0, k - 1, n), np.arange(k), ctrl).astype(np.float32)
    if gaps and rng.random() < 0.4:
        g = int(rng.integers(0, n))
        v[g : g + int(rng.integers(1, max(2, n // 6)))] = 0
    return v


def _polyline(canvas: np.ndarray, pts: np.ndarray, widths: np.ndarray, value: np.ndarray) -> None:
    """Anti-aliased polyline with a width and value per segment (max-composited, in place)."""
    ip = np.round(pts * 4).astype(np.int32)
    for i in range(len(ip) - 1):
        v = float(value[i])
        if v <= 0:
            continue
        wd = float(widths[i])
        thick = max(1, round(wd))
        v *= min(1.0, wd)  # a line thinner than a pixel is fainter, not wider
        cv2.line(canvas, tuple(ip[i]), tuple(ip[i + 1]), v, thick, cv2.LINE_AA, 2)


def _soft(a: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(a, (0, 0), sigma) if sigma > 0.2 else a


def _over(img: np.ndarray, alpha: np.ndarray, colour) -> np.ndarray:
    a = np.clip(alpha, 0, 1)[..., None]
    return img * (1 - a) + np.asarray(colour, np.float32) * a


def _white(rng: np.random.Generator) -> np.ndarray:
    return np.clip(rng.uniform(0.86, 1.0) + rng.uniform(-0.03, 0.03, 3), 0, 1).astype(np.float32)


def _dark(rng: np.random.Generator) -> np.ndarray:
    return np.clip(rng.uniform(0.02, 0.2) + rng.uniform(-0.02, 0.02, 3), 0, 1).astype(np.float32)


# ----------------------------------------------------------------------------- kinds


def _scratch(img, rng, s, bright: bool):
    h, w = img.shape[:2]
    core = np.zeros((h, w), np.float32)
    for _ in range(1 + int(rng.poisson(2.0))):
        length = rng.uniform(0.2, 1.3) * max(h, w)
        pts = _path(rng, h, w, length, wiggle=rng.uniform(0.0, 0.003) / s)
        width = _profile(rng, len(pts), 0.6, 1.0, gaps=False) * rng.uniform(1.0, 5.0) * s
        _polyline(core, pts, width, _profile(rng, len(pts), 0.6, 1.0))
    core = _soft(core, 0.5 * s)
    rim = _soft(core, rng.uniform(1.5, 3.0) * s) * rng.uniform(0.25, 0.5)  # soft halo
    colour = _white(rng) if bright else _dark(rng)
    return _over(img, np.maximum(core, rim), colour)


def _crack(img, rng, s):
    """Branching, jagged cracks: a dark (dirt-filled) core with a lighter lifted edge."""
    h, w = img.shape[:2]
    core = np.zeros((h, w), np.float32)
    for _ in range(1 + int(rng.poisson(1.5))):
        stack = [(rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0, 2 * math.pi), 1.0)]
        while stack and len(stack) < 40:
            x, y, a, wscale = stack.pop()
            length = rng.uniform(80, 400) * s * wscale
            pts = _path(rng, h, w, length, wiggle=0.05, step=2.5 * s, start=(x, y), angle=a)
            width = _profile(rng, len(pts), 0.5, 1.0, gaps=False) * rng.uniform(1, 3) * s * wscale
            _polyline(core, pts, np.maximum(width, 0.7), np.ones(len(pts), np.float32))
            for _ in range(int(rng.poisson(1.2 * wscale))):
                j = int(rng.integers(0, len(pts)))
                stack.append(
                    (*pts[j], a + rng.choice([-1, 1]) * rng.uniform(0.5, 1.3), wscale * 0.7)
                )
    core = _soft(core, 0.4 * s)
    lip = _soft(core, 1.5 * s) * 0.45
    out = _over(img, lip, _white(rng))
    return _over(out, core, _dark(rng) if rng.random() < 0.75 else _white(rng))


def _region(rng, h, w, frac: float) -> np.ndarray:
    """A soft random region covering about ``frac`` of the photo (float 0-1)."""
    small = rng.normal(0, 1, (max(4, h // 64), max(4, w // 64))).astype(np.float32)
    small = cv2.GaussianBlur(small, (0, 0), 1.5)
    field = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    t = np.quantile(field, 1 - frac)
    return np.clip((field - t) / (field.std() * 0.3 + 1e-6), 0, 1)


def _craquelure(img, rng, s):
    """A dense polygonal network of fine cracks (Voronoi cells) over part of the print."""
    h, w = img.shape[:2]
    cell = rng.uniform(12, 45) * s
    n = int(h * w / cell**2)
    pts = np.column_stack([rng.uniform(0, w, n), rng.uniform(0, h, n)]).astype(np.float32)
    sub = cv2.Subdiv2D((0, 0, w, h))
    sub.insert([(float(x), float(y)) for x, y in np.clip(pts, 0, [w - 1, h - 1])])
    facets, _ = sub.getVoronoiFacetList([])
    net = np.zeros((h, w), np.float32)
    wd = rng.uniform(0.7, 2.0) * s
    for f in facets:
        poly = np.asarray(f, np.float32)
        # jag each edge: a midpoint displaced across it
        mids = (poly + np.roll(poly, -1, 0)) / 2 + rng.normal(0, cell * 0.08, poly.shape)
        jag = np.empty((2 * len(poly) + 1, 2), np.float32)
        jag[0:-1:2], jag[1:-1:2], jag[-1] = poly, mids, poly[0]
        _polyline(net, jag, np.full(len(jag), wd), rng.uniform(0.5, 1.0, len(jag)))
    net = _soft(net, 0.4 * s) * _region(rng, h, w, rng.uniform(0.15, 0.6))
    out = _over(img, _soft(net, 1.2 * s) * 0.3, _white(rng))
    return _over(out, net, _dark(rng) if rng.random() < 0.7 else _white(rng))


def _fold(img, rng, s):
    h, w = img.shape[:2]
    out = img
    for _ in range(1 + int(rng.random() < 0.3)):
        pts = _path(rng, h, w, 2.5 * max(h, w), wiggle=0.0004 / s, step=4.0)
        pts -= pts[len(pts) // 2] - np.array([rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h])
        width = rng.uniform(3, 10) * s
        d = np.gradient(pts, axis=0)
        nrm = np.stack([-d[:, 1], d[:, 0]], 1) / (np.linalg.norm(d, axis=1, keepdims=True) + 1e-6)
        shoulder, core = np.zeros((h, w), np.float32), np.zeros((h, w), np.float32)
        _polyline(
            shoulder, pts + nrm * width * 0.9, np.full(len(pts), width), np.full(len(pts), 0.5)
        )
        _polyline(
            core,
            pts,
            _profile(rng, len(pts), 0.5, 1.0, False) * width,
            _profile(rng, len(pts), 0.5, 1.0),
        )
        out = _over(out, _soft(shoulder, width / 3), _dark(rng))
        out = _over(out, _soft(core, width / 5), _white(rng))
    return out


def _tear(img, rng, s):
    """Paper missing at a border or corner: a jagged hole showing the backing, fibrous white rim."""
    h, w = img.shape[:2]
    side = int(rng.integers(0, 4))
    along = h if side in (0, 1) else w
    depth = rng.uniform(20, 120) * s
    n = max(8, int(along / (4 * s)))
    c0, span = rng.uniform(0, 0.7) * along, rng.uniform(0.15, 0.5) * along
    t = np.linspace(0, 1, n)
    prof = (
        np.sin(np.pi * t) ** 0.7
        * depth
        * (1 + 0.25 * np.cumsum(rng.normal(0, 0.25, n)) / np.sqrt(n))
    )
    prof += cv2.GaussianBlur(rng.normal(0, 1, (n, 1)), (0, 0), 3).ravel() * depth * 0.5
    prof += rng.normal(0, 1.5 * s, n)  # fibrous, jagged edge
    pos = c0 + t * span
    edge = (
        np.column_stack([np.zeros(n), pos])
        if side in (0, 1)
        else np.column_stack([pos, np.zeros(n)])
    )
    inner = edge.copy()
    if side in (0, 1):
        inner[:, 0] = np.maximum(prof, 0)
    else:
        inner[:, 1] = np.maximum(prof, 0)
    poly = np.vstack([edge, inner[::-1]])
    if side == 1:
        poly[:, 0] = w - 1 - poly[:, 0]
    if side == 3:
        poly[:, 1] = h - 1 - poly[:, 1]
    hole = np.zeros((h, w), np.float32)
    cv2.fillPoly(hole, [np.round(poly * 4).astype(np.int32)], 1.0, cv2.LINE_AA, 2)
    rim = np.clip(
        cv2.dilate(hole, np.ones((3, 3), np.uint8), iterations=max(1, round(2 * s))) - hole, 0, 1
    )
    backing = _dark(rng) if rng.random() < 0.5 else np.array([0.93, 0.9, 0.82], np.float32)
    out = _over(img, _soft(rim, 0.6 * s) * 0.8, _white(rng))
    return _over(out, _soft(hole, 0.5), backing)


def _dust(img, rng, s, density: float = 1.0):
    h, w = img.shape[:2]
    out = img
    n = int(rng.choice([30, 100, 300]) * density * h * w / (1000 * 1000 * s * s))
    for bright in (True, False):
        c = np.zeros((h, w), np.float32)
        for _ in range(int(rng.binomial(n, 0.6 if bright else 0.4))):
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            r = rng.uniform(0.8, 5.0) ** 1.3 * s
            for _ in range(1 + int(rng.random() < 0.3)):
                ax, ay = r * rng.uniform(0.5, 1.0), r * rng.uniform(0.5, 1.0)
                cv2.ellipse(
                    c,
                    (round(cx * 16), round(cy * 16)),
                    (max(1, round(ax * 16)), max(1, round(ay * 16))),
                    rng.uniform(0, 180),
                    0,
                    360,
                    float(rng.uniform(0.6, 1.0)),
                    -1,
                    cv2.LINE_AA,
                    4,
                )
                cx, cy = cx + rng.uniform(-r, r), cy + rng.uniform(-r, r)
        out = _over(out, _soft(c, 0.5 * s), _white(rng) if bright else _dark(rng))
    return out


def _hair(img, rng, s):
    h, w = img.shape[:2]
    c = np.zeros((h, w), np.float32)
    for _ in range(2 + int(rng.poisson(4.0))):
        pts = _path(
            rng, h, w, rng.uniform(60, 400) * s, wiggle=rng.uniform(0.005, 0.03) / s, step=2.0 * s
        )
        _polyline(
            c,
            pts,
            np.full(len(pts), rng.uniform(0.8, 2.5) * s),
            _profile(rng, len(pts), 0.7, 1.0, False),
        )
    return _over(img, _soft(c, 0.4 * s), _dark(rng) if rng.random() < 0.8 else _white(rng))


def _stain(img, rng, s):
    """Water stains: a faint tint inside, a darker tide line at the rim."""
    h, w = img.shape[:2]
    out = img
    for _ in range(1 + int(rng.poisson(0.7))):
        r = rng.uniform(40, 200) * s
        size = int(math.ceil(r * 2.6))
        noise = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), r / 4)
        yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
        field = noise / (noise.std() + 1e-6) * 0.25 + 1.0 - np.hypot(xx, yy) / r
        inside = np.clip(field * 6, 0, 1)
        tide = np.exp(-((field / (0.04 + 0.02 * rng.random())) ** 2)) * (field > -0.05)
        a = np.clip(inside * rng.uniform(0.2, 0.4) + tide * rng.uniform(0.4, 0.7), 0, 1)
        cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
        full = np.zeros((h, w), np.float32)
        y0, x0 = cy - size // 2, cx - size // 2
        ys, xs = slice(max(0, y0), min(h, y0 + size)), slice(max(0, x0), min(w, x0 + size))
        full[ys, xs] = a[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]
        colour = np.array([0.55, 0.42, 0.25], np.float32) * rng.uniform(0.6, 1.1)
        out = _over(out, full, np.clip(colour, 0, 1))
    return out


_disk3 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))

_RENDER = {
    "scratch_white": lambda img, rng, s: _scratch(img, rng, s, True),
    "scratch_dark": lambda img, rng, s: _scratch(img, rng, s, False),
    "crack": _crack,
    "craquelure": _craquelure,
    "fold": _fold,
    "tear": _tear,
    "dust": _dust,
    "hair": _hair,
    "stain": _stain,
}


def render_damage(
    rgb: np.ndarray,
    rng: np.random.Generator,
    kinds: tuple[str, ...] | list[str] = DAMAGE_TYPES,
    scale: float | None = None,
    visible: float = 8 / 255,
    dust_density: float = 1.0,
) -> Scan:
    """Draw each kind in ``kinds`` over the photo (in that order; a later kind owns the pixels).

    ``dust_density`` multiplies the number of dust specks per area (training crops are small, so
    at the scan's own density most of them would hold none)."""
    for k in kinds:
        if k not in _RENDER:
            raise ValueError(f"unknown damage type {k!r}; choose from {', '.join(DAMAGE_TYPES)}")
    h, w = rgb.shape[:2]
    s = min(h, w) / 1000 if scale is None else scale
    out = rgb.astype(np.float32) / 255.0
    labels = np.zeros((h, w), np.uint8)
    thr = round(visible * 255)
    for k in kinds:
        new = _dust(out, rng, s, dust_density) if k == "dust" else _RENDER[k](out, rng, s)
        changed = np.abs(np.round(new * 255) - np.round(out * 255)).max(2) >= thr
        if k == "stain":  # a faint tint crosses the threshold in specks: the stain is the region
            changed = cv2.morphologyEx(changed.astype(np.uint8), cv2.MORPH_CLOSE, _disk3) > 0
        labels[changed] = DAMAGE_TYPES.index(k) + 1
        out = new
    return Scan(np.clip(np.round(out * 255), 0, 255).astype(np.uint8), labels)


def scan_effects(
    rgb: np.ndarray,
    rng: np.random.Generator,
    grain: float | None = None,
    halftone: bool | None = None,
    jpeg: int | None = None,
    scale: float | None = None,
) -> np.ndarray:
    """Film grain (or a faint half-tone screen), then JPEG: what every scan has on top."""
    h, w = rgb.shape[:2]
    s = min(h, w) / 1000 if scale is None else scale
    img = rgb.astype(np.float32)
    if halftone is None:
        halftone = rng.random() < 0.15
    if halftone:
        period = rng.uniform(3.0, 5.0) * max(s, 0.5)
        a = rng.uniform(0, math.pi / 2)
        yy, xx = np.mgrid[:h, :w].astype(np.float32)
        u, v = xx * math.cos(a) + yy * math.sin(a), -xx * math.sin(a) + yy * math.cos(a)
        dots = np.cos(2 * math.pi * u / period) * np.cos(2 * math.pi * v / period)
        img = img * (1 + rng.uniform(0.03, 0.08) * dots[..., None])
    g = rng.uniform(2.0, 7.0) if grain is None else grain
    if g > 0:
        noise = rng.normal(0, 1, (h, w)).astype(np.float32)
        noise = _soft(noise, rng.uniform(0.3, 0.9) * max(s, 0.5))
        noise *= g / (noise.std() + 1e-6)
        lum = img.mean(2, keepdims=True) / 255
        img = img + noise[..., None] * (0.5 + lum * (1 - lum) * 2)
    out = np.clip(np.round(img), 0, 255).astype(np.uint8)
    q = int(rng.integers(70, 93)) if jpeg is None else jpeg
    if q < 100:
        enc = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])[1]
        out = np.ascontiguousarray(cv2.imdecode(enc, cv2.IMREAD_COLOR)[..., ::-1])
    return out
