"""Automatic damage masks: scratches, folds, hairs, dust and spots on old photos.

    mask = detect_damage(rgb)                      # bool HxW, True = damaged (the hole to fill)
    mask = detect_damage(rgb, kind="scratches", sensitivity=0.7)
    dm = analyse_damage(rgb)                       # regions with a confidence each
    dm.confident, dm.uncertain, dm.regions         # repair the first, show the second

Two detectors share one interface:

- ``classical``: morphology. A top-hat / black-hat residual keeps thin bright / dark details;
  the supremum of openings by oriented line segments keeps the line-like part (scratches, folds,
  hairs); small compact components that stand out from their neighbourhood are dust and spots.
- ``net``: a tiny U-Net (``DamageNet``) trained on synthetic damage drawn over clean photos
  (``edgefill.damage``: realistic scan damage; ``synth_damage``: the first release's simpler
  damage); two output channels, line-like and blob-like damage.

Flagged pixels form regions (8-connected); a region's confidence is its mean damage probability.
Regions at or above ``CONFIDENT`` are confident; the others are uncertain: ``restore`` leaves
them alone by default and reports them (a conservator's rule: when in doubt, show the doubt).

``method="auto"`` uses the network when its weights are installed (it scored better on the
validation photos, see docs/restoration.md) and the classical detector otherwise.

``sensitivity`` in [0, 1] (default 0.5): higher finds fainter damage and flags more pixels.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from edgefill.backends import make_stoppable
from edgefill.config import DAMAGE_KINDS, DEFAULT_SENSITIVITY, DETECT_METHODS
from edgefill.damage import _path as damage_path
from edgefill.edges import to_gray
from edgefill.errors import EdgefillError

WORK_SIZE = 1024  # px, shorter side; larger photos are analysed downscaled (see detect_damage)
DETECTOR_WEIGHTS = Path(__file__).parent / "weights" / "detector"
WEIGHTS_FILE, CONFIG_FILE = "detector.safetensors", "config.json"
STAIN_FILE = "stain.safetensors"  # a release's optional stain pass (config.json "stain")
STAIN_SIZE = 256  # px, shorter side at which the stain pass sees a photo (see stain_probability)

# Label values in the map ``synth_damage`` returns.
CLEAN, LINE, BLOB = 0, 1, 2


# ============================================================================ synthetic damage


@dataclass
class Damage:
    image: np.ndarray  # uint8 HxWx3, the damaged photo
    labels: np.ndarray  # uint8 HxW: 0 clean, 1 line-like (scratch/fold/hair), 2 blob (dust/stain)

    @property
    def mask(self) -> np.ndarray:
        return self.labels > 0

    def kind_mask(self, kind: str) -> np.ndarray:
        """Ground truth for ``kind``: scratches = line-like, spots = blobs, auto = both."""
        if kind == "scratches":
            return self.labels == LINE
        if kind == "spots":
            return self.labels == BLOB
        return self.labels > 0


def _smooth_path(
    rng: np.random.Generator, h: int, w: int, length: float, wiggle: float, step: float = 2.0
) -> np.ndarray:
    """The first release's scratch curve: starts anywhere up to 10 % outside the photo."""
    x, y = rng.uniform(-0.1 * w, 1.1 * w), rng.uniform(-0.1 * h, 1.1 * h)
    angle = rng.uniform(0, 2 * math.pi)
    return damage_path(rng, h, w, length, wiggle, step, (x, y), angle, inertia=0.9)


def _draw_path(
    alpha: np.ndarray, pts: np.ndarray, width: float, strength: np.ndarray, ss: int = 4
) -> None:
    """Anti-aliased polyline into ``alpha`` (max-composited), strength varying along the path."""
    ipts = np.round(pts * ss * 4).astype(np.int32)  # 2 fractional bits (shift=2)
    thick = max(1, round(width))
    for i in range(len(ipts) - 1):
        v = float(strength[i])
        if v <= 0:
            continue
        cv2.line(alpha, tuple(ipts[i]), tuple(ipts[i + 1]), v, thick, cv2.LINE_AA, 2)


