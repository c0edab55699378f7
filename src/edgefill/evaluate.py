"""Evaluation: score edgefill and classical baselines on photos, write a comparison report.

    run_evaluation("photos/", "report/", methods=["edgefill", "telea"], mask_kinds=["irregular"])

Each photo is centre-cropped and resized to a ``size`` square; its masks are generated from a
seed and the photo's name (the same masks in every run), or read from a folder of masks with
the photos' names. Every method fills the same (photo, mask) cases; PSNR, SSIM, L1 and LPIPS
are scored on the whole image and inside the hole, and FID / KID over each method's results.

The folder ``out_dir`` receives ``per_image.csv`` (one row per photo, mask and method: the
record that makes a re-run skip what is already scored), ``metrics.json``, ``report.md``,
plots and example grids. Only rows of the current plan (photos, masks, methods) are averaged.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import math
import os
import platform
import re
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from edgefill import baselines
from edgefill.config import BASELINES, FLIP_AVERAGES, MASK_KINDS
from edgefill.data import center_square, list_images
from edgefill.edges import canny_edges, to_gray
from edgefill.errors import EdgefillError
from edgefill.image import load_rgb, save_image, to_tensor
from edgefill.masks import (
    bucket_of,
    generate_mask,
    hole_ratio,
    load_mask,
    parse_bucket,
)
from edgefill.metrics import (
    LPIPS,
    InceptionFeatures,
    fid_from_features,
    kid_from_features,
    l1,
    psnr,
    ssim,
)

# "edgefill-true-edges": the model given the photo's own Canny edges as the guide inside the hole
# (EdgeConnect's ablation: how much better the fill gets when the structure is right).
MODEL_METHODS = ("edgefill", "edgefill-true-edges")
METHODS = (*MODEL_METHODS, *BASELINES)
DEFAULT_BUCKETS = ("10-20", "20-30", "30-40", "40-50", "50-60")
BOX_DEFAULT = (0.2, 0.3)  # generated box masks cover the middle of the range: the "25 % box"
BUCKETED_KINDS = ("irregular", "box")
METRICS = ("psnr", "ssim", "l1", "lpips")
SCORE_FIELDS = [*METRICS, *(f"{m}_hole" for m in METRICS)]
FIELDS = ["image", "mask", "kind", "bucket", "hole_ratio", "method", *SCORE_FIELDS]
FIELDS += ["seconds", "run"]
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "l1": False, "lpips": False}
LABELS = {"psnr": "PSNR", "ssim": "SSIM", "l1": "L1 %", "lpips": "LPIPS"}
OVER_60 = ">60%"
KID_SCALE = 1000  # KID is reported x 10^3, as in most papers


# ----------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class MaskSetting:
    """A mask generator and, for irregular and box masks, the hole-ratio range it targets."""

    kind: str
    ratio_range: tuple[float, float] | None = None

    @property
    def name(self) -> str:
        if self.ratio_range is None:
            return self.kind
        lo, hi = self.ratio_range
        return f"{self.kind}_{round(lo * 100)}-{round(hi * 100)}"


def mask_settings(kinds: Sequence[str], buckets: Sequence[str] | None = None) -> list[MaskSetting]:
    """Irregular masks in each bucket (default 10-20 ... 50-60 %), box masks covering the middle
    of each bucket (default 25 %), one unconstrained mask for the other kinds."""
    out: list[MaskSetting] = []
    for kind in kinds:
        if kind not in MASK_KINDS:
            raise EdgefillError(f"unknown mask kind {kind!r}; choose from {', '.join(MASK_KINDS)}")
        if kind == "irregular":
            ranges = [parse_bucket(b) for b in (buckets or DEFAULT_BUCKETS)]
        elif kind == "box":
            ranges = [parse_bucket(b) for b in buckets] if buckets else [BOX_DEFAULT]
        else:
            out.append(MaskSetting(kind))
            continue
        out += [MaskSetting(kind, r) for r in ranges]
    return list(dict.fromkeys(out))


@dataclass(frozen=True)
class Case:
    """One photo with one mask; every method is scored on it."""

    image: str  # the photo's name relative to the photo folder (the record's key)
    path: Path
    mask: str  # the mask's key: setting name + seed, or the mask file's name
    kind: str
    setting: MaskSetting | None = None
    mask_path: Path | None = None

    @property
    def slug(self) -> str:
        return _slug(f"{self.image}__{self.mask}")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def _rel(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            pass
    return path.name


def _photos(images: str | Path | Sequence[Path]) -> tuple[list[Path], Path | None]:
    """The photos and the folder their case names are relative to: the given folder, or for a
    list (a .txt file or a sequence) the photos' deepest common folder, so a list names (and
    masks) each photo as the folder holding them all would."""
    if isinstance(images, (str, Path)):
        root = Path(images)
        files = list_images(root)
        if root.is_dir():
            return files, root
    else:
        files = [Path(p) for p in images]
    if not files:
        raise EdgefillError("no photos to evaluate")
    files = [Path(os.path.abspath(p)) for p in files]  # a list may mix relative and absolute
    return files, Path(os.path.commonpath([str(p.parent) for p in files]))


def _mask_files(masks_dir: Path) -> dict[str, Path]:
    from edgefill.data import IMAGE_SUFFIXES

    if not masks_dir.is_dir():
        raise EdgefillError(f"{masks_dir}: mask folder not found")
    found = {}
    for p in sorted(masks_dir.rglob("*")):
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            found[p.relative_to(masks_dir).with_suffix("").as_posix()] = p
    return found


def plan_cases(
    images: str | Path | Sequence[Path],
    settings: Sequence[MaskSetting] = (),
    masks_dir: str | Path | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> list[Case]:
    """The (photo, mask) cases of an evaluation, in a fixed order (photos sorted by name)."""
    files, root = _photos(images)
    files = sorted(files, key=lambda p: _rel(p, root))
    if limit is not None:
        if limit < 1:
            raise EdgefillError(f"--limit must be at least 1, got {limit}")
        files = files[:limit]
    cases: list[Case] = []
    if masks_dir is not None:
        masks = _mask_files(Path(masks_dir))
        missing = []
        for f in files:
            name = _rel(f, root)
            mask = masks.get(Path(name).with_suffix("").as_posix())
            if mask is None:
                missing.append(name)
                continue
            cases.append(Case(name, f, mask.name, "file", None, mask))
        if missing:
            raise EdgefillError(
                f"{masks_dir}: no mask with the same name for {len(missing)} photo(s), "
                f"e.g. {missing[0]}; masks must share the photos' file names (any extension)"
            )
        return cases
    if not settings:
        raise EdgefillError("choose masks: a mask folder (--masks) or generated ones (--mask-kind)")
    for f in files:
        name = _rel(f, root)
        for s in settings:
            cases.append(Case(name, f, f"{s.name}_seed{seed}", s.kind, s))
    return cases


def _crop_mask_like_photo(hole: np.ndarray, size: int) -> np.ndarray:
    h, w = hole.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = hole[top : top + side, left : left + side].astype(np.uint8)
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_NEAREST) > 0


def case_arrays(case: Case, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(photo uint8 size x size x 3, hole bool size x size) of a case; the same in every run."""
    rgb, _ = load_rgb(case.path)
    photo = center_square(rgb, size)
    if case.mask_path is not None:
        hole = load_mask(case.mask_path)
        if hole.shape == rgb.shape[:2]:
            hole = _crop_mask_like_photo(hole, size)
        elif hole.shape != (size, size):
            raise EdgefillError(
                f"{case.mask_path}: mask is {hole.shape[1]}x{hole.shape[0]}; expected the photo's "
                f"size {rgb.shape[1]}x{rgb.shape[0]} or the evaluation size {size}x{size}"
            )
        return photo, hole
    assert case.setting is not None
    rng = np.random.default_rng(
        [seed, zlib.crc32(case.image.encode()), zlib.crc32(case.setting.name.encode())]
    )
    ratio = case.setting.ratio_range
    if ratio is not None and case.kind == "irregular" and ratio[0] <= 0:
        ratio = (min(0.005, ratio[1] / 2), ratio[1])  # an empty mask scores nothing
    return photo, generate_mask(case.kind, size, size, rng, ratio)


