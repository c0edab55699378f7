"""Masks: reading mask files and seeded generators (boxes, free-form strokes, scratches, LaMa sets).

A mask is a bool array HxW (True = hole) at the numpy level and float {0, 1} N1HW as a tensor.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from edgefill.config import DEFAULT_MAX_PIXELS, MASK_KINDS
from edgefill.errors import EdgefillError
from edgefill.image import (
    TURNING,
    ImageInput,
    Photo,
    load_photo,
    open_image,
    resize_hole,
    turn_upright,
)

# Hole-ratio buckets used for evaluation (as in the EdgeConnect paper), as (low, high) fractions.
BUCKETS: tuple[tuple[float, float], ...] = tuple((i / 10, (i + 1) / 10) for i in range(6))


def bucket_name(low: float, high: float) -> str:
    return f"{round(low * 100)}-{round(high * 100)}%"


def bucket_of(ratio: float) -> str | None:
    """Name of the bucket holding ``ratio`` (low inclusive, high exclusive), None past 60 %."""
    for low, high in BUCKETS:
        if low <= ratio < high:
            return bucket_name(low, high)
    return None


def parse_bucket(name: str) -> tuple[float, float]:
    """'10-20%' (or '10-20') -> (0.1, 0.2)."""
    try:
        lo, hi = name.rstrip("%").split("-")
        low, high = float(lo) / 100, float(hi) / 100
    except ValueError:
        raise EdgefillError(
            f"bad bucket {name!r}: expected LOW-HIGH in percent, e.g. 10-20"
        ) from None
    if not 0 <= low < high <= 1:
        raise EdgefillError(f"bad bucket {name!r}: need 0 <= LOW < HIGH <= 100")
    return low, high


def hole_ratio(mask: np.ndarray) -> float:
    return float(np.count_nonzero(mask)) / mask.size if mask.size else 0.0


# ----------------------------------------------------------------------------- reading


def check_threshold(threshold: int) -> None:
    """A mask threshold is a pixel value 1-255: 0 or less would make every pixel the hole, and
    above 255 no pixel could be one."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, np.integer)):
        raise EdgefillError(f"mask threshold must be a whole number 1-255, got {threshold!r}")
    if not 1 <= threshold <= 255:
        raise EdgefillError(
            f"mask threshold must be between 1 and 255, got {threshold} (0 or less would make "
            "every pixel the hole; above 255 nothing could be)"
        )


# JPEG masks hold compression noise around every stroke (values of a few levels): read with the
# default threshold 1, a mask of one line and one disc saved at quality 90 gave a hole 33 %
# larger, with 62 specks around it; from 128 on, exactly the drawn hole.
JPEG_MASK_THRESHOLD = 128


# Damage and objects to remove rarely cover most of a photo: a mask whose hole is larger than
# this share was most likely made with white marking what to keep (as some editors do).
INVERTED_MASK_SHARE = 0.75


def mask_from_array(arr: np.ndarray, name: str = "mask", threshold: int = 1) -> np.ndarray:
    """Hole = pixel value >= threshold (default: any nonzero value). Colour masks are refused.

    A 2- or 4-channel array (grey or RGB plus alpha) counts transparent pixels (alpha < 128) as
    "not hole", whatever their colour: a mask painted on a transparent layer marks only the
    strokes."""
    check_threshold(threshold)
    opaque = None
    if arr.ndim == 3 and arr.shape[2] in (2, 4):
        alpha = arr[..., -1]
        if np.issubdtype(alpha.dtype, np.floating):
            opaque = alpha >= 0.5
        else:
            opaque = alpha >= (32768 if alpha.dtype == np.uint16 else 128)
        arr = arr[..., :-1]
    if arr.ndim == 3:
        if arr.shape[2] == 3:
            seen = arr if opaque is None else arr[opaque]  # colour under transparency is unseen
            if not (
                np.array_equal(seen[..., 0], seen[..., 1])
                and np.array_equal(seen[..., 0], seen[..., 2])
            ):
                raise EdgefillError(
                    f"{name}: mask has colour; expected a black-and-white image (white = hole): "
                    "strokes painted on a copy of the photo are not a mask, paint them white "
                    "on black"
                )
            arr = arr[..., 0]
        elif arr.shape[2] == 1:
            arr = arr[..., 0]
    if arr.ndim != 2:
        raise EdgefillError(f"{name}: mask must be a 2-D array, got shape {arr.shape}")
    if arr.dtype == bool:
        hole = arr.copy()
    elif not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise EdgefillError(f"{name}: unsupported mask dtype {arr.dtype}")
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise EdgefillError(f"{name}: mask contains NaN or infinite values")
        hole = arr >= (threshold / 255.0 if arr.max(initial=0) <= 1.0 else threshold)
    else:
        hole = arr >= threshold
    return hole if opaque is None else hole & opaque


