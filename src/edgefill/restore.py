"""Restore a damaged photo in one call: detect the damage, inpaint it, refine the result.

    from edgefill.restore import restore
    r = restore("old_print.jpg")                   # detects scratches and dust itself
    r.save("restored.png"); r.save_side_by_side("before_after.png")

With ``mask`` the detection is skipped and that mask is the hole.

A conservator's rule: when in doubt, leave the pixel alone and show the doubt. By default
(``repair="confident"``) only the detector's confident regions are repaired; the uncertain ones
are kept in ``RestoreResult.uncertain`` and drawn on the review sheet (``report_sheet``). So are
water stains, whatever their confidence: the picture under a stain is intact, only tinted, and an
inpainted stain is further from the clean photo than the stained one (docs/restoration.md).
``protect`` is a mask of pixels never to touch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgefill.detect import CONFIDENT, DEFAULT_SENSITIVITY, DamageMap, analyse_damage
from edgefill.errors import EdgefillError
from edgefill.image import (
    DEFAULT_MAX_PIXELS,
    ImageInput,
    ImageMeta,
    compose_deep,
    load_photo,
    resize_hole,
    save_image,
    write_atomic,
)
from edgefill.masks import check_grow, grow_hole, load_mask, prepare_inputs
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
    damage: DamageMap | None = None  # what the detector found (None with a given mask)
    uncertain: np.ndarray | None = None  # bool HxW: flagged but left alone (reported)
    protected: np.ndarray | None = None  # bool HxW: pixels the caller protected

    def summary(self) -> dict:
        """Counts for reports and logs: regions repaired / left uncertain, pixel fractions."""
        out: dict = {"repaired_fraction": round(float(self.mask.mean()), 6)}
        if self.damage is not None:
            out.update(self.damage.summary())
        if self.uncertain is not None:
            out["uncertain_fraction"] = round(float(self.uncertain.mean()), 6)
        return out

    def report_sheet(self) -> np.ndarray:
        """Original | flagged regions (red repaired, yellow uncertain: left alone) | result."""
        return report_sheet(self.before, self.image, self.mask, self.uncertain, self.protected)

    def save_report(self, path: str | Path) -> Path:
        """The review sheet as an image (.png, .jpg, ...) or a self-contained .html page that
        also lists every flagged region with its confidence and whether it was repaired."""
        if Path(path).suffix.lower() not in (".html", ".htm"):
            return save_image(path, self.report_sheet())
        page = report_html(self)
        return write_atomic(Path(path), lambda fh: fh.write(page.encode()))

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


REPAIR_MODES = ("confident", "all")
_REPAIRED, _UNCERTAIN, _PROTECTED = (230, 30, 30), (255, 200, 0), (60, 140, 255)


def header_height(h: int, w: int) -> int:
    """Height of the label band above a review sheet's panels (panels h x w)."""
    return max(16, round(36 * max(0.4, min(h, w) / 600)))


def report_sheet(
    before: np.ndarray,
    after: np.ndarray,
    repaired: np.ndarray,
    uncertain: np.ndarray | None = None,
    protected: np.ndarray | None = None,
    max_side: int = 1200,
    gap: int = 8,
) -> np.ndarray:
    """A review sheet for one photo: original | flagged regions coloured by confidence | result.

    Middle panel: the photo dimmed, repaired (confident) regions red, uncertain regions (left
    alone) yellow, protected pixels blue. Each panel is at most ``max_side`` px on its long side.
    """
    h, w = before.shape[:2]
    f = min(1.0, max_side / max(h, w))
    size = (max(1, round(w * f)), max(1, round(h * f)))

    def small(a: np.ndarray) -> np.ndarray:
        return cv2.resize(a, size, interpolation=cv2.INTER_AREA) if f < 1 else a

    def small_mask(m: np.ndarray | None) -> np.ndarray:
        if m is None:
            return np.zeros(size[::-1], bool)
        return resize_hole(m, size) if f < 1 else m  # a 1 px scratch stays visible on the sheet

    left, right = small(before), small(after)
    mid = (left * 0.45 + 40).astype(np.uint8)
    for m, colour in ((protected, _PROTECTED), (uncertain, _UNCERTAIN), (repaired, _REPAIRED)):
        mid[small_mask(m)] = colour
    sh, sw = left.shape[:2]
    scale = max(0.4, min(sh, sw) / 600)
    band = header_height(sh, sw)  # labels above the panels: no photo pixel is hidden
    canvas = np.full((band + sh, 3 * sw + 2 * gap, 3), 255, np.uint8)
    n_rep = cv2.connectedComponents(repaired.astype(np.uint8), connectivity=8)[0] - 1
    n_unc = 0
    if uncertain is not None:
        n_unc = cv2.connectedComponents(uncertain.astype(np.uint8), connectivity=8)[0] - 1
    for i, (panel, text) in enumerate(
        ((left, "original"), (mid, f"repaired {n_rep} / uncertain {n_unc}"), (right, "result"))
    ):
        x0 = i * (sw + gap)
        canvas[band:, x0 : x0 + sw] = panel
        thick = max(1, round(scale * 1.5))
        org = (x0 + round(6 * scale), band - round(10 * scale))
        cv2.putText(canvas, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale * 0.8, (0, 0, 0), thick)
    return canvas


