"""Are fills on scan-sized photos as sharp as the photo around them? Detail energy in vs out.

    python benchmarks/bench_scan_detail.py [--n 4] [--label after] [--json docs/scan_detail_results.json]

Photos: the first ``--n`` validation photos (``edgefill.data.split(list_images(DATA), 0.1)``)
resized to cover 3000x2000 (bicubic, centre crop) with synthetic film grain added (luminance
noise, sigma ``--grain`` levels, blurred by 0.7 px), so that the "scan" has real fine detail at
its native size (the upscaled photo alone has none; only 1 of the validation photos is even
1000 px wide). Masks, seeded per photo:

- ``scratches``: ``scratch_mask`` strokes (1-3 px) until 0.5 % of the photo is covered;
- ``3 small holes``: three small blobs (radius 8-15 px) about 260 px apart: their context
  windows overlap but together do not fit the working size (the issue-15 case: before, they
  were merged into one window run at 512 px);
- ``large holes``: three blobs of radius 60-160 px (windows a little above the working size);
- ``one big hole``: one blob of radius 350-450 px (its window is run at about 1/3 scale).

Detail ratio = mean |high-pass| inside the hole / mean |high-pass| in the known ring 3-20 px
around it, high-pass = grey - its Gaussian blur (1.5 px) taken over the same side's pixels only
(so the step at the hole's border is not counted as detail); the same ratio on the photo before
damage ("truth") is the reference: a fill as detailed as the photo has the truth's ratio, a blur
has a ratio near 0. Timing: ``Inpainter.inpaint_arrays`` on the photo, wall and CPU
seconds (``--threads``), one call after a warm-up.

Run once with the code before a change (``PYTHONPATH=old/src ... --label before``) and once
after, into the same ``--json``: the file keeps one entry per label.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from edgefill.data import list_images, split
from edgefill.image import load_rgb
from edgefill.masks import scratch_mask
from edgefill.pipeline import Inpainter

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-samples"
SIZE = (2000, 3000)  # h, w
KINDS = ("scratches", "3 small holes", "large holes", "one big hole")


def scan(rgb: np.ndarray, rng: np.random.Generator, grain: float) -> np.ndarray:
    h, w = SIZE
    s = max(h / rgb.shape[0], w / rgb.shape[1])
    big = cv2.resize(rgb, (round(rgb.shape[1] * s), round(rgb.shape[0] * s)), cv2.INTER_CUBIC)
    y0, x0 = (big.shape[0] - h) // 2, (big.shape[1] - w) // 2
    big = big[y0 : y0 + h, x0 : x0 + w].astype(np.float32)
    noise = cv2.GaussianBlur(rng.normal(0, grain, (h, w)).astype(np.float32), (0, 0), 0.7)
    return np.clip(np.round(big + noise[..., None]), 0, 255).astype(np.uint8)


def blobs(rng: np.random.Generator, radii: tuple[int, int], spread: int) -> np.ndarray:
    h, w = SIZE
    hole = np.zeros((h, w), np.uint8)
    cy, cx = h // 2, w // 2
    for k in range(3):
        ang = 2 * np.pi * k / 3 + rng.uniform(0, 0.5)
        y = int(cy + spread * np.sin(ang) * 0.8)
        x = int(cx + spread * np.cos(ang))
        pts = []
        r0 = rng.uniform(*radii)
        for a in np.linspace(0, 2 * np.pi, 12, endpoint=False):
            r = r0 * rng.uniform(0.7, 1.2)
            pts.append((x + r * np.cos(a), y + r * np.sin(a)))
        cv2.fillPoly(hole, [np.array(pts, np.int32)], 1)
    return hole > 0


def make_mask(kind: str, rng: np.random.Generator) -> np.ndarray:
    h, w = SIZE
    if kind == "scratches":
        hole = np.zeros((h, w), bool)
        while hole.mean() < 0.005:
            hole |= scratch_mask(h, w, rng, count=1)
        return hole
    if kind == "3 small holes":
        return blobs(rng, (8, 15), 160)
    if kind == "large holes":
        return blobs(rng, (60, 160), 600)
    return blobs(rng, (350, 450), 0)  # three blobs on one centre: one ragged hole


def _masked_blur(grey: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur over ``mask`` pixels only (normalised convolution)."""
    m = mask.astype(np.float32)
    num = cv2.GaussianBlur(grey * m, (0, 0), sigma)
    return num / np.maximum(cv2.GaussianBlur(m, (0, 0), sigma), 1e-6)


