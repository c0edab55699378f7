"""Does the refinement pass help? PSNR / LPIPS with and without it, per hole-size bucket.

    python benchmarks/bench_refine.py --weights DIR [--n 16] [--json docs/refine_results.json]

``DIR`` is a release folder (``edgefill export``); default: the shipped weights. Each of the first
``--n`` validation photos (``edgefill.data.split(list_images(DATA), 0.1)``) is centre-cropped to
256 px and gets one irregular mask per bucket (10-20 % ... 50-60 %, plus 0-10 %), seeded, so
reruns score the same cases. Every variant refines the same completion.

Variants: ``none``; ``seam`` (Poisson seam, no prediction outside the hole); ``seam+pred`` (with
the network's raw output on the border, an extra G2 pass); ``seam-band8`` (correction faded out
8 px into the hole); ``sharpen`` (0.6) and ``tv`` (0.04) alone; ``full`` = seam + sharpen + tv;
``default`` = ``RefineParams()``, what ``--refine`` runs (the seam only: the measurements decided).

``--cracks``: instead, the brightness shift of ``--refine`` on thin damage (issue 15). Each of the
first ``--n`` validation photos at its own size gets seeded scratch masks (``scratch_mask``),
once clean and once with a bright 1 px rim (+60 levels) around each scratch that the mask does
not cover (what real cracks look like); printed: the mean colour inside the hole of the refined
result minus the unrefined one, and of each minus the undamaged photo (levels, per channel).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from edgefill.data import center_square, list_images, split
from edgefill.image import load_rgb, to_tensor
from edgefill.masks import BUCKETS, bucket_name, generate_mask, scratch_mask
from edgefill.metrics import LPIPS, psnr
from edgefill.pipeline import Inpainter
from edgefill.refine import RefineParams, refine

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-samples"
OFF = RefineParams(seam=False, sharpen=0.0, tv=0.0)
SHARPEN, TV = 0.6, 0.04
VARIANTS: dict[str, RefineParams | None] = {
    "none": None,
    "seam": replace(OFF, seam=True),
    "seam+pred": replace(OFF, seam=True),
    "seam-band8": replace(OFF, seam=True, band=8),
    "sharpen": replace(OFF, sharpen=SHARPEN),
    "tv": replace(OFF, tv=TV),
    "full": RefineParams(seam=True, sharpen=SHARPEN, tv=TV),
    "default": RefineParams(),
}


def crack_shift(inpainter: Inpainter, files: list[Path], seed: int) -> None:
    import cv2

    rows: dict[str, list[np.ndarray]] = {}
    for i, f in enumerate(files):
        rgb, _ = load_rgb(f)
        h, w = rgb.shape[:2]
        hole = scratch_mask(h, w, np.random.default_rng([seed, i]))
        rim = (cv2.dilate(hole.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0) & ~hole
        damaged = rgb.copy()
        damaged[rim] = np.clip(damaged[rim].astype(np.int16) + 60, 0, 255).astype(np.uint8)
        for name, src in (("clean", rgb), ("bright rim", damaged)):
            result, edges = inpainter.inpaint_arrays(src, hole)
            out = refine(result, hole, edges)
            mean = [x[hole].astype(np.float64).mean(0) for x in (out, result, rgb)]
            rows.setdefault(f"{name}: refine - none", []).append(mean[0] - mean[1])
            rows.setdefault(f"{name}: none - truth", []).append(mean[1] - mean[2])
            rows.setdefault(f"{name}: refine - truth", []).append(mean[0] - mean[2])
    print(f"{len(files)} photos, mean colour inside the hole (levels, R G B)")
    for k, v in rows.items():
        a = np.array(v)
        print(
            f"{k:26s} mean {np.round(a.mean(0), 2)}  mean |.| {np.abs(a).mean():5.2f}  "
            f"max |.| {np.abs(a).max():5.2f}"
        )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", default=None, help="release folder (default: shipped weights)")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--n", type=int, default=16, help="validation photos per bucket")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json")
    ap.add_argument("--cracks", action="store_true", help="brightness shift on thin damage")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    inpainter = Inpainter.from_pretrained(args.weights)
    _, val = split(list_images(args.data), 0.1)
    val = val[: args.n]
    if args.cracks:
        crack_shift(inpainter, val, args.seed)
        return
    lpips = LPIPS()
    sums: dict[str, dict[str, dict[str, list[float]]]] = {}
    seconds: dict[str, float] = {v: 0.0 for v in args.variants}
    for i, f in enumerate(val):
        rgb, _ = load_rgb(f)
        target = center_square(rgb, args.size)
        y = to_tensor(target)
        for b, (low, high) in enumerate(BUCKETS):
            rng = np.random.default_rng([args.seed, i, b])
            hole = generate_mask("irregular", args.size, args.size, rng, (max(low, 0.01), high))
            result, edges = inpainter.inpaint_arrays(target, hole)
            pred = None
            if "seam+pred" in args.variants:
                pred = inpainter.complete(target, hole, edges)  # raw output, whole photo
            m = torch.from_numpy(hole.astype(np.float32))[None, None]
            for name in args.variants:
                params = VARIANTS[name]
                t0 = time.perf_counter()
                if params is None:
                    out = result
                else:
                    extra = pred if name == "seam+pred" else None
                    out = refine(result, hole, edges, prediction=extra, params=params)
                seconds[name] += time.perf_counter() - t0
                x = to_tensor(out)
                with torch.inference_mode():
                    whole, inside = lpips.whole_and_masked(x, y, m)
                row = sums.setdefault(bucket_name(low, high), {}).setdefault(name, {})
                row.setdefault("psnr", []).append(float(psnr(x, y)[0]))
                row.setdefault("psnr_hole", []).append(float(psnr(x, y, m)[0]))
                row.setdefault("lpips", []).append(float(whole[0]))
                row.setdefault("lpips_hole", []).append(float(inside[0]))
        print(f"{i + 1}/{len(val)} photos", file=sys.stderr, flush=True)

    table = {
        bucket: {
            name: {k: round(float(np.mean(v)), 4) for k, v in metrics.items()}
            for name, metrics in rows.items()
        }
        for bucket, rows in sums.items()
    }
    print(
        f"{'bucket':8s} {'variant':11s} {'PSNR':>7s} {'PSNRhole':>8s} {'LPIPS':>7s} {'LPIPShole':>9s}"
    )
    for bucket, rows in table.items():
        for name, r in rows.items():
            print(
                f"{bucket:8s} {name:11s} {r['psnr']:7.3f} {r['psnr_hole']:8.3f} "
                f"{r['lpips']:7.4f} {r['lpips_hole']:9.4f}"
            )
    count = len(val) * len(BUCKETS)
    timing = {k: round(v / count, 4) for k, v in seconds.items()}
    print("seconds per image:", timing)
    if args.json:
        doc = {
            "weights": str(args.weights or "default"),
            "weights_info": {k: v for k, v in inpainter.info.items() if k != "model"},
            "photos": len(val),
            "size": args.size,
            "seed": args.seed,
            "results": table,
            "seconds_per_image": timing,
        }
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