def report_html(r: RestoreResult, title: str = "edgefill restore report") -> str:
    """One photo's review page: the sheet (JPEG, inline) and a table of the flagged regions."""
    import base64
    import html

    ok, jpg = cv2.imencode(".jpg", r.report_sheet()[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])
    img = base64.b64encode(jpg.tobytes()).decode() if ok else ""
    rows = []
    if r.damage is not None:
        repaired = r.mask
        for g in sorted(r.damage.regions, key=lambda g: g.confidence):
            done = bool(
                repaired[g.y : g.y + g.h, g.x : g.x + g.w][
                    r.damage.labels[g.y : g.y + g.h, g.x : g.x + g.w] == g.index
                ].any()
            )
            rows.append(
                f"<tr><td>{g.x},{g.y} {g.w}x{g.h}</td><td>{g.area}</td>"
                f"<td>{g.confidence:.2f}</td><td>{'repaired' if done else 'left alone'}"
                f"{' (water stain)' if g.stain else ''}</td></tr>"
            )
    summary = html.escape(", ".join(f"{k} {v}" for k, v in r.summary().items()))
    return (
        f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title>"
        "<style>body{font:14px sans-serif}img{max-width:100%}td,th{padding:2px 8px}</style>"
        f"<h1>{html.escape(title)}</h1><p>{summary}</p>"
        "<p>red: repaired (confident) &middot; yellow: uncertain or water stain, left alone &middot; "
        "blue: protected</p>"
        f"<img alt='original | flagged | result' src='data:image/jpeg;base64,{img}'>"
        "<table><tr><th>region (x,y w x h)</th><th>pixels</th><th>confidence</th><th></th></tr>"
        + "".join(rows)
        + "</table>\n"
    )


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
    grow_mask: int = 0,
    repair: str = "confident",
    confident_at: float = CONFIDENT,
    protect: ImageInput | None = None,
    detector: str | Path | None = None,
) -> RestoreResult:
    """Detect (unless ``mask`` is given) -> inpaint -> refine.

    ``inpainter``: a loaded model (default: ``Inpainter.from_pretrained()``, the shipped weights).
    ``kind``, ``sensitivity``, ``method``: passed to ``analyse_damage``. ``repair``: "confident"
    (default) repairs the regions whose confidence is at least ``confident_at`` and reports the
    others in ``uncertain``; "all" repairs every flagged region. ``protect``: a mask (same rules
    as ``mask``) of pixels never touched, whatever was detected or given. ``detector``: a released
    detector folder to use instead of the shipped one (``detect.detect_damage``). ``grow_mask``:
    pixels the hole, given or detected, is widened by (``masks.grow_hole``; not the uncertain
    regions; ``protect`` still wins). A mask that ends up empty returns the photo unchanged (``mask`` all False).
    """
    if repair not in REPAIR_MODES:
        raise EdgefillError(f"repair must be one of {', '.join(REPAIR_MODES)}, got {repair!r}")
    check_grow(grow_mask, "grow_mask")  # before the detector runs
    photo = load_photo(image, max_pixels)
    damage = uncertain = None
    if mask is not None:  # the one photo+mask path (masks.prepare_inputs); the alpha is kept
        photo, hole, _ = prepare_inputs(photo, mask, resize_mask, mask_threshold, max_pixels)
        detected = False
    else:  # the photo alone; its alpha channel is kept, not taken as a mask
        damage = analyse_damage(
            photo.rgb, kind, sensitivity, method, confident_at=confident_at, detector=detector
        )
        if repair == "all":
            hole, uncertain = damage.mask, np.zeros_like(damage.mask)
        else:
            hole, uncertain = damage.confident, damage.uncertain
        detected = True
    hole = grow_hole(hole, grow_mask)
    rgb, alpha, extra = photo.rgb, photo.alpha, (photo.deep, photo.meta)
    h, w = rgb.shape[:2]
    protected = None
    if protect is not None:
        turned = photo.meta.orientation
        protected = load_mask(protect, (w, h), mask_threshold, resize_mask, max_pixels, turned)
        hole = hole & ~protected
    info = {"damage": damage, "uncertain": uncertain, "protected": protected}
    if not hole.any():  # nothing found (or an empty mask): the photo comes back as it was
        edges = np.zeros((h, w), np.float32)
        return RestoreResult(rgb.copy(), rgb, hole, edges, detected, alpha, *extra, **info)
    inpainter = inpainter or Inpainter.from_pretrained()
    result, edges = inpainter.inpaint_arrays(rgb, hole)
    if refine_result:
        result = refine(result, hole, edges, params=refine_params)
    return RestoreResult(result, rgb, hole, edges, detected, alpha, *extra, **info)