def _strength_profile(rng: np.random.Generator, n: int, low: float, high: float) -> np.ndarray:
    """Opacity along a path: a base level with slow variation and occasional gaps."""
    base = rng.uniform(low, high)
    k = max(3, n // 12)
    ctrl = rng.normal(0, 0.25, k)
    prof = np.interp(np.linspace(0, k - 1, n), np.arange(k), ctrl)
    s = np.clip(base * (1 + prof), 0, 1)
    if rng.random() < 0.4:  # a scratch that fades out and back in
        gap = rng.integers(0, n)
        s[gap : gap + int(rng.integers(1, max(2, n // 5)))] = 0
    return s.astype(np.float32)


def _tone(rng: np.random.Generator, bright: bool) -> np.ndarray:
    """A damage colour: near white (emulsion loss) or near black (dirt, hair), slightly tinted."""
    if bright:
        v = rng.uniform(0.82, 1.0)
        tint = rng.uniform(-0.04, 0.04, 3)
    else:
        v = rng.uniform(0.0, 0.22)
        tint = rng.uniform(-0.03, 0.03, 3)
    return np.clip(v + tint, 0, 1).astype(np.float32)


def _composite(img: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> np.ndarray:
    a = np.clip(alpha, 0, 1)[..., None]
    return img * (1 - a) + colour * a


def synth_damage(
    rgb: np.ndarray,
    rng: np.random.Generator,
    amount: float = 1.0,
    visible: float = 10 / 255,
    scale: float | None = None,
) -> Damage:
    """Draw random old-photo damage over a clean photo; the ground truth comes with it.

    Line-like: long smooth scratches (1-3 px, bright or dark), hairs and fibres (thin, dark, curly),
    folds (a long bright crease with a dark shoulder). Blob-like: dust specks (radius 0.5-3.5 px),
    spots, and larger soft stains. Sizes are in pixels of a ~256 px photo and scale with
    sqrt(area) / 256 (or with ``scale``, for crops of a larger photo). A pixel is labelled damaged when the damage covers it with opacity >= 0.3 and
    changes it by at least ``visible`` (invisible damage is not damage).
    """
    h, w = rgb.shape[:2]
    if scale is None:
        scale = max(0.5, math.sqrt(h * w) / 256)
    img = rgb.astype(np.float32) / 255.0
    out = img.copy()
    line_a = np.zeros((h, w), np.float32)  # max opacity of line-like damage per pixel
    blob_a = np.zeros((h, w), np.float32)
    ss = 4

    def canvas() -> np.ndarray:
        return np.zeros((h * ss, w * ss), np.float32)

    def down(c: np.ndarray) -> np.ndarray:
        return cv2.resize(c, (w, h), interpolation=cv2.INTER_AREA)

    def n_of(mean: float) -> int:
        return int(rng.poisson(mean * amount))

    # Scratches: long, smooth, 1-3 px.
    for _ in range(n_of(rng.choice([0.5, 2.5, 6.0]))):
        c = canvas()
        length = rng.uniform(0.25, 1.2) * max(h, w)
        pts = _smooth_path(rng, h, w, length, wiggle=rng.uniform(0.0, 0.004) / scale)
        width = rng.uniform(0.8, 3.0) * scale * ss
        _draw_path(c, pts, width, _strength_profile(rng, len(pts), 0.5, 1.0), ss)
        a = down(c)
        out = _composite(out, a, _tone(rng, rng.random() < 0.65))
        line_a = np.maximum(line_a, a)
    # Hairs and fibres: shorter, curly, dark.
    for _ in range(n_of(rng.choice([0.0, 0.7, 2.0]))):
        c = canvas()
        pts = _smooth_path(rng, h, w, rng.uniform(15, 80) * scale, wiggle=rng.uniform(0.01, 0.05))
        _draw_path(c, pts, rng.uniform(0.7, 1.8) * scale * ss, np.full(len(pts), 1.0), ss)
        a = down(c) * rng.uniform(0.6, 1.0)
        out = _composite(out, a, _tone(rng, rng.random() < 0.2))
        line_a = np.maximum(line_a, a)
    # Folds: one long gentle crease, bright core with a dark shoulder.
    if rng.random() < 0.25 * amount:
        pts = _smooth_path(rng, h, w, 1.5 * max(h, w), wiggle=0.001 / scale)
        width = rng.uniform(1.5, 4.0) * scale
        d = np.diff(pts, axis=0, prepend=pts[:1] - (pts[1:2] - pts[:1]))
        normal = np.stack([-d[:, 1], d[:, 0]], 1) / (
            np.linalg.norm(d, axis=1, keepdims=True) + 1e-6
        )
        shoulder = canvas()
        _draw_path(
            shoulder, pts + normal * width * 0.9, width * 0.8 * ss, np.full(len(pts), 0.6), ss
        )
        core = canvas()
        _draw_path(core, pts, width * ss, _strength_profile(rng, len(pts), 0.6, 1.0), ss)
        a_s, a_c = down(shoulder), down(core)
        out = _composite(out, a_s, _tone(rng, False))
        out = _composite(out, a_c, _tone(rng, True))
        line_a = np.maximum(line_a, np.maximum(a_c, a_s))
    # Dust specks: many small, bright or dark, sometimes two touching discs.
    n_dust = n_of(rng.choice([0.0, 15.0, 60.0, 150.0]) * (w * h) / 256**2 / scale**2)
    if n_dust:
        bright = rng.random() < 0.6
        for group in (bright, not bright):
            c = canvas()
            k = int(rng.binomial(n_dust, 0.8 if group == bright else 0.2))
            for _ in range(k):
                cx, cy = rng.uniform(0, w), rng.uniform(0, h)
                r = rng.uniform(0.5, 3.5) ** 1.2 * scale
                for _ in range(1 + int(rng.random() < 0.3)):
                    ax, ay = r * rng.uniform(0.6, 1.0), r * rng.uniform(0.6, 1.0)
                    cv2.ellipse(
                        c,
                        (round(cx * ss * 16), round(cy * ss * 16)),
                        (max(1, round(ax * ss * 16)), max(1, round(ay * ss * 16))),
                        rng.uniform(0, 180),
                        0,
                        360,
                        float(rng.uniform(0.6, 1.0)),
                        -1,
                        cv2.LINE_AA,
                        4,
                    )
                    cx += rng.uniform(-r, r)
                    cy += rng.uniform(-r, r)
            a = down(c)
            out = _composite(out, a, _tone(rng, group))
            blob_a = np.maximum(blob_a, a)
    # Stains and spots: a few larger soft blobs (water spots, emulsion loss, mould).
    for _ in range(n_of(rng.choice([0.0, 0.5, 2.0]))):
        r = rng.uniform(3, 12) * scale
        size = int(math.ceil(r * 3))
        noise = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), r / 3)
        yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
        field = noise / (noise.std() + 1e-6) * 0.5 + 1.0 - np.hypot(xx, yy) / r
        blob = np.clip(field * 3, 0, 1) * rng.uniform(0.5, 0.95)
        cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
        a = np.zeros((h, w), np.float32)
        y0, x0 = cy - size // 2, cx - size // 2
        ys, xs = slice(max(0, y0), min(h, y0 + size)), slice(max(0, x0), min(w, x0 + size))
        a[ys, xs] = blob[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]
        roll = rng.random()
        if roll < 0.4:
            colour = _tone(rng, True)
        elif roll < 0.7:
            colour = np.array([0.55, 0.42, 0.25], np.float32) * rng.uniform(0.6, 1.2)  # sepia stain
        else:
            colour = _tone(rng, False)
        out = _composite(out, a, np.clip(colour, 0, 1))
        blob_a = np.maximum(blob_a, a)

    out8 = np.clip(np.round(out * 255), 0, 255).astype(np.uint8)
    changed = np.abs(out8.astype(np.int16) - rgb.astype(np.int16)).max(2) >= round(visible * 255)
    labels = np.zeros((h, w), np.uint8)
    labels[(blob_a >= 0.3) & changed] = BLOB
    labels[(line_a >= 0.3) & changed & (line_a >= blob_a)] = LINE
    return Damage(out8, labels)


# ============================================================================ classical detector


def _line_kernels(length: int, n_angles: int = 12) -> list[np.ndarray]:
    """Flat linear structuring elements of ``length`` px at evenly spaced orientations."""
    kernels = []
    c = length // 2
    for i in range(n_angles):
        t = math.pi * i / n_angles
        k = np.zeros((length, length), np.uint8)
        dx, dy = math.cos(t) * c, math.sin(t) * c
        # two half-lines from the centre, so the anchor pixel is always on the segment
        cv2.line(k, (c, c), (round(c + dx), round(c + dy)), 1, 1)
        cv2.line(k, (c, c), (round(c - dx), round(c - dy)), 1, 1)
        kernels.append(k)
    return kernels


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


@dataclass(frozen=True)
class ClassicalParams:
    """Tuned on synthetic damage over the *training* photos (benchmarks/bench_detect.py --tune)."""

    line_radius: int = 2  # top-hat disk: details narrower than 2r+1 px are candidates
    line_length: int = 17  # a scratch must be straight over this many px
    line_k: float = 2.0  # threshold in units of the local residual level (sensitivity 0.5)
    line_min: float = 0.16  # ... and in absolute gray levels
    spot_radius: int = 4
    spot_k: float = 3.0
    spot_min: float = 0.06
    spot_max_area: int = 100  # px at 256 px scale
    line_context: int = 15  # window (px) of the local residual level
    spot_context: int = 15
    grow: int = 0  # dilation of the final mask (covers anti-aliased fringes)


def _sens_factor(sensitivity: float) -> float:
    """Threshold multiplier: 1 at 0.5, halves every +0.25 (x4 at 0, x0.25 at 1)."""
    return float(2.0 ** ((0.5 - sensitivity) * 4))


def _residuals(gray: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    k = _disk(radius)
    bright = gray - cv2.morphologyEx(gray, cv2.MORPH_OPEN, k)
    dark = cv2.morphologyEx(gray, cv2.MORPH_CLOSE, k) - gray
    return bright, dark


def _local_level(res: np.ndarray, size: int) -> np.ndarray:
    """Typical residual magnitude around each pixel (box mean of |res|): texture estimate."""
    return cv2.blur(res, (size, size), borderType=cv2.BORDER_REFLECT)


def _hysteresis(score: np.ndarray, high: float, low: float) -> np.ndarray:
    strong = (score >= high).astype(np.uint8)
    weak = (score >= low).astype(np.uint8)
    n, lab = cv2.connectedComponents(weak, connectivity=8)
    keep = np.zeros(n, bool)
    keep[np.unique(lab[strong > 0])] = True
    keep[0] = False
    return keep[lab]


def _scale_of(shape: tuple[int, ...]) -> float:
    return max(1.0, math.sqrt(shape[0] * shape[1]) / 256) if len(shape) >= 2 else 1.0


def classical_scores(
    rgb: np.ndarray, p: ClassicalParams | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(line score, line residual, spot score, spot residual), all float32 HxW.

    Scores are residuals divided by their local level, so a line on a textured patch needs more
    contrast than one on a clear sky.
    """
    p = p or ClassicalParams()
    gray = to_gray(rgb)
    s = _scale_of(gray.shape)
    lr = max(1, round(p.line_radius * min(s, 2)))
    length = int(round(p.line_length * s)) | 1
    lctx = int(round(p.line_context * s)) | 1
    sctx = int(round(p.spot_context * s)) | 1
    kernels = _line_kernels(length)
    line_res = np.zeros_like(gray)
    thin = np.zeros_like(gray)
    for res in _residuals(gray, lr):
        # Supremum of openings by oriented segments: what survives is straight over `length`.
        sup = np.zeros_like(res)
        for k in kernels:
            np.maximum(sup, cv2.morphologyEx(res, cv2.MORPH_OPEN, k), out=sup)
        line_res = np.maximum(line_res, sup)
        thin = np.maximum(thin, res)
    line_level = _local_level(thin, lctx) + 0.01
    bright, dark = _residuals(gray, max(2, round(p.spot_radius * s)))
    spot_res = np.maximum(bright, dark)
    spot_level = _local_level(spot_res, sctx) + 0.01
    return line_res / line_level, line_res, spot_res / spot_level, spot_res


def _filter_blobs(mask: np.ndarray, max_area: int) -> np.ndarray:
    """Keep compact components no larger than ``max_area`` (long thin ones are scratches)."""
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = np.zeros(n, bool)
    for i in range(1, n):
        bw, bh, area = stats[i, cv2.CC_STAT_WIDTH], stats[i, cv2.CC_STAT_HEIGHT], stats[i, 4]
        elong = max(bw, bh) ** 2 / max(area, 1)
        keep[i] = area <= max_area and elong < 8
    return keep[lab]


def line_mask(
    line_score: np.ndarray, line_res: np.ndarray, p: ClassicalParams, factor: float = 1.0
) -> np.ndarray:
    """Scratch pixels: straight residual above both thresholds (hysteresis, low = half)."""
    score = np.minimum(line_score / (p.line_k * factor), line_res / (p.line_min * factor))
    return _hysteresis(score, 1.0, 0.5)


def spot_mask(
    spot_score: np.ndarray,
    spot_res: np.ndarray,
    p: ClassicalParams,
    factor: float = 1.0,
    area_scale: float = 1.0,
) -> np.ndarray:
    """Dust / spot pixels: compact components standing out from their neighbourhood."""
    score = np.minimum(spot_score / (p.spot_k * factor), spot_res / (p.spot_min * factor))
    return _filter_blobs(_hysteresis(score, 1.0, 0.6), int(p.spot_max_area * area_scale))


def grow_mask(mask: np.ndarray, radius: int) -> np.ndarray:
    if radius <= 0:
        return mask
    return cv2.dilate(mask.astype(np.uint8), _disk(radius)) > 0


def detect_classical(
    rgb: np.ndarray,
    kind: str = "auto",
    sensitivity: float = DEFAULT_SENSITIVITY,
    params: ClassicalParams | None = None,
) -> np.ndarray:
    """Morphological damage detector; bool HxW."""
    p = params or ClassicalParams()
    f = _sens_factor(sensitivity)
    line_score, line_res, spot_score, spot_res = classical_scores(rgb, p)
    s = _scale_of(rgb.shape)
    mask = np.zeros(rgb.shape[:2], bool)
    if kind in ("scratches", "auto"):
        mask |= line_mask(line_score, line_res, p, f)
    if kind in ("spots", "auto"):
        mask |= spot_mask(spot_score, spot_res, p, f, s * s)
    return grow_mask(mask, p.grow)


# ============================================================================ network detector


class _Block(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class DamageNet(nn.Module):
    """Tiny U-Net: RGB in [0, 1] (N3HW) -> logits N2HW (line-like, blob-like damage), or
    N1HW for the stain pass (``outputs=1``, see ``stain_probability``).

    ``depth`` scales (H, H/2, ...), widths (w, 2w, 3w, 4w, ...); H and W must be multiples of
    2 ** (depth - 1) (callers pad). Module names are those of the 3-scale release (enc1..encD,
    upD-1..up1, head), so its weights still load into ``DamageNet(12, 3)``.
    """

    def __init__(self, width: int = 12, depth: int = 3, outputs: int = 2):
        super().__init__()
        if depth < 2:
            raise ValueError(f"depth must be at least 2, got {depth}")
        self.depth = depth
        widths = [width * (i + 1) for i in range(depth)]
        cin = 3
        for i, w in enumerate(widths):
            setattr(self, f"enc{i + 1}", _Block(cin, w))
            cin = w
        for i in range(depth - 1, 0, -1):  # up{i}: decoder at scale i
            setattr(self, f"up{i}", _Block(widths[i] + widths[i - 1], widths[i - 1]))
        self.head = nn.Conv2d(width, outputs, 1)
        self.pool = nn.MaxPool2d(2)

    @property
    def multiple(self) -> int:
        return 2 ** (self.depth - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x - 0.5
        skips = []
        for i in range(self.depth):
            x = getattr(self, f"enc{i + 1}")(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        up = nn.functional.interpolate
        for i in range(self.depth - 1, 0, -1):
            x = getattr(self, f"up{i}")(
                torch.cat([up(x, scale_factor=2.0, mode="nearest"), skips.pop()], 1)
            )
        return self.head(x)


def save_detector(net: DamageNet, path: str | Path, info: dict) -> Path:
    """Release format: float16 safetensors + config.json (width and provenance)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    _save_weights(net, path / WEIGHTS_FILE)
    (path / CONFIG_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return path


def save_stain_pass(net: DamageNet, path: str | Path, info: dict) -> Path:
    """Add a stain pass (float16 ``STAIN_FILE``) to the release in ``path``; ``info`` (width,
    depth, provenance) becomes its config.json's "stain"."""
    path = Path(path)
    cfg = _release_config(path)
    _save_weights(net, path / STAIN_FILE)
    (path / CONFIG_FILE).write_text(json.dumps({**cfg, "stain": info}, indent=2) + "\n")
    return path


def _save_weights(net: DamageNet, file: Path) -> None:
    from safetensors.torch import save_file

    sd = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    save_file({k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()}, str(file))


def load_detector(path: str | Path | None = None) -> tuple[DamageNet, dict]:
    """Load released detector weights (eval mode, float32); clear error when missing."""
    path = Path(path) if path is not None else DETECTOR_WEIGHTS
    info = _release_config(path)
    return _load_net(path / WEIGHTS_FILE, info), info


def _release_config(path: Path) -> dict:
    """The config.json of the release in ``path``; clear error when the release is missing."""
    if not detector_available(path):
        raise EdgefillError(
            f"damage detector weights not found in {path}; use method='classical' "
            "(--method classical) or reinstall edgefill from a full checkout"
        )
    return json.loads((path / CONFIG_FILE).read_text())


def _load_net(w_file: Path, info: dict) -> DamageNet:
    from safetensors.torch import load_file

    net = DamageNet(
        int(info.get("width", 12)), int(info.get("depth", 3)), int(info.get("outputs", 2))
    )
    sd = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(w_file)).items()}
    try:
        net.load_state_dict(sd)
    except RuntimeError as exc:
        raise EdgefillError(f"{w_file}: does not match the detector architecture ({exc})") from None
    make_stoppable(net)  # a detection given up (backends.stoppable) ends at its next layer
    return net.eval().requires_grad_(False)


def load_stain_pass(path: str | Path | None = None) -> DamageNet | None:
    """The stain pass of the release in ``path`` (default: the shipped one), or None when its
    config.json names none (releases before session 21)."""
    path = Path(path) if path is not None else DETECTOR_WEIGHTS
    info = _release_config(path).get("stain")
    if info is None:
        return None
    if not (path / STAIN_FILE).is_file():
        raise EdgefillError(f"{path / STAIN_FILE} is missing; config.json names a stain pass")
    return _load_net(path / STAIN_FILE, {**info, "outputs": 1})


@functools.lru_cache(maxsize=2)
def _cached_detector(path: str) -> tuple[DamageNet, dict]:
    return load_detector(path)


@functools.lru_cache(maxsize=2)
def _cached_stain_pass(path: str) -> DamageNet | None:
    return load_stain_pass(path)


def detector_available(path: str | Path | None = None) -> bool:
    p = Path(path) if path is not None else DETECTOR_WEIGHTS
    return (p / CONFIG_FILE).is_file() and (p / WEIGHTS_FILE).is_file()


CONTEXT_MARGIN = 64  # px of mirrored photo around a small analysed photo (see net_probabilities)
SMALL_PHOTO = 256  # short side below which a photo gets that margin: the smallest training photo


@torch.inference_mode()
def net_probabilities(
    rgb: np.ndarray,
    net: DamageNet,
    tile: int = 512,
    overlap: int = 32,
    margin: int | None = None,
) -> np.ndarray:
    """Per-pixel damage probabilities float32 HxWx2 (line, blob; HxWx1 for a stain pass),
    tiled for large photos.

    The photo is mirrored outward by ``margin`` px first (default: ``CONTEXT_MARGIN`` for a
    photo whose short side is under ``SMALL_PHOTO``, else none), so that its border pixels get
    context instead of zero padding. A small photo is mostly border to a deep network: on the
    96 px scratched photo of ``tests/test_restore.py`` the session-20 release flagged 9 % of the
    pixels away from the scratches without the margin, 3 % with it. Scans get none: on the
    training scans it cost 20 % more time and lost tears, which touch the border."""
    if margin is None:
        margin = CONTEXT_MARGIN if min(rgb.shape[:2]) < SMALL_PHOTO else 0
    if margin > 0:
        pad = ((margin, margin), (margin, margin), (0, 0))
        big = np.pad(rgb, pad, mode="symmetric")
        return net_probabilities(big, net, tile, overlap, 0)[margin:-margin, margin:-margin]
    h, w = rgb.shape[:2]
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255.0
    out = np.zeros((h, w, net.head.out_channels), np.float32)
    step = tile - 2 * overlap
    for top in range(0, h, step):
        for left in range(0, w, step):
            y0, x0 = max(0, top - overlap), max(0, left - overlap)
            y1, x1 = min(h, top + step + overlap), min(w, left + step + overlap)
            patch = x[..., y0:y1, x0:x1]
            m = net.multiple
            ph, pw = (-patch.shape[-2]) % m, (-patch.shape[-1]) % m
            if ph or pw:
                mode = "reflect" if patch.shape[-2] > ph and patch.shape[-1] > pw else "replicate"
                patch = nn.functional.pad(patch, (0, pw, 0, ph), mode=mode)
            prob = torch.sigmoid(net(patch))[0, :, : y1 - y0, : x1 - x0].permute(1, 2, 0).numpy()
            ty, tx = top - y0, left - x0
            th, tw = min(step, h - top), min(step, w - left)
            out[top : top + th, left : left + tw] = prob[ty : ty + th, tx : tx + tw]
    return out


@torch.inference_mode()
def calibrate_detector(net: DamageNet, clean: list[np.ndarray], rate: float) -> float:
    """Shift ``net``'s output logits (in place) so that it flags ``rate`` of the pixels of the
    ``clean`` photos (uint8 HxWx3, no damage) at the default sensitivity, kind auto; returns
    the shift. Sets a release's false-alarm rate on photos of the user's choosing (the
    training photos), whatever the loss weighting made of its raw probabilities."""
    if not 0.0 < rate < 1.0:
        raise ValueError(f"rate must be in (0, 1), got {rate!r}")
    if not clean:
        raise ValueError("calibration needs at least one clean photo")
    net.eval()
    probs = [net_probabilities(rgb, net).max(2).ravel() for rgb in clean]
    p = np.concatenate(probs).astype(np.float64).clip(1e-7, 1 - 1e-7)
    # flagged <=> logit + shift >= logit of the default threshold
    t = _net_threshold(DEFAULT_SENSITIVITY)
    shift = math.log(t / (1 - t)) - float(np.quantile(np.log(p / (1 - p)), 1.0 - rate))
    net.head.bias += shift
    return shift


def _net_threshold(sensitivity: float) -> float:
    """Probability threshold: 0.5 at sensitivity 0.5, 0.1 at 0.9, 0.9 at 0.1."""
    return float(np.clip(1.0 - sensitivity, 0.02, 0.98))


def detect_net(
    rgb: np.ndarray,
    kind: str = "auto",
    sensitivity: float = DEFAULT_SENSITIVITY,
    net: DamageNet | None = None,
    grow: int = 0,
) -> np.ndarray:
    """Damage mask from the segmentation network; bool HxW."""
    if net is None:
        net, info = _cached_detector(str(DETECTOR_WEIGHTS))
        grow = int(info.get("grow", grow))
    prob = net_probabilities(rgb, net)
    channels = {"scratches": [0], "spots": [1], "auto": [0, 1]}[kind]
    mask = prob[..., channels].max(2) >= _net_threshold(sensitivity)
    if grow > 0:
        mask = cv2.dilate(mask.astype(np.uint8), _disk(grow)) > 0
    return mask


# ============================================================================ entry point


CONFIDENT = 0.75  # a region whose mean damage probability is at least this is "confident"


@dataclass(frozen=True)
class DamageRegion:
    """One connected region of flagged pixels (8-connected, in photo pixels)."""

    index: int  # its value in ``DamageMap.labels``
    x: int
    y: int
    w: int
    h: int
    area: int  # pixels
    confidence: float  # mean damage probability over the region's pixels, 0-1
    confident: bool  # confidence >= the map's ``confident_at``, and not a stain
    # Found by the stain pass alone: the picture under a water stain is intact, only tinted, and
    # inpainting it lost 5-9 dB on 6 of 8 training scans (docs/restoration.md, session 21), so a
    # stain is shown, never repaired by default.
    stain: bool = False

    def as_dict(self) -> dict:
        return {
            "bbox": [self.x, self.y, self.w, self.h],
            "area": self.area,
            "confidence": round(self.confidence, 4),
            "confident": self.confident,
            "stain": self.stain,
        }


@dataclass
class DamageMap:
    """What the detector found: every flagged pixel, grouped into regions with a confidence.

    A conservator's rule: repair the confident regions, show the uncertain ones to a person.
    Water stains (``DamageRegion.stain``) count as uncertain whatever their confidence. The
    classical detector has no probabilities: all its regions count as confident.
    """

    mask: np.ndarray  # bool HxW: every flagged pixel (rim included)
    labels: np.ndarray  # int32 HxW: 0 = not flagged, i = regions[i - 1]
    regions: list[DamageRegion]
    confident_at: float = CONFIDENT

    def _select(self, confident: bool) -> np.ndarray:
        keep = np.zeros(len(self.regions) + 1, bool)
        for r in self.regions:
            keep[r.index] = r.confident == confident
        return keep[self.labels]

    @property
    def confident(self) -> np.ndarray:
        """bool HxW: pixels of the confident regions (what ``restore`` repairs by default)."""
        return self._select(True)

    @property
    def uncertain(self) -> np.ndarray:
        """bool HxW: pixels of the uncertain regions (reported, left alone by default)."""
        return self._select(False)

    @property
    def confidence(self) -> np.ndarray:
        """float32 HxW: each flagged pixel's region confidence, 0 elsewhere."""
        lut = np.zeros(len(self.regions) + 1, np.float32)
        for r in self.regions:
            lut[r.index] = r.confidence
        return lut[self.labels]

    def confidence_levels(self) -> np.ndarray:
        """uint8 HxW: each flagged pixel's region confidence x 255 (at least 1), 0 elsewhere; a
        stain's level is kept below ``confident_at`` x 255, so whoever splits the levels there
        (the web page) shows it as left alone."""
        levels = np.where(self.mask, np.clip(np.round(self.confidence * 255), 1, 255), 0)
        is_stain = np.zeros(len(self.regions) + 1, bool)
        for r in self.regions:
            is_stain[r.index] = r.stain
        cap = max(1, round(self.confident_at * 255) - 1)  # the page's cut is round(at x 255)
        return np.where(is_stain[self.labels], np.minimum(levels, cap), levels).astype(np.uint8)

    def summary(self) -> dict:
        conf = [r for r in self.regions if r.confident]
        return {
            "regions": len(self.regions),
            "confident_regions": len(conf),
            "uncertain_regions": len(self.regions) - len(conf),
            "stain_regions": sum(r.stain for r in self.regions),
            "flagged_fraction": round(float(self.mask.mean()), 6),
            "confident_fraction": round(float(self.confident.mean()), 6),
            "confident_at": self.confident_at,
        }


def _check_args(rgb: np.ndarray, kind: str, sensitivity: float, method: str) -> np.ndarray:
    if kind not in DAMAGE_KINDS:
        raise EdgefillError(f"unknown damage kind {kind!r}; choose from {', '.join(DAMAGE_KINDS)}")
    if method not in DETECT_METHODS:
        raise EdgefillError(f"unknown detector {method!r}; choose from {', '.join(DETECT_METHODS)}")
    if not (isinstance(sensitivity, (int, float)) and 0.0 <= sensitivity <= 1.0):
        raise EdgefillError(f"sensitivity must be a number in [0, 1], got {sensitivity!r}")
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise EdgefillError(f"expected an RGB uint8 HxWx3 array, got {rgb.dtype} {rgb.shape}")
    return rgb


def at_stain_size(rgb: np.ndarray) -> np.ndarray:
    """The photo as the stain pass sees it: resized so that its shorter side is ``STAIN_SIZE``."""
    h, w = rgb.shape[:2]
    f = STAIN_SIZE / min(h, w)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_CUBIC)


def stain_probability(rgb: np.ndarray, stain: DamageNet) -> np.ndarray:
    """Water-stain probability float32 HxW from a release's stain pass.

    A stain is a faint tint tens to hundreds of pixels across whose only sharp trace is its
    tide line: the damage network, which sees 192 px crops at the working size, finds almost
    none (session 20). The stain pass sees the whole photo at ``STAIN_SIZE``, where a stain is
    10-50 px in radius, and its probabilities are scaled back to the photo."""
    h, w = rgb.shape[:2]
    prob = net_probabilities(at_stain_size(rgb), stain)[..., 0]
    return cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)


def damage_probability(
    rgb: np.ndarray,
    kind: str = "auto",
    net: DamageNet | None = None,
    min_size: int = 0,
    detector: str | Path | None = None,
    stain: DamageNet | None = None,
) -> tuple[np.ndarray, int]:
    """The network's damage probability for ``kind`` (float32 HxW) and its release's ``grow``.

    Without ``net``, the release in the folder ``detector`` (default: the shipped one) runs with
    its own ``grow``, ``min_size`` and stain pass. A photo whose short side is under ``min_size``
    (the smallest scan the release was trained on) is analysed upscaled to it, as a scan of a
    small print would be, and the probabilities are scaled back. ``stain``: a stain pass for
    ``net`` (``load_stain_pass``); its probability joins the blob channel (kinds spots, auto)."""
    prob, stains, grow = _probabilities(rgb, kind, net, min_size, detector, stain)
    return (prob if stains is None else np.maximum(prob, stains)), grow


def _probabilities(
    rgb: np.ndarray,
    kind: str,
    net: DamageNet | None,
    min_size: int,
    detector: str | Path | None,
    stain: DamageNet | None,
) -> tuple[np.ndarray, np.ndarray | None, int]:
    """``damage_probability``'s parts: (damage network's, stain pass's or None, grow)."""
    grow = 0
    if net is None:
        net, info = _cached_detector(str(detector or DETECTOR_WEIGHTS))
        grow, min_size = int(info.get("grow", 0)), int(info.get("min_size", 0))
        stain = _cached_stain_pass(str(detector or DETECTOR_WEIGHTS))
    h, w = rgb.shape[:2]
    f = min_size / min(h, w)
    if f > 1:
        big = (round(w * f), round(h * f))
        prob = net_probabilities(cv2.resize(rgb, big, interpolation=cv2.INTER_CUBIC), net)
        prob = cv2.resize(prob, (w, h), interpolation=cv2.INTER_AREA)
    else:
        prob = net_probabilities(rgb, net)
    channels = {"scratches": [0], "spots": [1], "auto": [0, 1]}[kind]
    stains = None if stain is None or kind == "scratches" else stain_probability(rgb, stain)
    return prob[..., channels].max(2), stains, grow


def analyse_damage(
    rgb: np.ndarray,
    kind: str = "auto",
    sensitivity: float = DEFAULT_SENSITIVITY,
    method: str = "auto",
    work_size: int | None = WORK_SIZE,
    confident_at: float = CONFIDENT,
    net: DamageNet | None = None,
    grow: int = 0,
    min_size: int = 0,
    detector: str | Path | None = None,
    stain: DamageNet | None = None,
) -> DamageMap:
    """Detect damage and group it into regions with a confidence (``DamageMap``).

    The arguments are those of ``detect_damage``; ``confident_at`` (0-1) is the mean probability
    a region needs to count as confident. ``net``: a loaded detector instead of the shipped one,
    with ``grow`` its rim dilation, ``min_size`` its smallest working size and ``stain`` its
    stain pass (for benchmarks that vary them; a release folder brings its own, see
    ``damage_probability``).
    """
    if not (isinstance(confident_at, (int, float)) and 0.0 <= confident_at <= 1.0):
        raise EdgefillError(f"confident_at must be a number in [0, 1], got {confident_at!r}")
    flagged, prob, stained = _flag(
        rgb, kind, sensitivity, method, work_size, net, grow, min_size, detector, stain
    )
    return damage_map(flagged, prob, confident_at, stained)


def at_work_size(rgb: np.ndarray, work_size: int | None = WORK_SIZE) -> np.ndarray:
    """The photo as the detectors analyse it: downscaled (area) so that its shorter side is at
    most ``work_size``; the photo itself when it is not larger (or ``work_size`` is None)."""
    h, w = rgb.shape[:2]
    scale = 1.0 if work_size is None else min(1.0, work_size / min(h, w))
    if scale >= 1.0:
        return rgb
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def check_detector(method: str, detector: str | Path | None) -> None:
    """Refuse a detector folder with the classical method, or one that holds no release."""
    if detector is None:
        return
    if method == "classical":
        raise EdgefillError(
            "a detector folder (--detector) needs method 'net' or 'auto', not 'classical'"
        )
    _cached_detector(str(detector))


def _flag(
    rgb: np.ndarray,
    kind: str,
    sensitivity: float,
    method: str,
    work_size: int | None,
    net: DamageNet | None = None,
    grow: int = 0,
    min_size: int = 0,
    detector: str | Path | None = None,
    stain: DamageNet | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(flagged bool HxW, damage probability float32 HxW, flagged by the stain pass alone bool
    HxW or None without one) at the photo's size."""
    rgb = _check_args(rgb, kind, sensitivity, method)
    check_detector(method, detector)
    if detector is not None:
        method = "net"
    if method == "auto":
        method = "net" if (net is not None or detector_available()) else "classical"
    h, w = rgb.shape[:2]
    small = at_work_size(rgb, work_size)
    stained = None
    if method == "net":
        prob, stains, release_grow = _probabilities(small, kind, net, min_size, detector, stain)
        grow = release_grow if net is None else grow
        t = _net_threshold(sensitivity)
        flagged = prob >= t
        if stains is not None:
            stained = (stains >= t) & ~flagged
            flagged |= stained
            prob = np.maximum(prob, stains)
        if grow > 0:  # the rim: a measured dilation, part of the release (config.json "grow")
            flagged = cv2.dilate(flagged.astype(np.uint8), _disk(grow)) > 0
    else:
        flagged = detect_classical(small, kind, sensitivity)
        prob = flagged.astype(np.float32)
    if small.shape[:2] != (h, w):  # generous upscaling: a pixel partly covered by damage is damaged
        flagged = _upscaled(flagged, (w, h))
        prob = cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)
        stained = None if stained is None else _upscaled(stained, (w, h))
    return flagged, prob, stained


def _upscaled(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_LINEAR) >= 0.25


def damage_map(
    flagged: np.ndarray,
    prob: np.ndarray,
    confident_at: float = CONFIDENT,
    stained: np.ndarray | None = None,
) -> DamageMap:
    """Group flagged pixels (bool HxW) into 8-connected regions, each with the mean of ``prob``
    (float HxW, 0-1) over its pixels as its confidence. ``stained`` (bool HxW): pixels flagged by
    the stain pass alone; they form regions of their own (stains, never confident), so that a
    scratch across a stain stays a scratch."""
    flagged = np.asarray(flagged, bool)
    stained = np.zeros_like(flagged) if stained is None else np.asarray(stained, bool) & flagged
    n1, lab1, stats1, _ = cv2.connectedComponentsWithStats(
        (flagged & ~stained).astype(np.uint8), connectivity=8
    )
    n2, lab2, stats2, _ = cv2.connectedComponentsWithStats(stained.astype(np.uint8), connectivity=8)
    labels = np.where(stained, lab2 + (n1 - 1), lab1)
    stats = np.concatenate([stats1, stats2[1:]])
    n = n1 + n2 - 1
    sums = np.bincount(labels.ravel(), weights=np.asarray(prob, np.float64).ravel(), minlength=n)
    regions = []
    for i in range(1, n):
        x, y, bw, bh, area = (int(v) for v in stats[i])
        c = float(np.clip(sums[i] / max(area, 1), 0.0, 1.0))
        stain = i >= n1
        regions.append(
            DamageRegion(i, x, y, bw, bh, area, c, c >= confident_at and not stain, stain)
        )
    return DamageMap(flagged, labels.astype(np.int32), regions, float(confident_at))


def detect_damage(
    rgb: np.ndarray,
    kind: str = "auto",
    sensitivity: float = DEFAULT_SENSITIVITY,
    method: str = "auto",
    work_size: int | None = WORK_SIZE,
    detector: str | Path | None = None,
) -> np.ndarray:
    """Damage mask of an RGB uint8 HxWx3 photo: bool HxW, True = damaged (to be inpainted).

    kind: "scratches" (thin line-like defects: scratches, folds, hairs), "spots" (dust, specks,
    stains) or "auto" (both). sensitivity in [0, 1]: higher flags fainter damage.
    method: "net", "classical", or "auto" (the network when its weights are installed).
    work_size: photos whose shorter side is larger are analysed downscaled to it and the mask is
    scaled back (the detectors look for defects 1-15 px across, as on a print scanned at about
    300 dpi; on a large scan the same dust is wider). None analyses at full resolution.
    detector: a released detector folder (``config.json`` + ``detector.safetensors``, e.g. one
    trained with ``benchmarks/bench_detect.py train`` and exported) instead of the shipped one.
    Every flagged pixel, confident or not; ``analyse_damage`` tells them apart.
    """
    flagged, _, _ = _flag(rgb, kind, sensitivity, method, work_size, detector=detector)
    return np.asarray(flagged, bool)


# ============================================================================ scoring


def mask_scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Pixel precision / recall / F1 / IoU of a predicted damage mask (counts summed by callers)."""
    tp = float(np.count_nonzero(pred & truth))
    fp = float(np.count_nonzero(pred & ~truth))
    fn = float(np.count_nonzero(~pred & truth))
    return {"tp": tp, "fp": fp, "fn": fn}


def summarise(counts: list[dict[str, float]]) -> dict[str, float]:
    tp = sum(c["tp"] for c in counts)
    fp = sum(c["fp"] for c in counts)
    fn = sum(c["fn"] for c in counts)
    precision = tp / max(tp + fp, 1.0)
    recall = tp / max(tp + fn, 1.0)
    return {
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / max(precision + recall, 1e-8),
        "iou": tp / max(tp + fp + fn, 1.0),
    }


# ============================================================================ training


def _photo_cache(files: list[Path], short_side: int) -> list[np.ndarray]:
    from edgefill.image import load_rgb, shrink_short_side

    photos = []
    for f in files:
        rgb, _ = load_rgb(f)
        photos.append(shrink_short_side(rgb, short_side))
    return photos


def training_batch(
    photos: list[np.ndarray], rng: np.random.Generator, batch: int, crop: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random crops (photos cached at 256 px short side) with synthetic damage at 256 px scale.

    Returns (images N3HW float in [0, 1], targets N2HW float {0, 1}: line, blob).
    """
    xs, ys = [], []
    for _ in range(batch):
        rgb = photos[int(rng.integers(len(photos)))]
        h, w = rgb.shape[:2]
        if min(h, w) < crop:
            s = crop / min(h, w)
            rgb = cv2.resize(rgb, (math.ceil(w * s), math.ceil(h * s)), cv2.INTER_CUBIC)
            h, w = rgb.shape[:2]
        top, left = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
        patch = rgb[top : top + crop, left : left + crop]
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        if rng.random() < 0.15:  # old photos are often monochrome or sepia
            g = to_gray(patch)[..., None]
            tint = np.array([1.0, 1.0, 1.0]) if rng.random() < 0.5 else np.array([1.0, 0.88, 0.7])
            patch = np.clip(g * tint * 255, 0, 255).astype(np.uint8)
        d = synth_damage(np.ascontiguousarray(patch), rng, amount=rng.uniform(0.0, 1.5), scale=1.0)
        img = d.image
        if rng.random() < 0.2:  # a soft scan
            img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 0.7))
        if rng.random() < 0.3:  # JPEG artefacts
            q = int(rng.integers(70, 96))
            img = cv2.imdecode(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])[1], 1)
        xs.append(torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1))
        ys.append(torch.from_numpy(np.stack([d.labels == LINE, d.labels == BLOB])))
    return torch.stack(xs).float() / 255.0, torch.stack(ys).float()


