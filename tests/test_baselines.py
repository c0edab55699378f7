"""Classical baselines: every one keeps pixels outside the hole bit-identical and fills the hole
from its surroundings, without looking at what the hole contained."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import box_hole, photo_array

from edgefill import baselines
from edgefill.errors import EdgefillError


def _available(name: str) -> object:
    reason = baselines.unavailable_reason(name)
    return pytest.param(
        name, marks=pytest.mark.skipif(reason is not None, reason=f"{name}: {reason}")
    )


ALL = [_available(n) for n in baselines.BASELINES]


@pytest.mark.parametrize("name", ALL)
def test_baseline_keeps_outside_and_fills_inside(name):
    photo = photo_array(40, 52)
    hole = box_hole(40, 52)
    hole[5:8, 2:30] = True  # plus a thin stroke: two separate holes
    damaged = photo.copy()
    damaged[hole] = (255, 0, 255)
    out = baselines.inpaint(name, damaged, hole, seed=0)
    assert out.dtype == np.uint8 and out.shape == photo.shape
    assert np.array_equal(out[~hole], damaged[~hole])
    inside = out[hole].astype(int)
    # the fill comes from the surroundings: far closer to the photo than to the magenta paint
    assert np.abs(inside - photo[hole]).mean() < 0.5 * np.abs(inside - damaged[hole]).mean()


@pytest.mark.parametrize("name", ALL)
def test_baseline_never_looks_inside_the_hole(name):
    photo = photo_array(40, 52, seed=1)
    hole = box_hole(40, 52)
    other = photo.copy()
    other[hole] = 0
    a = baselines.inpaint(name, photo, hole, seed=0)
    b = baselines.inpaint(name, other, hole, seed=0)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("name", ALL)
def test_baseline_without_a_hole_returns_the_photo(name):
    photo = photo_array(24, 24)
    out = baselines.inpaint(name, photo, np.zeros((24, 24), bool))
    assert np.array_equal(out, photo) and out is not photo


def test_compose_takes_result_only_inside_the_hole():
    image = np.zeros((4, 4, 3), np.uint8)
    result = np.full((4, 4, 3), 200, np.uint8)
    hole = np.zeros((4, 4), bool)
    hole[1, 2] = True
    out = baselines.compose(result, image, hole)
    assert out[1, 2].tolist() == [200, 200, 200] and out.sum() == 600


def test_bad_inputs_are_clear_errors():
    photo = photo_array(16, 16)
    with pytest.raises(EdgefillError, match="unknown baseline"):
        baselines.inpaint("magic", photo, np.zeros((16, 16), bool))
    with pytest.raises(EdgefillError, match="mask is"):
        baselines.inpaint("telea", photo, np.zeros((8, 16), bool))
    with pytest.raises(EdgefillError, match="uint8"):
        baselines.inpaint("telea", photo.astype(np.float32), np.zeros((16, 16), bool))


def test_unavailable_reasons_say_what_to_install(monkeypatch):
    import cv2

    monkeypatch.delattr(cv2, "xphoto", raising=False)
    assert "opencv-contrib-python-headless" in baselines.unavailable_reason("fsr")
    with pytest.raises(EdgefillError, match="unavailable"):
        baselines.inpaint("fsr", photo_array(16, 16), box_hole(16, 16))
