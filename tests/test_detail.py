"""Detail restoration for fills made at reduced size: the photo's fine band copied into the hole."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import TINY_CONFIG, tiny_generators

import edgefill.pipeline as pipeline_mod
from edgefill.detail import high_band, restore_detail
from edgefill.pipeline import Inpainter, plan_windows


def grainy(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth colour shapes plus fine grain: detail that a 4x smaller grid cannot hold."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    base = np.stack([120 + 60 * np.sin(xx / 40), 110 + 50 * np.cos(yy / 35), 90 + 0 * xx], 2)
    grain = cv2.GaussianBlur(rng.normal(0, 14, (h, w)).astype(np.float32), (0, 0), 0.6)
    return np.clip(np.round(base + grain[..., None]), 0, 255).astype(np.uint8)


def fine_energy(img: np.ndarray, hole: np.ndarray) -> float:
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.abs(grey - cv2.GaussianBlur(grey, (0, 0), 1.0))[hole].mean())


def reduced_fill(photo: np.ndarray, hole: np.ndarray, factor: int):
    """What the pipeline has for a downscaled window: the reduced composite (here the truth, a
    perfect network) and its bicubic upscale."""
    h, w = hole.shape
    size = (h // factor, w // factor)
    small = cv2.resize(photo, size[::-1], interpolation=cv2.INTER_AREA)
    small_hole = cv2.resize(hole.astype(np.uint8), size[::-1], interpolation=cv2.INTER_AREA) > 0
    up = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return small, small_hole, up


def test_detail_brings_back_the_fine_band_and_leaves_known_pixels_alone():
    truth = grainy(240, 320)
    hole = np.zeros((240, 320), bool)
    cv2.circle(hole.view(np.uint8), (160, 120), 50, 1, -1)
    photo = truth.copy()
    photo[hole] = 255
    small, small_hole, up = reduced_fill(truth, hole, 4)
    out = restore_detail(photo, hole, up, small, small_hole)
    assert np.array_equal(out[~hole], up[~hole])
    plain, detailed, real = (fine_energy(x, hole) for x in (up, out, truth))
    assert plain < 0.4 * real  # the upscaled fill is a blur ...
    assert detailed > 0.7 * real  # ... the restored one is about as fine as the photo
    assert detailed < 1.3 * real
    # The low frequencies stay the network's: the fill's local mean barely moves.
    blur = lambda a: cv2.GaussianBlur(a.astype(np.float32), (0, 0), 4)  # noqa: E731
    assert np.abs(blur(out) - blur(up))[hole].mean() < 2.0


def test_the_middle_of_a_hole_beyond_the_local_search_gets_detail_too():
    """Blocks deeper than SEARCH reduced px from any known pixel are matched over the whole
    window: without that, the middle of a large hole stayed a blur inside a ring of grain."""
    truth = grainy(560, 560, seed=3)
    hole = np.zeros((560, 560), bool)
    hole[80:480, 80:480] = True  # 100 px at the reduced scale: its middle is > SEARCH deep
    photo = truth.copy()
    photo[hole] = 255
    small, small_hole, up = reduced_fill(truth, hole, 4)
    out = restore_detail(photo, hole, up, small, small_hole)
    middle = np.zeros_like(hole)
    middle[240:320, 240:320] = True  # 40 reduced px from the hole's edge
    assert fine_energy(up, middle) < 0.4 * fine_energy(truth, middle)
    assert fine_energy(out, middle) > 0.7 * fine_energy(truth, middle)
    assert np.array_equal(out[~hole], up[~hole])
    # Threads share the rows of blocks: the same result.
    assert np.array_equal(restore_detail(photo, hole, up, small, small_hole, workers=3), out)
    hole[8:-8, 8:-8] = True  # no all-known template position left anywhere: nothing to copy
    small, small_hole, up = reduced_fill(truth, hole, 4)
    assert np.array_equal(restore_detail(photo, hole, up, small, small_hole), up)


def test_high_band_is_what_the_round_trip_loses():
    img = grainy(64, 96)
    band = high_band(img, (16, 24))
    back = cv2.resize(
        cv2.resize(img, (24, 16), interpolation=cv2.INTER_AREA),
        (96, 64),
        interpolation=cv2.INTER_CUBIC,
    )
    assert np.allclose(back + band, img, atol=1e-3)


def test_native_windows_and_empty_holes_are_left_as_they_are():
    img = grainy(48, 64)
    hole = np.zeros((48, 64), bool)
    assert np.array_equal(restore_detail(img, hole, img, img[::4, ::4], hole[::4, ::4]), img)
    hole[10:20, 10:20] = True
    same = restore_detail(img, hole, img, img, hole)  # not downscaled: nothing to restore
    assert np.array_equal(same, img)


@pytest.fixture(scope="module")
def inp() -> Inpainter:
    return Inpainter.from_modules(*tiny_generators(5), TINY_CONFIG)


def test_too_large_hole_goes_reduced_plus_detail_and_is_finer_than_upsampling(inp, monkeypatch):
    truth = grainy(400, 520, seed=2)
    hole = np.zeros((400, 520), bool)
    cv2.circle(hole.view(np.uint8), (260, 200), 90, 1, -1)
    rgb = truth.copy()
    rgb[hole] = 255
    plan = plan_windows(hole, "crop", 32, 128)
    assert len(plan) == 1 and max(plan[0][1]) == 128  # too large: run at reduced size
    calls = []

    def spy(*args, **kwargs):
        calls.append(1)
        return restore_detail(*args, **kwargs)

    monkeypatch.setattr(pipeline_mod, "restore_detail", spy)
    detailed, _ = inp.inpaint_arrays(rgb, hole, hd_margin=32, working_size=128)
    assert calls
    monkeypatch.setattr(pipeline_mod, "restore_detail", lambda photo, hole, up, *a, **k: up)
    plain, _ = inp.inpaint_arrays(rgb, hole, hd_margin=32, working_size=128)
    for out in (detailed, plain):
        assert np.array_equal(out[~hole], rgb[~hole])
    # (the tiny random generators add noise of their own to both)
    assert fine_energy(detailed, hole) > 1.3 * fine_energy(plain, hole)
