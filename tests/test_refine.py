"""Refinement: never touches pixels outside the hole; removes seams; sharpens; cleans flat areas."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import edgefill.refine as refine_mod
from edgefill.errors import EdgefillError
from edgefill.refine import RefineParams, refine, seam_correction


def gradient_photo(h: int = 48, w: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    return np.stack([xx / w, yy / h, 0.3 + 0.4 * xx / w], 2)


def to8(a: np.ndarray) -> np.ndarray:
    return np.clip(np.round(a * 255), 0, 255).astype(np.uint8)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    h=st.integers(4, 40),
    w=st.integers(4, 40),
    density=st.floats(0.0, 1.0),
    band=st.one_of(st.none(), st.integers(1, 5)),
    with_pred=st.booleans(),
)
def test_pixels_outside_the_hole_never_change(seed, h, w, density, band, with_pred):
    rng = np.random.default_rng(seed)
    result = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    hole = rng.random((h, w)) < density
    edges = (rng.random((h, w)) < 0.2).astype(np.float32)
    pred = rng.integers(0, 256, (h, w, 3), dtype=np.uint8) if with_pred else None
    out = refine(result, hole, edges, pred, RefineParams(band=band, sharpen=0.6, tv=0.04))
    assert out.dtype == np.uint8 and out.shape == result.shape
    assert np.array_equal(out[~hole], result[~hole])


def test_seam_removes_a_colour_offset():
    photo = gradient_photo()
    hole = np.zeros(photo.shape[:2], bool)
    hole[12:36, 20:50] = True
    fill = np.clip(photo + 0.15, 0, 1)  # the network got the brightness wrong
    result = to8(np.where(hole[..., None], fill, photo))
    off = RefineParams(seam=True, sharpen=0, tv=0)
    before = np.abs(result[hole] / 255 - photo[hole]).mean()
    after = np.abs(refine(result, hole, params=off)[hole] / 255 - photo[hole]).mean()
    exact = refine(result, hole, prediction=to8(fill), params=off)
    assert after < before / 10
    assert np.abs(exact[hole] / 255 - photo[hole]).mean() < before / 20


def test_band_limits_the_correction_depth():
    photo = gradient_photo()
    hole = np.zeros(photo.shape[:2], bool)
    hole[4:44, 4:60] = True
    fill = np.clip(photo + 0.2, 0, 1)
    corr = seam_correction(photo, fill, hole, band=3)
    assert np.abs(corr[~hole]).max() == 0
    assert np.abs(corr[10:38, 10:54]).max() == 0  # deeper than 3 px: untouched
    assert np.abs(corr[4, 10:54]).min() > 0.05  # the border row is corrected


def test_coarse_to_fine_matches_the_exact_solve(monkeypatch):
    photo = gradient_photo(80, 96)
    hole = np.zeros(photo.shape[:2], bool)
    hole[8:72, 10:86] = True
    yy, xx = np.mgrid[:80, :96]
    fill = np.clip(photo + 0.1 * np.sin(xx / 9.0)[..., None] + 0.05, 0, 1).astype(np.float32)
    exact = seam_correction(photo, fill, hole)
    monkeypatch.setattr(refine_mod, "MAX_UNKNOWNS", 1500)  # 4864 unknowns: goes coarse-to-fine
    approx = seam_correction(photo, fill, hole)
    assert np.abs(approx - exact).max() < 0.03  # about 4 grey levels at worst
    assert np.abs(approx - exact).mean() < 0.005
    assert np.abs(approx[~hole]).max() == 0


def test_tv_cleans_a_flat_noisy_fill():
    rng = np.random.default_rng(0)
    flat = np.full((48, 48, 3), 0.5, np.float32)
    hole = np.zeros((48, 48), bool)
    hole[12:36, 12:36] = True
    noisy = flat + np.where(hole[..., None], rng.normal(0, 0.02, flat.shape), 0)
    result = to8(noisy)
    out = refine(result, hole, params=RefineParams(seam=False, sharpen=0, tv=0.1))
    assert out[hole].astype(float).std() < 0.5 * result[hole].astype(float).std()


def test_sharpen_steepens_a_predicted_contour():
    h, w = 40, 40
    xx = np.mgrid[:h, :w][1].astype(np.float32)
    soft = 1 / (1 + np.exp(-(xx - 20) / 2.5))  # a blurry vertical edge
    img = to8(np.repeat(soft[..., None], 3, 2) * 0.6 + 0.2)
    hole = np.zeros((h, w), bool)
    hole[5:35, 10:30] = True
    edges = np.zeros((h, w), np.float32)
    edges[:, 20] = 1
    out = refine(img, hole, edges, params=RefineParams(seam=False, sharpen=1.0, tv=0))
    row = 20
    assert np.array_equal(out[~hole], img[~hole])
    step_before = int(img[row, 21, 0]) - int(img[row, 19, 0])
    step_after = int(out[row, 21, 0]) - int(out[row, 19, 0])
    assert step_after > step_before


def test_degenerate_holes():
    img = to8(gradient_photo(16, 16))
    assert np.array_equal(refine(img, np.zeros((16, 16), bool)), img)
    full = refine(img, np.ones((16, 16), bool))  # nothing known: no seam, still a valid image
    assert full.shape == img.shape and full.dtype == np.uint8


def test_bad_inputs_are_clear_errors():
    img = to8(gradient_photo(16, 16))
    with pytest.raises(EdgefillError, match="mask"):
        refine(img, np.zeros((8, 8), bool))
    with pytest.raises(EdgefillError, match="RGB uint8"):
        refine(img.astype(np.float32), np.zeros((16, 16), bool))
    with pytest.raises(EdgefillError, match="edge map"):
        refine(img, np.ones((16, 16), bool), np.zeros((4, 4), np.float32))


# ----------------------------------------------------------------------------- no brightness shift


def crack(h: int, w: int, rng: np.random.Generator, width: int) -> np.ndarray:
    """A thin wandering crack across the photo (bool HxW), ``width`` px wide."""
    import cv2

    pts = [(0, int(rng.integers(h // 3, 2 * h // 3)))]
    while pts[-1][0] < w:
        x, y = pts[-1]
        pts.append((x + int(rng.integers(6, 14)), int(np.clip(y + rng.integers(-5, 6), 4, h - 5))))
    canvas = np.zeros((h, w), np.uint8)
    cv2.polylines(canvas, [np.array(pts, np.int32)], False, 1, width)
    return canvas > 0


def scene(kind: str, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Flat or gently graded photo (float HxWx3 in [0, 1]) with film grain of 1.5 levels."""
    base = np.array([0.45, 0.5, 0.55], np.float32)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    img = np.broadcast_to(base, (h, w, 3)).copy()
    if kind == "graded":  # 40 grey levels across the width, 20 down the height
        img += (40 * xx / w + 20 * yy / h)[..., None] / 255 - 0.1
    return img + rng.normal(0, 1.5 / 255, img.shape).astype(np.float32)