def bucket_label(ratio: float) -> str:
    return bucket_of(ratio) or OVER_60


def _bucket_key(label: str) -> float:
    return 1.0 if label == OVER_60 else parse_bucket(label)[0]


# ----------------------------------------------------------------------------- scoring


def score(
    result: np.ndarray,
    target: np.ndarray,
    hole: np.ndarray,
    lpips: LPIPS | None = None,
    device: str | torch.device = "cpu",
    lpips_ref: list[torch.Tensor] | None = None,
) -> dict[str, float | None]:
    """PSNR (dB), SSIM, L1 (% of the range) and LPIPS, whole image and inside the hole only.

    ``lpips_ref``: ``lpips.reference(target)``, to score many results against one target.
    """
    x = to_tensor(result).to(device)
    y = to_tensor(target).to(device)
    m = torch.from_numpy(hole.astype(np.float32))[None, None].to(device)
    with torch.inference_mode():
        out: dict[str, float | None] = {
            "psnr": float(psnr(x, y)[0]),
            "ssim": float(ssim(x, y)[0]),
            "l1": 100 * float(l1(x, y)[0]),
            "psnr_hole": float(psnr(x, y, m)[0]),
            "ssim_hole": float(ssim(x, y, m)[0]),
            "l1_hole": 100 * float(l1(x, y, m)[0]),
            "lpips": None,
            "lpips_hole": None,
        }
        if lpips is not None:
            whole, inside = lpips.whole_and_masked(x, y, m, lpips_ref)
            out["lpips"], out["lpips_hole"] = float(whole[0]), float(inside[0])
    return out


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _num(v: str | None) -> float | None:
    if v is None or v == "":
        return None
    x = float(v)
    return x if math.isfinite(x) else None


