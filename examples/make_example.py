#!/usr/bin/env python3
"""Regenerate the bundled example: examples/astronaut.jpg and examples/astronaut_mask.png.

    .venv/bin/python examples/make_example.py [--preview /tmp/astronaut_preview.png]

The photo is scikit-image's ``astronaut`` (NASA, public domain; see examples/README.md), saved
as a 512x512 JPEG. The mask (white = hole) is drawn here, deterministically from a fixed seed:
a blob over the name badge on the suit (an object to remove) and four thin scratches like those
on an old print (damage to repair), across the flag's stripes, the backdrop and the suit.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
PHOTO = HERE / "astronaut.jpg"
MASK = HERE / "astronaut_mask.png"
SEED = 20190111  # any fixed number; changing it changes the mask
SIZE = 512

# Scratches: (start, bend, end) in pixels of the 512x512 photo, and the stroke width.
SCRATCHES = [
    (((8, 118), (60, 170), (96, 262)), 5),  # across the flag's stripes
    (((104, 14), (110, 70), (146, 112)), 4),  # backdrop, left of the head
    (((318, 24), (356, 70), (344, 146)), 4),  # backdrop, right of the head
    (((36, 432), (86, 446), (128, 486)), 5),  # orange suit, below the mission patch
]
BADGE_CENTRE, BADGE_RADII = (303.0, 358.0), (36.0, 26.0)  # the name badge on the suit


def bezier(points: tuple[tuple[int, int], ...], rng: np.random.Generator, n: int = 64) -> list:
    """A quadratic Bezier curve from the first to the last point; the bend is jittered (seeded)."""
    p0, p1, p2 = (np.asarray(p, dtype=np.float64) for p in points)
    p1 = p1 + rng.normal(0.0, 4.0, size=2)
    t = np.linspace(0.0, 1.0, n)[:, None]
    curve = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
    return [(float(x), float(y)) for x, y in curve]


def make_mask(rng: np.random.Generator) -> Image.Image:
    mask = Image.new("L", (SIZE, SIZE), 0)
    draw = ImageDraw.Draw(mask)
    for points, width in SCRATCHES:
        draw.line(bezier(points, rng), fill=255, width=width, joint="curve")
    # A blob with an irregular outline: an ellipse whose radius varies smoothly with the angle.
    angles = np.linspace(0.0, 2 * np.pi, 40, endpoint=False)
    radius = 1.0 + 0.12 * np.sin(3 * angles + rng.uniform(0, 2 * np.pi))
    radius += rng.uniform(-0.05, 0.05, size=angles.size)
    cx, cy = BADGE_CENTRE
    rx, ry = BADGE_RADII
    outline = [
        (cx + rx * r * np.cos(a), cy + ry * r * np.sin(a))
        for a, r in zip(angles, radius, strict=True)
    ]
    draw.polygon(outline, fill=255)
    return mask


def load_photo() -> Image.Image:
    import skimage.data

    photo = Image.fromarray(skimage.data.astronaut())
    if photo.size != (SIZE, SIZE):
        photo = photo.resize((SIZE, SIZE), Image.Resampling.LANCZOS)
    return photo


def preview(photo: Image.Image, mask: Image.Image, path: Path) -> None:
    """The photo with the hole painted semi-transparent red."""
    rgb = np.asarray(photo.convert("RGB")).astype(np.float32)
    hole = (np.asarray(mask) > 0)[..., None]
    red = np.array([255.0, 0.0, 0.0])
    out = np.where(hole, 0.35 * rgb + 0.65 * red, rgb)
    Image.fromarray(out.round().astype(np.uint8)).save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preview", type=Path, help="also write the photo with the mask in red")
    args = parser.parse_args()
    photo = load_photo()
    mask = make_mask(np.random.default_rng(SEED))
    photo.save(PHOTO, format="JPEG", quality=90)
    mask.save(MASK, format="PNG", optimize=True)
    hole = float((np.asarray(mask) > 0).mean())
    print(
        f"wrote {PHOTO.name} ({PHOTO.stat().st_size // 1024} KB) and {MASK.name} ({hole:.1%} hole)"
    )
    if args.preview:
        preview(photo, mask, args.preview)
        print(f"wrote {args.preview}")


if __name__ == "__main__":
    main()