@pytest.mark.parametrize("kind", ["flat", "graded"])
@pytest.mark.parametrize("width", [1, 2, 3])
@pytest.mark.parametrize("nearby", ["nothing", "bright rim", "bright line", "bright region"])
def test_refinement_never_shifts_the_mean_of_a_thin_fill(kind, width, nearby, request):
    """A fill that already matches its flat or gently graded surroundings keeps its mean colour
    within 1 grey level, also when bright content touches the crack: a crack's bright rim that
    the mask did not cover, a bright line running along it, a bright region it runs into. (The
    old seam took the rim pixel as the colour to meet: +49 to +64 levels in the rim and line
    cases.)
    """
    if nearby == "bright line" and width == 3:  # measured +5.3 to +7.1 levels: a known limit
        request.applymarker(
            pytest.mark.xfail(strict=True, reason="3 px bright band along a 3 px crack")
        )
    rng = np.random.default_rng([width, len(nearby)])
    h, w = 96, 128
    truth = scene(kind, h, w, rng)
    hole = crack(h, w, rng, width)
    photo = truth.copy()
    import cv2

    ring = (cv2.dilate(hole.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0) & ~hole
    if nearby == "bright rim":  # real cracks: a 1 px halo around the flagged pixels
        photo[ring] = np.minimum(photo[ring] + 60 / 255, 1)
    elif nearby == "bright line":  # a bright thread running along one side, touching it
        ys, xs = np.nonzero(hole)
        photo[np.clip(ys - width, 0, h - 1), xs] = 0.95
        photo[hole] = truth[hole]
    elif nearby == "bright region":  # the crack runs into a bright object at the right
        truth[:, w - 24 :] = photo[:, w - 24 :] = 0.92
    result = to8(np.where(hole[..., None], truth, photo))
    out = refine(result, hole)
    assert np.array_equal(out[~hole], result[~hole])
    shift = out[hole].astype(float).mean(0) - result[hole].astype(float).mean(0)
    assert np.abs(shift).max() <= 1.0, shift
