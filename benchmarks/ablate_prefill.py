"""Which hole pre-fill should G2 correct? An ablation on *training* photos (design choices are
never tuned on the validation photos).

    python benchmarks/ablate_prefill.py [--photos 12] [--json docs/prefill_ablation.json]

For photos of the training split of ../shared/data (the first N by name hash), 256 px centre
crops, seeded irregular masks in the 30-40 %, 40-50 % and 50-60 % buckets and a 25 % box: hole
LPIPS, whole-image LPIPS and PSNR of each pre-fill on its own (no network): Telea, PatchMatch, and
PatchMatch guided by the composite edge map with the shipped G1's predicted edges or with the
photo's true Canny edges inside the hole (the pre-fill's share of EdgeConnect's ablation).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from edgefill.data import center_square, list_images, split
from edgefill.edges import canny_edges, to_gray
from edgefill.evaluate import score
from edgefill.image import load_rgb
from edgefill.masks import generate_mask
from edgefill.metrics import LPIPS
from edgefill.pipeline import Inpainter
from edgefill.prefill import fill_hole, patchmatch

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"irregular 30-40%": (0.3, 0.4), "irregular 40-50%": (0.4, 0.5),
            "irregular 50-60%": (0.5, 0.6), "box 25%": None}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--photos", type=int, default=12)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--weights", help="release whose G1 predicts the edges (default: shipped)")
    ap.add_argument("--json", help="write the table here")
    args = ap.parse_args(argv)
    train, _ = split(list_images(args.data), 0.1)
    train = sorted(train, key=lambda p: hashlib.sha1(p.name.encode()).hexdigest())[: args.photos]
    inp = Inpainter.from_pretrained(args.weights, precision="fp32")
    lpips = LPIPS()
    sums: dict[str, dict[str, list[float]]] = {}
    for i, path in enumerate(train):
        rgb = center_square(load_rgb(path)[0], args.size)
        true = canny_edges(to_gray(rgb), None, inp.config.canny_sigma)
        for name, ratio in SETTINGS.items():
            rng = np.random.default_rng([i, len(name)])
            kind = "box" if ratio is None else "irregular"
            hole = generate_mask(kind, args.size, args.size, rng, ratio or (0.2, 0.3))
            known = canny_edges(to_gray(rgb), hole, inp.config.canny_sigma)
            guides = {
                "telea": None,
                "patchmatch": None,
                "patchmatch + predicted edges": inp.edge_map(rgb, hole),
                "patchmatch + true edges": np.where(hole, true, known),
            }
            for method, edges in guides.items():
                t0 = time.perf_counter()
                if method == "telea":
                    fill = fill_hole("telea", rgb, hole)
                else:
                    fill = patchmatch(rgb, hole, 0, edges)
                out = np.where(hole[..., None], fill, rgb)
                s = score(out, rgb, hole, lpips) | {"seconds": time.perf_counter() - t0}
                cell = sums.setdefault(name, {}).setdefault(method, [])
                cell.append(s)
        print(f"{i + 1}/{len(train)} {path.name}", file=sys.stderr)
    table = {
        setting: {
            m: {
                k: float(np.mean([r[k] for r in rows]))
                for k in ("lpips_hole", "lpips", "psnr", "seconds")
            }
            for m, rows in methods.items()
        }
        for setting, methods in sums.items()
    }
    print("| masks | pre-fill | hole LPIPS | LPIPS | PSNR | s |\n|---|---|---|---|---|---|")
    for setting, methods in table.items():
        for m, v in methods.items():
            print(
                f"| {setting} | {m} | {v['lpips_hole']:.4f} | {v['lpips']:.4f} | {v['psnr']:.2f} | {v['seconds']:.2f} |"
            )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"photos": [p.name for p in train], "table": table}, indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