def _flip_and_tint(patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A scan training crop mirrored half the time, and monochrome or sepia a quarter of the
    time, as old photos often are."""
    if rng.random() < 0.5:
        patch = np.ascontiguousarray(patch[:, ::-1])
    if rng.random() < 0.25:
        g = to_gray(patch)[..., None]
        tint = np.array([1.0, 1.0, 1.0]) if rng.random() < 0.5 else np.array([1.0, 0.88, 0.7])
        patch = np.clip(g * tint * 255, 0, 255).astype(np.uint8)
    return patch


_TRAIN_ODDS = {"tear": 0.1, "stain": 0.12, "craquelure": 0.2}  # the rest 0.3; large kinds rarer


def scan_training_batch(
    photos: list[np.ndarray],
    rng: np.random.Generator,
    batch: int,
    crop: int,
    kind_odds: dict[str, float] | None = None,
    dust_density: float = 1.0,
    spots: np.ndarray | None = None,
    spot_odds: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Crops of virtual scans with realistic damage (``edgefill.damage``), as the detector sees them.

    Each sample: a photo upscaled to a random short side in [640, 1024] px (the detector's working
    size), a crop (half of them where the photo has the most fine structure: hard negatives),
    a random subset of the damage types (a quarter of the crops stay clean), monochrome or sepia
    at times, then grain / half-tone and JPEG. Targets N2HW (line-like, blob-like) are exact.
    ``kind_odds`` overrides the chance that a crop gets a kind (``_TRAIN_ODDS``, else 0.3);
    ``dust_density`` multiplies dust specks per area. ``spots`` (int N x 3: photo index, y, x in
    that photo's pixels, from ``false_alarm_spots``): with chance ``spot_odds`` a crop is centred
    on one of them instead (mined hard negatives: real content a detector mistook for damage).
    """
    from edgefill.damage import DAMAGE_TYPES, render_damage, scan_effects

    unknown = set(kind_odds or {}) - set(DAMAGE_TYPES)
    if unknown:
        raise ValueError(f"unknown damage types in kind_odds: {', '.join(sorted(unknown))}")
    odds = {**_TRAIN_ODDS, **(kind_odds or {})}
    xs, ys = [], []
    for _ in range(batch):
        spot = None
        if spots is not None and len(spots) and rng.random() < spot_odds:
            spot = spots[int(rng.integers(len(spots)))]
            rgb = photos[int(spot[0])]
        else:
            rgb = photos[int(rng.integers(len(photos)))]
        h, w = rgb.shape[:2]
        short = float(rng.uniform(640, 1024))
        f = max(short / min(h, w), crop / min(h, w))
        src = min(min(h, w), math.ceil(crop / f) + 2)  # the photo's pixels one crop needs
        cands = [(int(rng.integers(0, h - src + 1)), int(rng.integers(0, w - src + 1)))]
        if spot is not None:  # the crop around a mined false alarm
            cands = [
                (
                    int(np.clip(spot[1] - src // 2, 0, h - src)),
                    int(np.clip(spot[2] - src // 2, 0, w - src)),
                )
            ]
        elif rng.random() < 0.5:  # hard negatives: the busiest of 8 candidate crops
            cands += [
                (int(rng.integers(0, h - src + 1)), int(rng.integers(0, w - src + 1)))
                for _ in range(7)
            ]
            gray = rgb.mean(2)
            busy = [
                float(np.abs(np.diff(gray[t : t + src, x : x + src], axis=1)).mean())
                for t, x in cands
            ]
            cands = [cands[int(np.argmax(busy))]]
        top, left = cands[0]
        up = cv2.resize(
            rgb[top : top + src, left : left + src],
            (math.ceil(src * f), math.ceil(src * f)),
            interpolation=cv2.INTER_CUBIC,
        )
        patch = np.ascontiguousarray(up[:crop, :crop])
        patch = _flip_and_tint(patch, rng)
        kinds = [k for k in DAMAGE_TYPES if rng.random() < odds.get(k, 0.3)]
        if rng.random() < 0.25:
            kinds = []
        rng.shuffle(kinds)
        sc = render_damage(patch, rng, kinds, scale=short / 1000, dust_density=dust_density)
        img = scan_effects(sc.image, rng, scale=short / 1000)
        xs.append(torch.from_numpy(img).permute(2, 0, 1))
        ys.append(torch.from_numpy(sc.line_blob()))
    return torch.stack(xs).float() / 255.0, torch.stack(ys).float()


def stain_training_batch(
    photos: list[np.ndarray], rng: np.random.Generator, batch: int, crop: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Crops of virtual scans as the stain pass sees them: the photo at twice ``STAIN_SIZE``,
    water stains (6 crops in 10) and other damage at random (negatives), monochrome or sepia at
    times, grain and JPEG, then downscaled (area) to ``STAIN_SIZE``; targets N1HW: the stains.

    A scan's damage scales with its size (``edgefill.damage``), so at a fixed analysis size a
    stain is 10-50 px across in radius whatever the scan's resolution."""
    from edgefill.damage import DAMAGE_TYPES, render_damage, scan_effects

    stain_label = DAMAGE_TYPES.index("stain") + 1
    big = 2 * STAIN_SIZE
    xs, ys = [], []
    for _ in range(batch):
        rgb = photos[int(rng.integers(len(photos)))]
        h, w = rgb.shape[:2]
        f = big / min(h, w)
        size = (max(2 * crop, round(w * f)), max(2 * crop, round(h * f)))
        up = cv2.resize(rgb, size, interpolation=cv2.INTER_CUBIC if f > 1 else cv2.INTER_AREA)
        top = int(rng.integers(0, size[1] - 2 * crop + 1))
        left = int(rng.integers(0, size[0] - 2 * crop + 1))
        patch = np.ascontiguousarray(up[top : top + 2 * crop, left : left + 2 * crop])
        patch = _flip_and_tint(patch, rng)
        kinds = [k for k in DAMAGE_TYPES if k != "stain" and rng.random() < 0.15]
        if rng.random() < 0.6:
            kinds.append("stain")
        rng.shuffle(kinds)
        sc = render_damage(patch, rng, kinds, scale=big / 1000)
        img = scan_effects(sc.image, rng, scale=big / 1000)
        img = cv2.resize(img, (crop, crop), interpolation=cv2.INTER_AREA)
        truth = (sc.labels == stain_label).astype(np.float32)
        truth = cv2.resize(truth, (crop, crop), interpolation=cv2.INTER_AREA) >= 0.5
        xs.append(torch.from_numpy(img).permute(2, 0, 1))
        ys.append(torch.from_numpy(truth[None]))
    return torch.stack(xs).float() / 255.0, torch.stack(ys).float()


@torch.inference_mode()
def false_alarm_spots(
    net: DamageNet,
    photos: list[np.ndarray],
    rng: np.random.Generator,
    short_side: int = 640,
    per_photo: int = 64,
    every: int = 1,
) -> np.ndarray:
    """Where ``net`` flags undamaged photos: int N x 3 (photo index, y, x in the photo's pixels):
    one random flagged pixel in ``every`` (at least one where any is flagged), at most
    ``per_photo`` per photo; with ``every`` > 1 a photo that is flagged more gets more spots.

    Each photo is seen as training sees it (upscaled to ``short_side``, grain and JPEG) and
    flagged at the default sensitivity, so ``net`` should be a calibrated release. Crops centred
    on these spots (``scan_training_batch(spots=...)``) teach the next detector the real content
    (animal markings, bark, lettering) that this one takes for damage."""
    from edgefill.damage import scan_effects

    net.eval()
    found = [np.zeros((0, 3), np.int64)]
    for i, rgb in enumerate(photos):
        h, w = rgb.shape[:2]
        f = short_side / min(h, w)
        big = cv2.resize(rgb, (round(w * f), round(h * f)), interpolation=cv2.INTER_CUBIC)
        img = scan_effects(big, rng, scale=short_side / 1000)
        prob = net_probabilities(img, net).max(2)
        ys, xs = np.nonzero(prob >= _net_threshold(DEFAULT_SENSITIVITY))
        keep = min(per_photo, -(-len(ys) // every))
        if len(ys) > keep:
            pick = rng.choice(len(ys), keep, replace=False)
            ys, xs = ys[pick], xs[pick]
        yx = np.stack([np.minimum(ys / f, h - 1), np.minimum(xs / f, w - 1)], 1).astype(np.int64)
        found.append(np.concatenate([np.full((len(ys), 1), i, np.int64), yx], 1))
    return np.concatenate(found)


def mixed_training_batch(
    photos: list[np.ndarray],
    scans: list[np.ndarray],
    rng: np.random.Generator,
    batch: int,
    crop: int,
    **scan_options,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Half a ``training_batch`` (photos cached at 256 px: dense thin damage and dust, as the
    first release saw them), half a ``scan_training_batch`` (photos cached at 512 px;
    ``scan_options`` go to it)."""
    a = training_batch(photos, rng, batch // 2, crop)
    b = scan_training_batch(scans, rng, batch - batch // 2, crop, **scan_options)
    return torch.cat([a[0], b[0]]), torch.cat([a[1], b[1]])


def _old_channels(old: DamageNet, new: DamageNet, key: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the old network's output and input channels of conv weight ``key`` sit in the new.

    A decoder block reads [upsampled coarse features, skip]: each part keeps its place at the
    start of its own (possibly wider) group.
    """
    ow = [old.head.in_channels * (i + 1) for i in range(old.depth)]
    nw = [new.head.in_channels * (i + 1) for i in range(new.depth)]
    block, layer = key.split(".")[:2]
    if block == "head":
        cout, cin = range(2), range(ow[0])
    else:
        level = int(block.removeprefix("enc").removeprefix("up"))
        cout = range(ow[level - 1])
        if layer != "0":  # the block's second conv reads the block's own output
            cin = cout
        elif block.startswith("enc"):
            cin = range(3) if level == 1 else range(ow[level - 2])
        else:
            cin = [*range(ow[level]), *(nw[level] + c for c in range(ow[level - 1]))]
    return torch.tensor(list(cout))[:, None], torch.tensor(list(cin))[None, :]


def widen_into(old: DamageNet, new: DamageNet) -> None:
    """Warm-start ``new`` from ``old`` (width and depth at least the old ones).

    Old weights go into their channels and every weight from a new channel into an old one is
    zero, so at equal depth ``new`` computes exactly the old function and its new channels
    (fresh init) can learn. Layers ``old`` lacks (a deeper ``new``) keep their fresh init.
    """
    if new.head.in_channels < old.head.in_channels:
        raise ValueError(
            f"cannot narrow a detector: width {old.head.in_channels} -> {new.head.in_channels}"
        )
    if new.depth < old.depth:  # its deepest layers would be dropped without a word
        raise ValueError(f"cannot make a detector shallower: depth {old.depth} -> {new.depth}")
    mine = new.state_dict()
    with torch.no_grad():
        for key, value in old.state_dict().items():
            target = mine.get(key)
            if target is None:
                continue
            if target.shape == value.shape:
                target.copy_(value)
            elif value.dim() == 4:  # conv weight
                cout, cin = _old_channels(old, new, key)
                target[cout.squeeze(1)] = 0.0
                target[cout, cin] = value
            else:  # conv bias or BatchNorm vector: the old channels come first
                target[: value.shape[0]] = value
    new.load_state_dict(mine)


def train_detector(
    files: list[Path],
    out_dir: str | Path,
    steps: int = 3000,
    batch: int = 12,
    crop: int = 96,
    width: int = 12,
    lr: float = 2e-3,
    seed: int = 0,
    threads: int = 1,
    save_every: int = 100,
    stop_at: int | None = None,
    depth: int = 3,
    synth: str = "simple",
    pos_weight: float = 4.0,
    init: str | Path | None = None,
    dice_weight: float = 1.0,
    kind_odds: dict[str, float] | None = None,
    dust_density: float = 1.0,
    hard_negatives: str | Path | None = None,
    hard_odds: float = 0.3,
    hard_every: int = 1,
    hard_per_photo: int = 64,
    hard_skip: list[Path] | None = None,
) -> DamageNet:
    """Train ``DamageNet`` on synthetic damage over ``files``; resumes from ``out_dir/last.pt``.

    Step s draws its batch from rng([seed, s]), so a resumed run sees the same batches as an
    uninterrupted one. bf16 autocast on CPU (AMX) when available. ``stop_at`` ends the run early
    (after that step, checkpointed) without changing its schedule. ``init``: a released detector folder to start
    from, as wide and deep or less (``widen_into``). ``synth``: "simple" (the
    first release: ``synth_damage`` on 256 px photos), "scan" (``scan_training_batch``) or
    "mix" (half of each batch each: the thin damage and dust of the first, dense as the first
    release saw them, with the scan damage kinds) or "stain" (a one-output stain pass,
    ``stain_training_batch``; no ``init``); ``kind_odds`` and ``dust_density`` shape
    the scan damage (``scan_training_batch``). ``hard_negatives``: a calibrated detector
    release; its false alarms on the photos (``false_alarm_spots``, mined once and kept in
    ``out_dir/hard_spots.npy``; ``hard_every``, ``hard_per_photo``: its ``every`` and
    ``per_photo``) centre ``hard_odds`` of the scan crops. ``hard_skip``: files not mined (the
    photos a release is calibrated on: mined, they stop being a fair sample of false alarms).
    Loss: BCE (``pos_weight`` on damaged pixels) + ``dice_weight`` x soft Dice (Dice favours
    recall on rare damage and inflates probabilities: ``calibrate_detector`` sets the threshold).
    """
    from tqdm import tqdm

    from edgefill.checkpoint import atomic_torch_save, load_checkpoint

    torch.set_num_threads(threads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    if synth not in ("simple", "scan", "mix", "stain"):
        raise ValueError(f"synth must be 'simple', 'scan', 'mix' or 'stain', got {synth!r}")
    if hard_negatives is not None and (synth not in ("scan", "mix") or not 0.0 < hard_odds <= 1.0):
        raise ValueError("hard_negatives needs synth 'scan' or 'mix' and hard_odds in (0, 1]")
    if init is not None and synth == "stain":
        raise ValueError("a stain pass starts fresh: init is for the damage network")
    outputs = 1 if synth == "stain" else 2
    net = DamageNet(width, depth, outputs)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.05)
    start = 0
    if init is not None:  # warm start from a release; layers it lacks keep their fresh init
        widen_into(load_detector(init)[0], net)
    if (out / "last.pt").is_file():
        ck = load_checkpoint(out / "last.pt")
        # The one-cycle schedule comes back from the checkpoint: another steps or lr would be
        # ignored without a word, so they are refused (stop_at ends a run early instead).
        saved = (ck["scheduler"]["total_steps"], ck["optimizer"]["param_groups"][0]["max_lr"])
        if saved != (steps, lr):
            raise ValueError(
                f"{out} holds a run of {saved[0]} steps at lr {saved[1]:g}, not {steps} at "
                f"{lr:g}: resume it with those, or choose another out_dir"
            )
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        start = int(ck["step"])
    photos = _photo_cache(files, 256) if synth in ("simple", "mix") else None
    scans = _photo_cache(files, 512) if synth in ("scan", "mix", "stain") else None
    spots = None
    if hard_negatives is not None:
        spots_file = out / "hard_spots.npy"
        if not spots_file.is_file():
            miner, _ = load_detector(hard_negatives)
            skip = {Path(f) for f in hard_skip or []}
            mined = np.array([i for i, f in enumerate(files) if Path(f) not in skip], np.int64)
            found = false_alarm_spots(
                miner,
                [scans[i] for i in mined],
                np.random.default_rng([seed, 999]),
                per_photo=hard_per_photo,
                every=hard_every,
            )
            found[:, 0] = mined[found[:, 0]]  # back to indices into ``files``
            np.save(spots_file, found)
        spots = np.load(spots_file)

    def make_batch(rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if synth == "simple":
            return training_batch(photos, rng, batch, crop)
        if synth == "stain":
            return stain_training_batch(scans, rng, batch, crop)
        scan_options = {
            "kind_odds": kind_odds,
            "dust_density": dust_density,
            "spots": spots,
            "spot_odds": hard_odds,
        }
        if synth == "scan":
            return scan_training_batch(scans, rng, batch, crop, **scan_options)
        return mixed_training_batch(photos, scans, rng, batch, crop, **scan_options)

    pw = torch.full((1, outputs, 1, 1), pos_weight)
    log = open(out / "train_log.csv", "a")
    net.train()
    end = steps if stop_at is None else min(steps, stop_at)
    for step in tqdm(range(start, end), initial=start, total=steps, desc="detector"):
        x, y = make_batch(np.random.default_rng([seed, step]))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = net(x)
        logits = logits.float()
        bce = nn.functional.binary_cross_entropy_with_logits(logits, y, pos_weight=pw)
        p = torch.sigmoid(logits)
        inter = (p * y).sum((0, 2, 3))
        dice = 1 - (2 * inter + 1) / (p.sum((0, 2, 3)) + y.sum((0, 2, 3)) + 1)
        loss = bce + dice_weight * dice.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        log.write(f"{step + 1},{loss.item():.5f},{bce.item():.5f},{dice.mean().item():.5f}\n")
        if (step + 1) % save_every == 0 or step + 1 == end:
            log.flush()
            atomic_torch_save(
                {
                    "model": net.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "step": step + 1,
                    "width": width,
                    "depth": depth,
                    "outputs": outputs,
                    "synth": synth,
                },
                out / "last.pt",
            )
    log.close()
    return net.eval()