def load_mask(
    src: ImageInput,
    size: tuple[int, int] | None = None,
    threshold: int = 1,
    resize: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    orientation: int = 1,
) -> np.ndarray:
    """Read a mask (file, bytes, PIL image or array) as bool HxW; ``size`` is the photo's
    (width, height). Transparent pixels of a mask with alpha are never the hole; a JPEG mask's
    threshold is at least JPEG_MASK_THRESHOLD (its compression noise is not a hole).

    A mask of the photo's size turned by a quarter, when the photo was turned upright by that
    EXIF ``orientation`` (``ImageMeta.orientation``), was made on its stored pixels: it is
    turned the same way. Any other wrong size is an error naming both sizes unless ``resize``
    is set (the hole resized, ``image.resize_hole``).
    """
    check_threshold(threshold)
    name = str(src) if isinstance(src, (str, Path)) else "mask"
    if isinstance(src, np.ndarray):
        mask = mask_from_array(src, name, threshold)
    else:
        img = open_image(src, max_pixels)
        fmt = img.info.get("edgefill_format") or (
            src.format if isinstance(src, Image.Image) else None
        )
        if fmt == "JPEG":
            threshold = max(threshold, JPEG_MASK_THRESHOLD)
        if img.mode == "P" and "transparency" in img.info or img.mode == "PA":
            img = img.convert("RGBA")
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(img)
            if img.mode.startswith("I;16"):  # the threshold is on the 0-255 scale
                arr = (arr.astype(np.uint16) // 257).astype(np.uint8)
        elif img.mode in ("L", "RGB", "RGBA", "LA"):
            arr = np.asarray(img)
        else:
            arr = np.asarray(img.convert("L"))
        mask = mask_from_array(arr, name, threshold)
    if size is None:
        return mask
    w, h = size
    mask = upright_if_stored(mask, size, orientation)
    if mask.shape != (h, w):
        if not resize:
            raise EdgefillError(
                f"{name}: mask is {mask.shape[1]}x{mask.shape[0]} but the photo is {w}x{h}; "
                "use a mask of the same size (or --resize-mask)"
            )
        mask = resize_hole(mask, (w, h))
    return mask


def made_on_stored_pixels(shape: tuple[int, ...], size: tuple[int, int], orientation: int) -> bool:
    """Whether a mask of ``shape`` (rows, columns) fits the stored pixels of a photo shown at
    ``size`` (width, height) after its EXIF ``orientation`` turned it by a quarter."""
    w, h = size
    return orientation in TURNING and w != h and tuple(shape[:2]) == (w, h)


def upright_if_stored(arr: np.ndarray, size: tuple[int, int], orientation: int) -> np.ndarray:
    """``arr`` (a mask or edge map) turned as its photo was when it was made on the photo's
    stored pixels (``made_on_stored_pixels``); otherwise as it is."""
    if made_on_stored_pixels(arr.shape, size, orientation):
        return turn_upright(arr, orientation)
    return arr


def check_grow(px: object, name: str = "grow") -> None:
    if isinstance(px, bool) or not isinstance(px, (int, np.integer)) or px < 0:
        raise EdgefillError(f"{name} must be a whole number of pixels >= 0, got {px!r}")


def grow_hole(hole: np.ndarray, px: int) -> np.ndarray:
    """``hole`` (bool HxW) widened by ``px`` pixels in every direction (a disc, so corners
    round off as a brush's would)."""
    check_grow(px)
    if px == 0:
        return hole
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1, 2 * px + 1))
    return cv2.dilate(hole.astype(np.uint8), kernel) > 0