def detail_ratio(img: np.ndarray, hole: np.ndarray) -> float:
    """Mean |high-pass| in the hole / in the known ring 3-20 px around it. Each side's local
    mean is taken over its own pixels only, so a step at the hole's border does not count as
    detail: only texture within the fill (along a thin scratch) and within the ring does."""
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    dist = cv2.distanceTransform((~hole).astype(np.uint8), cv2.DIST_L2, 5)
    ring = (dist >= 3) & (dist <= 20)
    inside = np.abs(grey - _masked_blur(grey, hole, 1.5))[hole].mean()
    outside = np.abs(grey - _masked_blur(grey, ring, 1.5))[ring].mean()
    return float(inside / max(outside, 1e-6))


def figure(inpainter: Inpainter, path: Path, args: argparse.Namespace) -> None:
    import edgefill.pipeline as pipeline_mod

    rng = np.random.default_rng([args.seed, 0])
    truth = scan(load_rgb(path)[0], rng, args.grain)
    for kind in KINDS:  # the same masks as the table's first photo
        hole = make_mask(kind, rng)
    damaged = truth.copy()
    damaged[hole] = 255
    detailed, _ = inpainter.inpaint_arrays(damaged, hole, hd_strategy=args.strategy)
    keep = pipeline_mod.restore_detail
    pipeline_mod.restore_detail = lambda photo, hole, up, *a, **k: up  # the path before
    try:
        plain, _ = inpainter.inpaint_arrays(damaged, hole, hd_strategy=args.strategy)
    finally:
        pipeline_mod.restore_detail = keep
    ys, xs = np.nonzero(hole)  # the big hole's left edge: photo on the left, fill on the right
    half = 170
    cy, cx = int(ys.mean()), int(xs.min()) + half // 2
    crop = (slice(cy - half, cy + half), slice(cx - half, cx + half))
    tiles = [truth[crop], plain[crop], detailed[crop]]
    gap = np.full((2 * half, 8, 3), 255, np.uint8)
    sheet = np.concatenate([tiles[0], gap, tiles[1], gap, tiles[2]], 1)
    for i, text in enumerate(("photo", "before: upscaled", "after: + detail")):
        org = (i * (2 * half + 8) + 8, 24)
        cv2.putText(sheet, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3)
        cv2.putText(sheet, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1)
    cv2.imwrite(args.figure, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])
    print(f"wrote {args.figure}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", default=None, help="release folder (default: shipped weights)")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--grain", type=float, default=6.0)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--strategy", default="crop")
    ap.add_argument("--label", default="after")
    ap.add_argument("--json")
    ap.add_argument(
        "--figure",
        help="write a JPEG: truth | plain upscaled fill | fill with restored detail, 1:1 crops "
        "at the edge of the first photo's big hole (run with the current code; no table)",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    inpainter = Inpainter.from_pretrained(args.weights, threads=args.threads)
    _, val = split(list_images(args.data), 0.1)
    if args.figure:
        figure(inpainter, val[0], args)
        return
    rows: dict[str, dict[str, list[float]]] = {k: {} for k in KINDS}
    warm = False
    for i, f in enumerate(val[: args.n]):
        rng = np.random.default_rng([args.seed, i])
        truth = scan(load_rgb(f)[0], rng, args.grain)
        for kind in KINDS:
            hole = make_mask(kind, rng)
            damaged = truth.copy()
            damaged[hole] = 255  # what the hole held is never seen
            if not warm:
                inpainter.inpaint_arrays(damaged, hole, hd_strategy=args.strategy)
                warm = True
            t0, c0 = time.perf_counter(), time.process_time()
            out, _ = inpainter.inpaint_arrays(damaged, hole, hd_strategy=args.strategy)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            assert np.array_equal(out[~hole], damaged[~hole])
            r = rows[kind]
            r.setdefault("ratio", []).append(detail_ratio(out, hole))
            r.setdefault("truth", []).append(detail_ratio(truth, hole))
            r.setdefault("wall_s", []).append(wall)
            r.setdefault("cpu_s", []).append(cpu)
            r.setdefault("hole_pct", []).append(100 * float(hole.mean()))
        print(f"{i + 1}/{args.n} photos", file=sys.stderr, flush=True)
    table = {k: {m: round(float(np.mean(v)), 4) for m, v in r.items()} for k, r in rows.items()}
    print(
        f"[{args.label}] {'mask':13s} {'hole %':>7s} {'ratio':>6s} {'truth':>6s} {'wall s':>7s} {'CPU s':>6s}"
    )
    for k, r in table.items():
        print(
            f"[{args.label}] {k:13s} {r['hole_pct']:7.2f} {r['ratio']:6.3f} {r['truth']:6.3f} "
            f"{r['wall_s']:7.2f} {r['cpu_s']:6.2f}"
        )
    if args.json:
        path = Path(args.json)
        doc = json.loads(path.read_text()) if path.is_file() else {}
        doc[args.label] = {
            "photos": args.n,
            "size": list(SIZE),
            "grain": args.grain,
            "seed": args.seed,
            "threads": args.threads,
            "strategy": args.strategy,
            "results": table,
        }
        path.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
