"""Object selection: GrabCut proposals from a box and/or scribbles."""

from __future__ import annotations

import numpy as np
import pytest

from edgefill.errors import EdgefillError
from edgefill.selection import NOT_OBJECT, OBJECT, parse_box, select_object


def scene(h: int = 120, w: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """A yellow ring with a hole in it (the object) on a textured blue background."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:h, :w]
    img = np.stack([30 + 0 * x, 60 + 30 * (x / w), 150 + 50 * (y / h)], -1).astype(float)
    r2 = (x - 80) ** 2 + (y - 60) ** 2
    ring = (r2 < 35**2) & (r2 >= 12**2)
    img[ring] = [230, 200, 40]
    img += rng.normal(0, 6, img.shape)
    return img.clip(0, 255).astype(np.uint8), ring


def test_box_selects_the_object_and_fills_its_holes() -> None:
    rgb, ring = scene()
    got = select_object(rgb, (40, 20, 120, 100), grow=0)
    assert got.dtype == bool and got.shape == ring.shape
    assert got[ring].mean() > 0.97
    y, x = np.mgrid[:120, :160]
    inside = (x - 80) ** 2 + (y - 60) ** 2 < 8**2
    assert got[inside].all(), "the hole inside the object must be part of the selection"
    assert (got & ~ring & ~inside).sum() < 0.1 * ring.sum()


def test_grow_widens_the_proposal_and_results_repeat() -> None:
    rgb, _ = scene()
    tight = select_object(rgb, (40, 20, 120, 100), grow=0)
    wide = select_object(rgb, (40, 20, 120, 100), grow=6)
    assert wide[tight].all() and wide.sum() > tight.sum()
    np.testing.assert_array_equal(wide, select_object(rgb, (40, 20, 120, 100), grow=6))
    default = select_object(rgb, (40, 20, 120, 100))  # 0.5 % of 160 px, at least 2 px
    np.testing.assert_array_equal(default, select_object(rgb, (40, 20, 120, 100), grow=2))


def test_scribbles_alone_and_not_object_marks() -> None:
    rgb, ring = scene()
    marks = np.zeros(ring.shape, np.uint8)
    marks[58:62, 50:62] = OBJECT  # a stroke on the ring's left side
    got = select_object(rgb, scribbles=marks, grow=0)
    assert got[ring].mean() > 0.9
    # Marking the ring's right half "not object" inside a box keeps it out.
    marks[:, 100:] = 0
    marks[40:80, 100:112] = NOT_OBJECT
    got = select_object(rgb, (40, 20, 120, 100), marks, grow=0)
    assert not got[40:80, 100:112].any()


def test_large_photos_are_selected_at_a_working_size() -> None:
    rgb, ring = scene()
    big = np.repeat(np.repeat(rgb, 8, 0), 8, 1)  # 1280 x 960
    got = select_object(big, (320, 160, 960, 800), grow=0)
    assert got.shape == big.shape[:2]
    big_ring = np.repeat(np.repeat(ring, 8, 0), 8, 1)
    assert got[big_ring].mean() > 0.95


def test_parse_box() -> None:
    assert parse_box("10, 20, 50, 60", 100, 100) == (10, 20, 50, 60)
    assert parse_box("50,60,10,20", 100, 100) == (10, 20, 50, 60)  # any corner order
    assert parse_box("-5,-5,500,40.4", 100, 100) == (0, 0, 100, 40)  # clipped to the photo
    with pytest.raises(EdgefillError, match="four numbers"):
        parse_box("a,b,c,d", 100, 100)
    with pytest.raises(EdgefillError, match="too small"):
        parse_box("10,10,11,50", 100, 100)


def test_bad_inputs() -> None:
    rgb, _ = scene()
    with pytest.raises(EdgefillError, match="draw a box"):
        select_object(rgb)
    with pytest.raises(EdgefillError, match="scribbles are 5x5"):
        select_object(rgb, (0, 0, 50, 50), np.zeros((5, 5), np.uint8))
    with pytest.raises(EdgefillError, match="grow"):
        select_object(rgb, (0, 0, 50, 50), grow=-2)
