"""Render docs/figures/edge_guides.png: one hole filled under three different drawn edge maps.

Top row: the edge guide (known Canny edges outside the hole, the drawn or predicted ones inside;
black on white, the hole outlined in red). Bottom row: the fill. Column 1 uses the model's own
predicted edges; columns 2-4 draw a horizontal line, a diagonal cross and a circle into the hole.
Prints how far each drawn guide moves the fill from the predicted-edge fill (mean absolute
difference inside the hole, in grey levels): the number the "edges steer the fill" promise rests on.

Usage: .venv/bin/python scripts/make_edge_figure.py [--weights DIR] [--photo P] [-o OUT]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from edgefill.data import center_square
from edgefill.image import load_rgb, save_image
from edgefill.pipeline import Inpainter

ROOT = Path(__file__).resolve().parents[1]
SIZE = 256
BOX = (72, 184)  # the hole: a centred 112x112 box (19 % of the image)


def drawn_guides(size: int, lo: int, hi: int) -> dict[str, np.ndarray]:
    """Three edge drawings inside the box [lo, hi)^2, as float32 maps in {0, 1}."""
    mid = (lo + hi) // 2
    guides = {}
    line = np.zeros((size, size), np.uint8)
    cv2.line(line, (lo - 4, mid), (hi + 4, mid), 1, 1)
    guides["horizontal line"] = line
    cross = np.zeros((size, size), np.uint8)
    cv2.line(cross, (lo, lo), (hi, hi), 1, 1)
    cv2.line(cross, (lo, hi), (hi, lo), 1, 1)
    guides["diagonal cross"] = cross
    circle = np.zeros((size, size), np.uint8)
    cv2.circle(circle, (mid, mid), (hi - lo) // 3, 1, 1)
    guides["circle"] = circle
    return {k: v.astype(np.float32) for k, v in guides.items()}


def edge_panel(edges: np.ndarray, hole: np.ndarray) -> np.ndarray:
    img = np.repeat((255 - np.round(edges * 255)).astype(np.uint8)[..., None], 3, axis=2)
    outline = cv2.morphologyEx(hole.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
    img[outline > 0] = (220, 40, 40)
    return img


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default=None)
    parser.add_argument("--photo", default=str(ROOT / "examples/astronaut.jpg"))
    parser.add_argument("-o", "--output", default=str(ROOT / "docs/figures/edge_guides.png"))
    args = parser.parse_args()
    inpainter = Inpainter.from_pretrained(args.weights)
    rgb = center_square(load_rgb(args.photo)[0], SIZE)
    hole = np.zeros((SIZE, SIZE), bool)
    lo, hi = BOX
    hole[lo:hi, lo:hi] = True
    base, base_edges = inpainter.inpaint_arrays(rgb, hole)
    columns = [(edge_panel(base_edges, hole), base)]
    for name, guide in drawn_guides(SIZE, lo, hi).items():
        result, edges = inpainter.inpaint_arrays(rgb, hole, guide)
        diff = np.abs(result.astype(np.float32) - base.astype(np.float32))[hole].mean()
        print(f"{name}: fill differs from the predicted-edge fill by {diff:.1f} grey levels")
        columns.append((edge_panel(edges, hole), result))
    gap_v = np.full((SIZE, 6, 3), 255, np.uint8)
    rows = []
    for r in range(2):
        parts = []
        for col in columns:
            parts += [col[r], gap_v]
        rows.append(np.concatenate(parts[:-1], axis=1))
    gap_h = np.full((6, rows[0].shape[1], 3), 255, np.uint8)
    print(f"wrote {save_image(args.output, np.concatenate([rows[0], gap_h, rows[1]], axis=0))}")


if __name__ == "__main__":
    main()