class Record:
    """per_image.csv: appended one row at a time (flushed), read back to resume."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: dict[tuple[str, str, str], dict[str, str]] = {}
        if path.is_file() and path.stat().st_size > 0:
            with open(path, newline="") as fh:
                reader = csv.DictReader(fh)
                if reader.fieldnames != FIELDS:
                    raise EdgefillError(
                        f"{path}: columns {reader.fieldnames} differ from this version's {FIELDS}; "
                        "use another report folder"
                    )
                for row in reader:
                    # a line torn by a crash mid-write lacks fields: that result is redone
                    if None not in row.values() and row["seconds"] and row["run"]:
                        self.rows[(row["image"], row["mask"], row["method"])] = row

    def __contains__(self, key: tuple[str, str, str]) -> bool:
        return key in self.rows

    def add(self, row: dict[str, Any]) -> None:
        new = not self.path.is_file() or self.path.stat().st_size == 0
        text = {k: _fmt(row.get(k)) for k in FIELDS}
        with open(self.path, "a", newline="") as fh:
            if not new and not _ends_with_newline(self.path):
                fh.write("\n")
            writer = csv.DictWriter(fh, FIELDS)
            if new:
                writer.writeheader()
            writer.writerow(text)
            fh.flush()
        self.rows[(text["image"], text["mask"], text["method"])] = text


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


def _save_npy(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, arr.astype(np.float32))
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- the run


def _method_functions(
    methods: Sequence[str], inpainter: Any, seed: int
) -> dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]]:
    fns: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {}
    for name in methods:
        if name in MODEL_METHODS:
            true_edges = name == "edgefill-true-edges"

            def run_model(
                img: np.ndarray, hole: np.ndarray, _true: bool = true_edges
            ) -> np.ndarray:
                guide = true_edge_guide(img, inpainter.config.canny_sigma) if _true else None
                result, _ = inpainter.inpaint_arrays(img, hole, guide)
                return baselines.compose(result, img, hole)

            fns[name] = run_model
        else:
            fns[name] = lambda img, hole, _n=name: baselines.inpaint(_n, img, hole, seed)
    return fns


def true_edge_guide(photo: np.ndarray, sigma: float) -> np.ndarray:
    """The photo's own Canny edges (float32 HxW): the ground-truth guide of the ablation."""
    return canny_edges(to_gray(photo), None, sigma)


def _describe_device(device: torch.device, threads: Sequence[int] = ()) -> str:
    """``threads``: the torch thread counts the rows were scored with (default: this process's)."""
    if device.type == "cuda":
        return f"GPU {torch.cuda.get_device_name(device)}"
    counts = "/".join(map(str, sorted(set(threads) or {torch.get_num_threads()})))
    return f"CPU ({platform.machine()}, {counts} torch threads, {os.cpu_count()} cores)"