def mask_from_alpha(alpha: np.ndarray) -> np.ndarray:
    """Transparent pixels (alpha < 128) of an RGBA photo are the hole."""
    return alpha < 128


def prepare_inputs(
    image: ImageInput | Photo,
    mask: ImageInput | None = None,
    resize_mask: bool = False,
    mask_threshold: int = 1,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    grow_mask: int = 0,
) -> tuple[Photo, np.ndarray, bool]:
    """(photo, hole bool HxW, keep the photo's alpha): how every entry point (the Inpainter,
    the CLI, the server, restore) reads a photo and its mask, so they never disagree. The
    photo keeps its 16-bit samples and metadata; needs no model.

    Without a mask, an RGBA photo's transparent pixels are the hole (and the result is opaque).
    With a mask, the photo's alpha channel is kept as it was. ``grow_mask``: pixels the hole
    is widened by (``grow_hole``): a mask that stops at an object's edge leaves its outline."""
    check_grow(grow_mask, "grow_mask")  # before the photo is decoded
    photo = image if isinstance(image, Photo) else load_photo(image, max_pixels)
    h, w = photo.rgb.shape[:2]
    if mask is None:
        if photo.alpha is None:
            raise EdgefillError("no mask given and the photo has no transparency to use as one")
        return photo, grow_hole(mask_from_alpha(photo.alpha), grow_mask), False
    turned = photo.meta.orientation
    hole = load_mask(mask, (w, h), mask_threshold, resize_mask, max_pixels, turned)
    return photo, grow_hole(hole, grow_mask), True


