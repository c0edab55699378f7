"""Edges: skimage Canny on a known image, the hole never leaks, composite and threshold."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from edgefill.edges import canny_edges, composite, threshold, to_gray


def white_square(size: int = 64, lo: int = 16, hi: int = 48) -> np.ndarray:
    gray = np.zeros((size, size), np.float32)
    gray[lo:hi, lo:hi] = 1.0
    return gray


def _distance_to_border(size: int = 64, lo: int = 16, hi: int = 48) -> np.ndarray:
    """Distance (px) of every pixel to the square's outline (the step between 0 and 1)."""
    inside = np.zeros((size, size), bool)
    inside[lo:hi, lo:hi] = True
    outline = inside ^ ndimage.binary_erosion(inside)
    outline |= ndimage.binary_dilation(inside) & ~inside
    return ndimage.distance_transform_edt(~outline)


def test_canny_white_square_edges_on_its_border_only() -> None:
    edges = canny_edges(white_square(), sigma=2.0)
    assert edges.dtype == np.float32 and edges.shape == (64, 64)
    assert set(np.unique(edges)) <= {0.0, 1.0}
    dist = _distance_to_border()
    on = edges > 0
    assert on.sum() >= 4 * 24  # all four sides are found (corners are rounded by sigma 2)
    assert dist[on].max() <= 2.0, "edge pixels far from the square's border"
    # Each side has edges along most of its length.
    for side in (on[14:19, 16:48], on[45:50, 16:48], on[16:48, 14:19], on[16:48, 45:50]):
        assert side.any(0).sum() + side.any(1).sum() >= 24
    # Flat regions (inside the square, far outside it) have none.
    assert not on[22:42, 22:42].any()
    assert not on[:8].any() and not on[:, :8].any()


def test_canny_hole_erases_edges_and_keeps_the_rest() -> None:
    gray = white_square()
    hole = np.zeros((64, 64), bool)
    hole[:, 36:] = True  # the right part of the square, including its right side
    full = canny_edges(gray, sigma=2.0) > 0
    masked = canny_edges(gray, hole, sigma=2.0) > 0
    assert full[:, 44:52].any()  # the right side exists without a hole ...
    assert not masked[hole].any()  # ... and vanishes with one
    assert masked[16:48, 12:20].sum() >= 20  # the left side is still there
    # No spurious edge along the hole's boundary (the hole's border is not an image edge).
    assert not masked[24:40, 30:36].any()


def test_canny_hole_content_does_not_leak() -> None:
    rng = np.random.default_rng(0)
    gray = white_square()
    hole = np.zeros((64, 64), bool)
    hole[20:44, 30:60] = True
    other = gray.copy()
    other[hole] = rng.random(int(hole.sum())).astype(np.float32)  # noise only inside the hole
    np.testing.assert_array_equal(canny_edges(gray, hole), canny_edges(other, hole))
    assert not np.array_equal(canny_edges(gray), canny_edges(other))


def test_canny_sigma_changes_the_result() -> None:
    rng = np.random.default_rng(1)
    gray = np.clip(white_square() + rng.normal(0, 0.15, (64, 64)), 0, 1).astype(np.float32)
    fine = canny_edges(gray, sigma=0.5)
    smooth = canny_edges(gray, sigma=3.0)
    assert fine.sum() > smooth.sum()  # small sigma also finds the noise


@pytest.mark.parametrize("shape", [(1, 1), (2, 5), (5, 2), (3, 3)])
def test_canny_tiny_images(shape: tuple[int, int]) -> None:
    edges = canny_edges(np.ones(shape, np.float32), np.zeros(shape, bool))
    assert edges.shape == shape and edges.dtype == np.float32


def test_to_gray_uint8_and_float_agree() -> None:
    rgb = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0]]], np.uint8)
    g8 = to_gray(rgb)
    gf = to_gray(rgb.astype(np.float32) / 255)
    assert g8.dtype == np.float32 and g8.shape == (1, 4)
    np.testing.assert_allclose(g8, gf, atol=1e-6)
    assert g8[0, 0] == 0 and g8[0, 1] == pytest.approx(1.0)
    assert g8[0, 3] > g8[0, 2]  # luma weights: green is brighter than red


def test_composite_known_outside_predicted_inside() -> None:
    known = torch.zeros(1, 1, 4, 4)
    known[..., 0, :] = 1
    pred = torch.full((1, 1, 4, 4), 0.7)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., 2:, :] = 1
    out = composite(known, pred, mask)
    assert torch.equal(out[..., :2, :], known[..., :2, :])
    assert torch.allclose(out[..., 2:, :], pred[..., 2:, :])


def test_threshold() -> None:
    e = torch.tensor([0.1, 0.5, 0.49, 0.9])
    assert threshold(e, None) is e
    assert threshold(e, 0.5).tolist() == [0.0, 1.0, 0.0, 1.0]
    assert threshold(e, 0.5).dtype == e.dtype
