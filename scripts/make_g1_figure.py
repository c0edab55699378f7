"""Render G1's predicted edges on validation photos, for judging edge-stage changes by eye.

Each row: the photo with its hole (white), the true Canny edges inside the hole, then for each
release the composite edge map (known edges outside, predicted inside; the hole tinted blue).
Irregular 30-40 % and box 25 % holes alternate. Photos: the first validation photos of DATA under
the training split rule (never a training photo).

Usage: .venv/bin/python scripts/make_g1_figure.py [--weights DIR ...] [--photos 4] [-o OUT]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from edgefill.data import center_square, list_images, split
from edgefill.edges import canny_edges, to_gray
from edgefill.image import load_rgb, save_image
from edgefill.masks import box_mask, irregular_mask
from edgefill.pipeline import Inpainter

ROOT = Path(__file__).resolve().parents[1]
SIZE = 256
HOLE_TINT = (230, 240, 255)


def edge_tile(edges: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Black edges on white, the hole's empty pixels tinted."""
    tile = np.repeat((255 - edges * 255).astype(np.uint8)[..., None], 3, 2)
    tile[hole & (edges < 0.5)] = HOLE_TINT
    return tile


def rows_for(rgb: np.ndarray, seed: int, models: list[Inpainter]) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = canny_edges(to_gray(rgb), None, models[0].config.canny_sigma)
    rows = []
    for hole in (irregular_mask(SIZE, SIZE, rng, (0.3, 0.4)), box_mask(SIZE, SIZE, rng, 0.25)):
        shown = rgb.copy()
        shown[hole] = 255
        tiles = [shown, edge_tile(np.where(hole, truth, 0), hole)]
        for model in models:
            known, pred = model.predict_edges(rgb, hole)
            tiles.append(edge_tile(np.where(hole, pred, known), hole))
        rows.append(np.concatenate(tiles, 1))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", nargs="+", default=[None], help="releases (default: shipped)")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--photos", type=int, default=4)
    ap.add_argument("-o", "--output", default=str(ROOT / "out" / "g1_edges.png"))
    args = ap.parse_args()
    models = [Inpainter.from_pretrained(w, precision="fp32") for w in args.weights]
    _, val = split(list_images(args.data), 0.1)
    rows = []
    for i, f in enumerate(sorted(val)[: args.photos]):
        rgb = center_square(load_rgb(f)[0], SIZE)
        rows += rows_for(rgb, i, models)
    save_image(args.output, np.concatenate(rows, 0))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
