"""Render docs/figures/example.png: the bundled example (mask in red), its edge map, the result.

Usage: .venv/bin/python scripts/make_readme_figure.py [--weights DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from edgefill.image import load_rgb, save_image
from edgefill.pipeline import Inpainter

ROOT = Path(__file__).resolve().parents[1]


def overlay(rgb: np.ndarray, hole: np.ndarray) -> np.ndarray:
    out = rgb.astype(np.float32)
    out[hole] = 0.45 * out[hole] + 0.55 * np.array([230, 30, 30], np.float32)
    return out.round().astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", default=None)
    parser.add_argument("--photo", default=str(ROOT / "examples/astronaut.jpg"))
    parser.add_argument("--mask", default=str(ROOT / "examples/astronaut_mask.png"))
    parser.add_argument("-o", "--output", default=str(ROOT / "docs/figures/example.png"))
    args = parser.parse_args()
    inpainter = Inpainter.from_pretrained(args.weights)
    result = inpainter(args.photo, args.mask)
    rgb, _ = load_rgb(args.photo)
    edges = np.repeat((255 - np.round(result.edges * 255)).astype(np.uint8)[..., None], 3, axis=2)
    gap = np.full((rgb.shape[0], 8, 3), 255, np.uint8)
    panel = np.concatenate([overlay(rgb, result.mask), gap, edges, gap, result.image], axis=1)
    print(f"wrote {save_image(args.output, panel)}")


if __name__ == "__main__":
    main()