def run_evaluation(
    images: str | Path | Sequence[Path],
    out_dir: str | Path,
    *,
    methods: Sequence[str] = METHODS,
    mask_kinds: Sequence[str] | None = ("irregular",),
    buckets: Sequence[str] | None = None,
    settings: Sequence[MaskSetting] | None = None,
    masks_dir: str | Path | None = None,
    weights: str | Path | None = None,
    inpainter: Any = None,
    size: int = 256,
    limit: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    precision: str = "auto",
    flip_average: str = FLIP_AVERAGES[0],
    vgg_weights: str | Path | None = None,
    fid_weights: str | Path | None = None,
    fid: bool = True,
    grid: int = 4,
    progress: bool = True,
    title: str | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """Score ``methods`` on the photos and write the report folder; returns the summary.

    ``settings`` (MaskSetting list) overrides ``mask_kinds`` x ``buckets``; ``masks_dir`` uses
    mask files instead. ``inpainter`` (an ``edgefill.pipeline.Inpainter``) overrides ``weights``
    and ``precision`` (the model's: auto, fp32, ...; a folder keeps rows of one precision only)
    and ``flip_average`` (``Inpainter``'s; a folder keeps rows of one setting only).
    Rows already in ``out_dir/per_image.csv`` are not computed again.
    """
    from tqdm import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if size < 16:
        raise EdgefillError(f"--size must be at least 16, got {size}")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EdgefillError("device cuda requested but no CUDA GPU is available; use --device cpu")
    methods = list(dict.fromkeys(methods))
    for name in methods:
        if name not in METHODS:
            raise EdgefillError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    if not methods:
        raise EdgefillError("no methods to evaluate")

    skipped: dict[str, str] = {}
    for name in methods:
        if name not in MODEL_METHODS:
            reason = baselines.unavailable_reason(name)
            if reason:
                skipped[name] = reason
                print(f"edgefill evaluate: skipping {name}: {reason}", file=sys.stderr)
    active = [m for m in methods if m not in skipped]
    weights_desc = weights_key = None
    if any(m in MODEL_METHODS for m in active):
        if inpainter is None:
            from edgefill.checkpoint import resolve_weights
            from edgefill.pipeline import Inpainter

            resolved = resolve_weights(weights)
            inpainter = Inpainter.from_pretrained(
                resolved, device=device, precision=precision, flip_average=flip_average
            )
            weights_desc, weights_key = _display(resolved), str(Path(resolved).resolve())
        else:
            weights_desc = weights_key = str(weights) if weights else "in-memory model"
    # the precision auto resolved to on this machine: bf16 and fp32 rows must not mix
    resolved_precision = getattr(inpainter, "precision", None)

    run_id = _dt.datetime.now().isoformat(timespec="seconds")
    run_threads = _check_run_file(
        out / "run.json",
        {
            "size": size,
            "weights": weights_key,
            "precision": resolved_precision,
            "flip_average": getattr(inpainter, "flip_average", None),
        },
        run_id,
    )

    if settings is None and masks_dir is None:
        settings = mask_settings(mask_kinds or ("irregular",), buckets)
    cases = plan_cases(images, settings or (), masks_dir, limit, seed)
    if not cases:
        raise EdgefillError("nothing to evaluate: no photos")

    notes: list[str] = []
    lpips_model = None
    try:
        lpips_model = LPIPS(path=vgg_weights).to(dev)
    except EdgefillError as exc:
        notes.append(f"LPIPS omitted: {exc}")
    inception = None
    if fid:
        try:
            inception = InceptionFeatures(fid_weights, dev)
        except EdgefillError as exc:
            notes.append(f"FID and KID omitted: {exc}")
    else:
        notes.append("FID and KID not computed (--no-fid).")
    for note in notes:
        print(f"edgefill evaluate: {note}", file=sys.stderr)

    record = Record(out / "per_image.csv")
    fns = _method_functions(active, inpainter, seed)
    grid_images = _grid_images(cases, grid)
    feat_dir = out / "features"
    warmed: set[str] = set()
    empty: list[Case] = []
    total = len(cases) * len(active)
    done = sum((c.image, c.mask, m) in record for c in cases for m in active)
    bar = tqdm(
        total=total, initial=done, desc="evaluate", unit="result", disable=not progress, leave=False
    )
    try:
        for case in cases:
            todo = [m for m in active if (case.image, case.mask, m) not in record]
            real_file = feat_dir / "_real" / f"{_slug(case.image)}.npy"
            need_real = inception is not None and not real_file.is_file()
            if not todo and not need_real:
                continue
            photo, hole = case_arrays(case, size, seed)
            ratio = hole_ratio(hole)
            if ratio == 0:  # only a mask file can be empty: nothing to fill, nothing to score
                empty.append(case)
                bar.update(len(todo))
                continue
            if need_real:
                _save_npy(real_file, inception(to_tensor(photo))[0])  # type: ignore[misc]
            lpips_ref = None
            if lpips_model is not None and todo:
                with torch.inference_mode():
                    lpips_ref = lpips_model.reference(to_tensor(photo).to(dev))
            example = out / "examples" / case.slug if case.image in grid_images else None
            if example is not None:
                save_image(example / "ground_truth.png", photo)
                save_image(example / "mask.png", hole.astype(np.uint8) * 255)
            for name in todo:
                if name not in warmed:  # first call pays one-off costs (allocations, lazy init)
                    fns[name](photo, hole)
                    warmed.add(name)
                t0 = time.perf_counter()
                result = fns[name](photo, hole)
                seconds = time.perf_counter() - t0
                row: dict[str, Any] = {
                    "image": case.image,
                    "mask": case.mask,
                    "kind": case.kind,
                    "bucket": bucket_label(ratio),
                    "hole_ratio": round(ratio, 6),
                    "method": name,
                    **score(result, photo, hole, lpips_model, dev, lpips_ref),
                    "seconds": seconds,
                    "run": run_id,
                }
                if inception is not None:
                    _save_npy(feat_dir / name / f"{case.slug}.npy", inception(to_tensor(result))[0])
                if example is not None:
                    save_image(example / f"{name}.png", result)
                record.add(row)
                bar.update(1)
    finally:
        bar.close()
    if empty:
        notes.append(
            f"{len(empty)} mask(s) without a hole skipped, e.g. {empty[0].mask} "
            f"for {empty[0].image}."
        )
        cases = [c for c in cases if c not in empty]
        if not cases:
            raise EdgefillError("no mask has a hole: nothing to score")

    rows = [record.rows[(c.image, c.mask, m)] for c in cases for m in active]
    summary = summarize(rows, active)
    summary["fid"] = None if inception is None else fid_scores(cases, active, feat_dir, seed=seed)
    n_photos = len({c.image for c in cases})
    runs = sorted({r["run"] for r in rows})
    # seconds/image depend on the threads each run had (side-by-side runs often take one each)
    threads = [run_threads[r] for r in runs if r in run_threads]
    if len(runs) > 1:
        notes.append(
            f"Rows come from {len(runs)} runs ({runs[0]} ... {runs[-1]}): seconds/image of "
            "rows from earlier runs were measured then."
        )
    summary["config"] = {
        "title": title or "edgefill evaluation",
        "description": description,
        "images": _display(images) if isinstance(images, (str, Path)) else None,
        "photos": n_photos,
        "cases": len(cases),
        "size": size,
        "seed": seed,
        "masks": str(masks_dir) if masks_dir else [s.name for s in settings or ()],
        "methods": active,
        "skipped": skipped,
        "weights": weights_desc,
        "model_info": _model_info(inpainter) if inpainter is not None else None,
        "device": _describe_device(dev, threads),
        "lpips": lpips_model is not None,
        "fid_weights": str(inception.path) if inception is not None else None,
        "date": run_id,
    }
    summary["notes"] = notes
    write_outputs(summary, cases, active, out, grid_images)
    return summary


def _display(path: str | Path) -> str:
    """A path as the user would type it: relative to the working folder when inside it."""
    p = Path(path).resolve()
    try:
        return p.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(p)


def _model_info(inpainter: Any) -> dict[str, Any]:
    info = dict(getattr(inpainter, "info", {}) or {})
    for key in ("backend", "precision", "flip_average"):
        if isinstance(getattr(inpainter, key, None), str):
            info[key] = getattr(inpainter, key)
    cfg = getattr(inpainter, "config", None)
    if cfg is not None and "model" not in info:
        info["model"] = dict(cfg.__dict__)
    return info


def _check_run_file(path: Path, settings: dict[str, Any], run_id: str) -> dict[str, int]:
    """Refuse to mix rows of different image sizes, model weights, precisions or flip averages;
    record this run's torch thread count and return every run's (``threads``, by run id)."""
    doc: dict[str, Any] = {}
    if path.is_file():
        doc = json.loads(path.read_text())
        for key, value in settings.items():
            if value is None or doc.get(key) is None:
                continue
            if doc[key] != value:
                raise EdgefillError(
                    f"{path.parent} holds results for {key}={doc[key]!r}, not {value!r}; "
                    "use another report folder (or delete it to start over)"
                )
    doc.update({k: v for k, v in settings.items() if v is not None or k not in doc})
    doc["threads"] = {**doc.get("threads", {}), run_id: torch.get_num_threads()}
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return doc["threads"]


def _grid_images(cases: Sequence[Case], count: int) -> set[str]:
    names = list(dict.fromkeys(c.image for c in cases))
    return set(names[: max(0, count)])


# ----------------------------------------------------------------------------- aggregation


def _stats(rows: Sequence[dict[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(rows)}
    for key in [*SCORE_FIELDS, "seconds", "hole_ratio"]:
        values = [v for v in (_num(r.get(key)) for r in rows) if v is not None]
        out[key] = float(np.mean(values)) if values else None
        if values and len(values) < len(rows):
            out[f"{key}_n"] = len(values)
    return out


def summarize(rows: Sequence[dict[str, str]], methods: Sequence[str]) -> dict[str, Any]:
    """Means per (mask kind, bucket, method), per (kind, method) and per method."""
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    by_bucket: dict[str, dict[str, dict[str, Any]]] = {}
    by_kind: dict[str, dict[str, Any]] = {}
    for kind in kinds:
        kind_rows = [r for r in rows if r["kind"] == kind]
        labels = sorted({r["bucket"] for r in kind_rows}, key=_bucket_key)
        by_bucket[kind] = {
            b: {
                m: _stats([r for r in kind_rows if r["bucket"] == b and r["method"] == m])
                for m in methods
            }
            for b in labels
        }
        by_kind[kind] = {m: _stats([r for r in kind_rows if r["method"] == m]) for m in methods}
    overall = {m: _stats([r for r in rows if r["method"] == m]) for m in methods}
    return {"by_bucket": by_bucket, "by_kind": by_kind, "overall": overall}


def _load_features(paths: Sequence[Path]) -> np.ndarray:
    return np.stack([np.load(p).astype(np.float64) for p in paths]) if paths else np.zeros((0, 0))


def fid_scores(
    cases: Sequence[Case], methods: Sequence[str], feat_dir: Path, seed: int = 0
) -> dict[str, Any]:
    """FID and KID of each method's results against the ground-truth photos, overall and per kind.

    Results whose features were never stored (scored in a run without Inception) are left out;
    ``n_fake`` says how many counted.
    """
    groups: dict[str, list[Case]] = {"all": list(cases)}
    kinds = list(dict.fromkeys(c.kind for c in cases))
    if len(kinds) > 1:
        for kind in kinds:
            groups[kind] = [c for c in cases if c.kind == kind]
    out: dict[str, Any] = {}
    for group, members in groups.items():
        real_paths = [feat_dir / "_real" / f"{_slug(i)}.npy" for i in {c.image: 0 for c in members}]
        real = _load_features([p for p in real_paths if p.is_file()])
        out[group] = {}
        for m in methods:
            paths = [feat_dir / m / f"{c.slug}.npy" for c in members]
            fake = _load_features([p for p in paths if p.is_file()])
            entry: dict[str, Any] = {"n_real": len(real), "n_fake": len(fake)}
            if len(real) >= 2 and len(fake) >= 2:
                entry["fid"] = fid_from_features(real, fake)
                kid, kid_std = kid_from_features(real, fake, seed=seed)
                entry["kid"], entry["kid_std"] = kid, kid_std
            else:
                entry["note"] = "needs at least 2 photos"
            out[group][m] = entry
    return out


# ----------------------------------------------------------------------------- report


def _cell(value: float | None, key: str) -> str:
    if value is None:
        return "–"
    base = key.removesuffix("_hole")
    if base == "psnr":
        return f"{value:.2f}"
    if base in ("ssim", "lpips"):
        return f"{value:.4f}"
    if base == "l1":
        return f"{value:.2f}"
    if key == "seconds":
        return f"{value:.3f}" if value < 10 else f"{value:.1f}"
    return f"{value:.4g}"


def _best(stats: dict[str, dict[str, Any]], key: str) -> float | None:
    values = [s[key] for s in stats.values() if s.get(key) is not None and s["n"]]
    if len(values) < 2:
        return None
    return max(values) if HIGHER_IS_BETTER[key.removesuffix("_hole")] else min(values)


def _table(
    groups: dict[str, dict[str, dict[str, Any]]], first: str, keys: Sequence[str]
) -> list[str]:
    head = [first, "method"] + [
        LABELS[k.removesuffix("_hole")] + (" hole" if k.endswith("_hole") else "") for k in keys
    ]
    lines = [
        "| " + " | ".join(head + ["s/img", "n"]) + " |",
        "|" + "---|" * (len(head) + 2),
    ]
    for label, stats in groups.items():
        best = {k: _best(stats, k) for k in keys}
        for m, s in stats.items():
            if not s["n"]:
                continue
            cells = []
            for k in keys:
                text = _cell(s.get(k), k)
                if best[k] is not None and s.get(k) is not None and _cell(best[k], k) == text:
                    text = f"**{text}**"
                cells.append(text)
            lines.append(
                "| "
                + " | ".join([label, m, *cells, _cell(s.get("seconds"), "seconds"), str(s["n"])])
                + " |"
            )
    return lines


def render_tables(summary: dict[str, Any], figures: str = "") -> str:
    """Markdown tables (per kind x bucket, per kind, FID/KID) and figure links under ``figures``."""
    keys = [k for k in SCORE_FIELDS if not k.startswith("lpips") or summary["config"]["lpips"]]
    keys = [k for k in keys if not k.endswith("_hole")] + [k for k in keys if k.endswith("_hole")]
    lines: list[str] = []
    for kind, buckets in summary["by_bucket"].items():
        lines += [f"### {kind} masks, by hole ratio", ""]
        lines += _table(buckets, "hole", keys) + [""]
    if len(summary["by_kind"]) > 1:
        lines += ["### By mask kind (all buckets)", ""]
        lines += _table(summary["by_kind"], "masks", keys) + [""]
    fid = summary.get("fid")
    if fid and not any("fid" in e for pm in fid.values() for e in pm.values()):
        n_real = max((e["n_real"] for pm in fid.values() for e in pm.values()), default=0)
        lines += [
            "### FID and KID",
            "",
            f"Not computed: they compare sets and need at least 2 photos; this run has {n_real}.",
            "",
        ]
    elif fid:
        lines += ["### FID and KID (whole images, results vs. ground-truth photos)", ""]
        lines += [
            "| masks | method | FID | KID ×10³ | photos | results |",
            "|---|---|---|---|---|---|",
        ]
        for group, per_method in fid.items():
            vals = {m: e.get("fid") for m, e in per_method.items() if e.get("fid") is not None}
            best_fid = min(vals.values()) if len(vals) > 1 else None
            kvals = {m: e.get("kid") for m, e in per_method.items() if e.get("kid") is not None}
            best_kid = min(kvals.values()) if len(kvals) > 1 else None
            for m, e in per_method.items():
                if "fid" in e:
                    f = f"{e['fid']:.2f}"
                    f = f"**{f}**" if e["fid"] == best_fid else f
                    k = f"{e['kid'] * KID_SCALE:.2f} ± {e['kid_std'] * KID_SCALE:.2f}"
                    k = f"**{k}**" if e["kid"] == best_kid else k
                else:
                    f, k = "–", e.get("note", "–")
                lines.append(f"| {group} | {m} | {f} | {k} | {e['n_real']} | {e['n_fake']} |")
        n = max((e["n_fake"] for pm in fid.values() for e in pm.values()), default=0)
        if n < 2048:
            lines += [
                "",
                f"FID from {n} results per method is biased upward (its covariance has 2048 "
                "dimensions): compare methods within this table only. KID is unbiased at any size; "
                "± is its standard deviation over 100 random subsets.",
            ]
        lines.append("")
    figs = summary.get("figures", {})
    if figs:
        lines += ["### Figures", ""]
        for caption, name in figs.items():
            lines += [f"**{caption}**", "", f"![{caption}]({figures}{name})", ""]
    return "\n".join(lines)


def render_report(summary: dict[str, Any], figures: str = "") -> str:
    """The whole report: setup, notes, tables and figures (links prefixed with ``figures``)."""
    cfg = summary["config"]
    masks = cfg["masks"] if isinstance(cfg["masks"], str) else ", ".join(cfg["masks"])
    lines = [f"# {cfg['title']}", ""]
    if cfg.get("description"):
        lines += [cfg["description"], ""]
    lines += [
        f"- Photos: {cfg['photos']}"
        + (f" from `{cfg['images']}`" if cfg.get("images") else "")
        + f", centre-cropped and resized to "
        f"{cfg['size']}x{cfg['size']}; {cfg['cases']} (photo, mask) cases.",
        f"- Masks: {masks} (seed {cfg['seed']}).",
        f"- Methods: {', '.join(cfg['methods'])}.",
    ]
    for name, reason in cfg["skipped"].items():
        lines.append(f"- Skipped {name}: {reason}.")
    if cfg.get("weights"):
        info = cfg.get("model_info") or {}
        keys = ("step", "backend", "precision", "flip_average")
        extra = [f"{k.replace('_', ' ')} {info[k]}" for k in keys if k in info]
        lines.append(
            f"- edgefill weights: `{cfg['weights']}`"
            + (f" ({', '.join(extra)})" if extra else "")
            + "."
        )
    lines += [
        f"- Device: {cfg['device']}; seconds per image measured in the run (after one warm-up "
        "call per method), method call only.",
        f"- Date: {cfg['date']}.",
        "",
        "Whole-image scores include the pixels outside the hole, which every method keeps "
        "unchanged; *hole* scores count the hole only (SSIM: windows centred in the hole; LPIPS: "
        "distance maps averaged over the hole). PSNR in dB and SSIM: higher is better; L1 "
        "(mean absolute error, % of the range) and LPIPS (VGG16, v0.1): lower is better. "
        "Best value per group in bold. Buckets are the measured hole ratio.",
        "",
    ]
    if summary.get("notes"):
        lines += [f"> {n}" for n in summary["notes"]] + [""]
    lines.append(render_tables(summary, figures))
    return "\n".join(lines) + "\n"


def write_outputs(
    summary: dict[str, Any],
    cases: Sequence[Case],
    methods: Sequence[str],
    out: Path,
    grid_images: set[str],
) -> None:
    """Plots, example grids, metrics.json and report.md."""
    figures: dict[str, str] = {}
    plt = _pyplot()
    if plt is None:
        summary["notes"].append("Plots and grids omitted: matplotlib is not installed.")
    else:
        for kind, buckets in summary["by_bucket"].items():
            if len(buckets) >= 2:
                name = f"metrics_vs_hole_{_slug(kind)}.png"
                plot_metrics_vs_hole(buckets, methods, out / name, f"{kind} masks")
                figures[f"Metrics vs. hole ratio ({kind} masks)"] = name
        plot_speed_quality(summary["overall"], out / "speed_quality.png")
        figures["Speed vs. quality (all cases)"] = "speed_quality.png"
        for label, chosen in _grid_groups(cases, grid_images).items():
            name = f"grid_{_slug(label)}.jpg"  # photos: a PNG grid was 3.4 MB, this 0.7 MB
            if draw_grid(chosen, methods, out / "examples", out / name):
                figures[f"Examples: {label} masks"] = name
    summary["figures"] = figures
    tmp = out / "metrics.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, out / "metrics.json")
    (out / "report.md").write_text(render_report(summary))


def _grid_groups(cases: Sequence[Case], grid_images: set[str]) -> dict[str, list[Case]]:
    """One grid per mask setting (all mask files together), rows = the grid photos."""
    groups: dict[str, list[Case]] = {}
    for c in cases:
        if c.image in grid_images:
            groups.setdefault(c.setting.name if c.setting else "file", []).append(c)
    return groups


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_metrics_vs_hole(
    buckets: dict[str, dict[str, dict[str, Any]]], methods: Sequence[str], path: Path, title: str
) -> None:
    plt = _pyplot()
    keys = [
        k
        for k in SCORE_FIELDS
        if any(s[k] is not None for b in buckets.values() for s in b.values())
    ]
    rows = 2 if len(keys) > 1 else 1
    cols = math.ceil(len(keys) / rows)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    labels = list(buckets)
    x = np.arange(len(labels))
    for ax, key in zip(axes.flat, keys, strict=False):
        for m in methods:
            y = [buckets[b][m].get(key) if buckets[b][m]["n"] else None for b in labels]
            y = [np.nan if v is None else v for v in y]
            ax.plot(x, y, marker="o", label=m)
        base = key.removesuffix("_hole")
        arrow = "↑" if HIGHER_IS_BETTER[base] else "↓"
        ax.set_title(f"{LABELS[base]}{' (hole)' if key.endswith('_hole') else ''} {arrow}")
        ax.set_xticks(x, labels, fontsize=8)
        ax.set_xlabel("hole ratio", fontsize=8)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_speed_quality(overall: dict[str, dict[str, Any]], path: Path) -> None:
    plt = _pyplot()
    keys = [
        k
        for k in ("psnr_hole", "lpips_hole")
        if any(s.get(k) is not None for s in overall.values())
    ]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=True):
        for m, s in overall.items():
            if s.get(key) is None or not s.get("seconds"):
                continue
            ax.scatter(s["seconds"], s[key], s=30)
            ax.annotate(
                m, (s["seconds"], s[key]), textcoords="offset points", xytext=(4, 4), fontsize=8
            )
        base = key.removesuffix("_hole")
        arrow = "higher is better" if HIGHER_IS_BETTER[base] else "lower is better"
        ax.set_xscale("log")
        ax.set_xlabel("seconds per image (log)")
        ax.set_ylabel(f"{LABELS[base]} in the hole ({arrow})")
        ax.grid(alpha=0.3, which="both")
    fig.suptitle("Speed vs. quality")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def hole_overlay(photo: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """The model's view of the input: the hole painted white."""
    shown = photo.copy()
    shown[hole] = 255
    return shown


def draw_grid(cases: Sequence[Case], methods: Sequence[str], examples: Path, path: Path) -> bool:
    """Rows = cases; columns = input with the hole in white, each method, ground truth."""
    from PIL import Image

    plt = _pyplot()
    rows = [c for c in cases if (examples / c.slug / "ground_truth.png").is_file()]
    if not rows:
        return False
    cols = ["input", *methods, "ground truth"]
    fig, axes = plt.subplots(
        len(rows), len(cols), figsize=(1.9 * len(cols), 1.9 * len(rows) + 0.3), squeeze=False
    )
    for r, case in enumerate(rows):
        folder = examples / case.slug
        gt = np.asarray(Image.open(folder / "ground_truth.png").convert("RGB"))
        hole = np.asarray(Image.open(folder / "mask.png")) > 0
        tiles = [hole_overlay(gt, hole)]
        for m in methods:
            f = folder / f"{m}.png"
            tiles.append(np.asarray(Image.open(f).convert("RGB")) if f.is_file() else None)
        tiles.append(gt)
        for c, tile in enumerate(tiles):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if tile is None:
                ax.text(0.5, 0.5, "not kept", ha="center", va="center", fontsize=7)
            else:
                ax.imshow(tile)
            if r == 0:
                ax.set_title(cols[c], fontsize=8)
        axes[r, 0].set_ylabel(f"{Path(case.image).stem[:18]}\n{hole.mean():.0%} hole", fontsize=7)
    fig.tight_layout(pad=0.3)
    dpi = int(max(64, min(200, 128 * gt.shape[0] / 256)))
    fig.savefig(path, dpi=dpi, pil_kwargs={"quality": 90} if path.suffix == ".jpg" else None)
    plt.close(fig)
    return True


# ----------------------------------------------------------------------------- command line


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``edgefill evaluate`` (the parser is in ``edgefill.cli``)."""
    methods = _split(args.methods)
    summary = run_evaluation(
        args.images,
        args.output,
        methods=methods,
        mask_kinds=_split(args.mask_kind) if not args.masks else None,
        buckets=_split(args.buckets) or None,
        masks_dir=args.masks,
        weights=args.weights,
        size=args.size,
        limit=args.limit,
        seed=args.seed,
        device=args.device,
        precision=args.precision,
        flip_average=args.flip_average,
        vgg_weights=args.vgg_weights,
        fid_weights=args.fid_weights,
        fid=not args.no_fid,
        grid=args.grid,
        progress=not args.quiet,
    )
    print(
        f"scored {summary['config']['cases']} cases x {len(summary['config']['methods'])} methods"
    )
    for name, reason in summary["config"]["skipped"].items():
        print(f"skipped {name}: {reason}")
    print(f"wrote {Path(args.output) / 'report.md'}")
    return 0