def load_photo_and_mask(
    image: ImageInput | Photo,
    mask: ImageInput | None = None,
    resize_mask: bool = False,
    mask_threshold: int = 1,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    grow_mask: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(RGB uint8 HxWx3, hole bool HxW, alpha to keep or None): ``prepare_inputs`` for callers
    that need only the 8-bit pixels."""
    photo, hole, keep_alpha = prepare_inputs(
        image, mask, resize_mask, mask_threshold, max_pixels, grow_mask
    )
    return photo.rgb, hole, photo.alpha if keep_alpha else None


# ----------------------------------------------------------------------------- generators


def box_mask(h: int, w: int, rng: np.random.Generator, ratio: float | None = None) -> np.ndarray:
    """One axis-aligned box; with ``ratio`` its area is that fraction of the image (random aspect)."""
    if ratio is None:
        bh = int(rng.integers(max(1, h // 4), max(2, h // 2 + 1)))
        bw = int(rng.integers(max(1, w // 4), max(2, w // 2 + 1)))
    else:
        aspect = math.exp(rng.uniform(math.log(0.6), math.log(1 / 0.6)))
        area = ratio * h * w
        bh = min(h, max(1, round(math.sqrt(area * aspect))))
        bw = min(w, max(1, round(area / bh)))
        bh = min(h, max(1, round(area / bw)))  # refit when the width was clipped to the image
    top = int(rng.integers(0, h - bh + 1))
    left = int(rng.integers(0, w - bw + 1))
    mask = np.zeros((h, w), bool)
    mask[top : top + bh, left : left + bw] = True
    return mask


def _stroke(
    canvas: np.ndarray,
    rng: np.random.Generator,
    max_vertices: int,
    max_len: float,
    width: int,
    max_angle: float = 2 * math.pi,
) -> None:
    """Draw one polyline stroke of ``width`` px with rounded joints into a uint8 canvas."""
    h, w = canvas.shape
    x, y = float(rng.integers(0, w)), float(rng.integers(0, h))
    angle = rng.uniform(0, 2 * math.pi)
    for _ in range(int(rng.integers(1, max_vertices + 1))):
        angle += rng.uniform(-max_angle, max_angle)
        length = rng.uniform(max_len * 0.2, max_len)
        nx = float(np.clip(x + length * math.cos(angle), 0, w - 1))
        ny = float(np.clip(y + length * math.sin(angle), 0, h - 1))
        cv2.line(
            canvas,
            (round(x), round(y)),
            (round(nx), round(ny)),
            255,
            max(1, width),
            lineType=cv2.LINE_8,
        )
        cv2.circle(canvas, (round(nx), round(ny)), max(1, width) // 2, 255, -1)
        x, y = nx, ny


def irregular_mask(
    h: int,
    w: int,
    rng: np.random.Generator,
    ratio_range: tuple[float, float] = (0.1, 0.6),
    max_tries: int = 400,
) -> np.ndarray:
    """Free-form brush strokes whose hole ratio lands in ``[low, high)``.

    Strokes are added one at a time; a stroke that would overshoot ``high`` is discarded and a
    thinner one tried, so the result is inside the bucket (checked by the caller's tests).
    """
    low, high = ratio_range
    if not 0 <= low < high <= 1:
        raise EdgefillError(f"ratio_range must satisfy 0 <= low < high <= 1, got {ratio_range}")
    scale = math.sqrt(h * w) / 256
    canvas = np.zeros((h, w), np.uint8)
    max_width = max(3, round(40 * scale * (0.5 + high)))
    for _ in range(max_tries):
        ratio = np.count_nonzero(canvas) / canvas.size
        if ratio >= low:
            break
        trial = canvas.copy()
        width = int(rng.integers(max(1, max_width // 4), max_width + 1))
        _stroke(trial, rng, max_vertices=8, max_len=60 * scale, width=width)
        if np.count_nonzero(trial) / trial.size < high:
            canvas = trial
        else:
            max_width = max(1, int(max_width * 0.8))
    mask = canvas > 0
    r = hole_ratio(mask)
    if not low <= r < high:
        # Rare: fall back to the nearest valid state by trimming or adding pixels row-wise.
        mask = _force_ratio(mask, low, high, rng)
    return mask


def _force_ratio(mask: np.ndarray, low: float, high: float, rng: np.random.Generator) -> np.ndarray:
    target = int(((low + high) / 2) * mask.size)
    flat = mask.reshape(-1).copy()
    on = np.flatnonzero(flat)
    if len(on) > target:
        flat[rng.choice(on, len(on) - target, replace=False)] = False
    else:
        dil = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).reshape(-1) > 0
        while np.count_nonzero(flat) < target:
            cand = np.flatnonzero(dil & ~flat)
            need = target - np.count_nonzero(flat)
            if len(cand) == 0:
                cand = np.flatnonzero(~flat)
            flat[cand[:need]] = True
            dil = (
                cv2.dilate(
                    flat.reshape(mask.shape).astype(np.uint8), np.ones((3, 3), np.uint8)
                ).reshape(-1)
                > 0
            )
    return flat.reshape(mask.shape)


def scratch_mask(h: int, w: int, rng: np.random.Generator, count: int | None = None) -> np.ndarray:
    """Thin (1-3 px) long curved lines, like scratches and hairs on an old print."""
    canvas = np.zeros((h, w), np.uint8)
    scale = math.sqrt(h * w) / 256
    n = int(rng.integers(2, 7)) if count is None else count
    for _ in range(n):
        width = int(rng.integers(1, 4))
        _stroke(canvas, rng, max_vertices=6, max_len=80 * scale, width=width, max_angle=0.35)
    return canvas > 0


# LaMa-style sets (advimman/lama configs, scaled from 256 px): stroke width, length, count, boxes.
_LAMA = {
    "lama-thin": dict(max_width=8, max_len=80, min_times=4, max_times=12, boxes=0),
    "lama-medium": dict(max_width=28, max_len=60, min_times=2, max_times=5, boxes=1),
    "lama-thick": dict(max_width=50, max_len=50, min_times=1, max_times=5, boxes=2),
}


def lama_mask(h: int, w: int, rng: np.random.Generator, kind: str = "lama-medium") -> np.ndarray:
    if kind not in _LAMA:
        raise EdgefillError(f"unknown LaMa mask kind {kind!r}; choose from {sorted(_LAMA)}")
    p = _LAMA[kind]
    scale = math.sqrt(h * w) / 256
    canvas = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(p["min_times"], p["max_times"] + 1))):
        width = int(rng.integers(max(1, p["max_width"] // 3), p["max_width"] + 1) * scale)
        _stroke(
            canvas,
            rng,
            max_vertices=4,
            max_len=p["max_len"] * scale,
            width=max(1, width),
            max_angle=1.3,
        )
    mask = canvas > 0
    for _ in range(int(rng.integers(0, p["boxes"] + 1))):
        bh = int(rng.integers(max(1, h // 8), max(2, h // 3)))
        bw = int(rng.integers(max(1, w // 8), max(2, w // 3)))
        top, left = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
        mask[top : top + bh, left : left + bw] = True
    if mask.mean() > 0.6:  # keep enough context to learn from
        mask = _force_ratio(mask, 0.45, 0.6, rng)
    return mask


def generate_mask(
    kind: str,
    h: int,
    w: int,
    rng: np.random.Generator,
    ratio_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """One mask of ``kind`` (see MASK_KINDS); ``ratio_range`` applies to irregular and box masks."""
    if h < 1 or w < 1:
        raise EdgefillError(f"mask size must be positive, got {w}x{h}")
    makers: dict[str, Callable[[], np.ndarray]] = {
        "irregular": lambda: irregular_mask(h, w, rng, ratio_range or (0.1, 0.6)),
        "box": lambda: box_mask(h, w, rng, None if ratio_range is None else sum(ratio_range) / 2),
        "scratch": lambda: scratch_mask(h, w, rng),
        "lama-thin": lambda: lama_mask(h, w, rng, "lama-thin"),
        "lama-medium": lambda: lama_mask(h, w, rng, "lama-medium"),
        "lama-thick": lambda: lama_mask(h, w, rng, "lama-thick"),
    }
    if kind not in makers:
        raise EdgefillError(f"unknown mask kind {kind!r}; choose from {', '.join(MASK_KINDS)}")
    if ratio_range is not None and kind not in ("irregular", "box"):
        raise EdgefillError(f"a hole-ratio bucket applies to irregular and box masks, not {kind!r}")
    return makers[kind]()


def check_mask_size(width: int, height: int, count: int = 1) -> None:
    """Generated masks: a positive size no larger than the photos edgefill reads (100 MP)."""
    if width < 1 or height < 1 or count < 1:
        raise EdgefillError(f"mask size and count must be positive, got {width}x{height}, {count}")
    if width * height > DEFAULT_MAX_PIXELS:
        raise EdgefillError(
            f"{width}x{height} = {width * height / 1e6:.0f} MP masks exceed the limit of "
            f"{DEFAULT_MAX_PIXELS / 1e6:.0f} MP (the largest photo edgefill reads)"
        )


def write_mask_set(
    out_dir: str | Path,
    kind: str,
    count: int,
    size: tuple[int, int],
    seed: int = 0,
    ratio_range: tuple[float, float] | None = None,
) -> list[Path]:
    """Write ``count`` PNG masks (white = hole), reproducible from ``seed``; returns the paths."""
    from edgefill.image import save_image

    w, h = size
    check_mask_size(w, h, count)
    rng = np.random.default_rng(seed)
    tag = (
        ""
        if ratio_range is None
        else f"_{round(ratio_range[0] * 100):02d}-{round(ratio_range[1] * 100):02d}"
    )
    paths = []
    for i in range(count):
        mask = generate_mask(kind, h, w, rng, ratio_range)
        paths.append(
            save_image(Path(out_dir) / f"{kind}{tag}_{i:05d}.png", mask.astype(np.uint8) * 255)
        )
    return paths
