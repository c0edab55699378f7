"""Property-based tests (hypothesis): any size, dtype and mask the API accepts behaves the same way.

The model is tiny and random; the properties are about the pipeline's contract, not quality:
the output has the input's size, pixels outside the hole are the input's own, an empty mask
changes nothing, and anything refused is refused with an EdgefillError (never a crash).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY_CONFIG, tiny_generators
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from edgefill.errors import EdgefillError
from edgefill.image import load_rgb
from edgefill.masks import BUCKETS, generate_mask, hole_ratio, load_mask
from edgefill.pipeline import Inpainter, pad_to_stride

SETTINGS = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

_INPAINTER: Inpainter | None = None


def inpainter() -> Inpainter:
    # Module-level (not a fixture): hypothesis re-runs the test body, fixtures run once anyway.
    global _INPAINTER
    if _INPAINTER is None:
        _INPAINTER = Inpainter.from_modules(*tiny_generators(0), TINY_CONFIG)
    return _INPAINTER


PHOTO_DTYPES = ["uint8", "uint16", "int32", "float32", "float64", "bool"]
MASK_DTYPES = ["bool", "uint8", "float32", "int64"]


@st.composite
def photos(draw: st.DrawFn) -> np.ndarray:
    h = draw(st.integers(1, 40))
    w = draw(st.integers(1, 40))
    channels = draw(st.sampled_from([None, 1, 3, 4]))
    dtype = draw(st.sampled_from(PHOTO_DTYPES))
    shape = (h, w) if channels is None else (h, w, channels)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if dtype == "bool":
        return rng.random(shape) > 0.5
    if dtype.startswith("float"):
        return rng.random(shape).astype(dtype)
    top = {"uint8": 256, "uint16": 65536, "int32": 256}[dtype]
    return rng.integers(0, top, shape).astype(dtype)


@st.composite
def masks_for(draw: st.DrawFn, h: int, w: int) -> np.ndarray:
    kind = draw(st.sampled_from(["empty", "full", "random", "box"]))
    dtype = draw(st.sampled_from(MASK_DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "empty":
        hole = np.zeros((h, w), bool)
    elif kind == "full":
        hole = np.ones((h, w), bool)
    elif kind == "random":
        hole = rng.random((h, w)) < draw(st.floats(0.0, 1.0))
    else:
        hole = np.zeros((h, w), bool)
        t, lft = int(rng.integers(0, h)), int(rng.integers(0, w))
        hole[t : t + int(rng.integers(1, h + 1)), lft : lft + int(rng.integers(1, w + 1))] = True
    if dtype == "bool":
        return hole
    if dtype == "float32":
        return hole.astype(np.float32)  # 0.0 / 1.0
    return hole.astype(dtype) * 255


@SETTINGS
@given(data=st.data())
def test_pipeline_contract_holds_for_any_input(data: st.DataObject) -> None:
    photo = data.draw(photos(), label="photo")
    h, w = photo.shape[:2]
    mask = data.draw(masks_for(h, w), label="mask")
    rgb, alpha = load_rgb(photo)  # what the pipeline sees: the reference for "unchanged"
    hole = load_mask(mask)
    res = inpainter()(photo, mask)
    assert res.image.shape == (h, w, 3) and res.image.dtype == np.uint8
    assert res.edges.shape == (h, w) and np.isfinite(res.edges).all()
    assert 0 <= res.edges.min() and res.edges.max() <= 1
    np.testing.assert_array_equal(res.mask, hole)
    np.testing.assert_array_equal(res.image[~hole], rgb[~hole])
    if not hole.any():
        np.testing.assert_array_equal(res.image, rgb)
    if alpha is not None:
        np.testing.assert_array_equal(res.alpha, alpha)


@SETTINGS
@given(
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    value=st.sampled_from([np.nan, np.inf, -np.inf, -0.5, 1.5, 2.0]),
    where=st.sampled_from(["photo", "mask"]),
)
def test_bad_values_are_refused_cleanly(h: int, w: int, value: float, where: str) -> None:
    photo = np.full((h, w, 3), 0.5, np.float32)
    mask = np.ones((h, w), np.float32)
    if where == "photo":
        photo[h // 2, w // 2, 0] = value
    else:
        assume(not np.isfinite(value))  # finite out-of-range mask values are just "hole"
        mask[h // 2, w // 2] = value
    with pytest.raises(EdgefillError):
        inpainter()(photo, mask)


@SETTINGS
@given(
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    mh=st.integers(1, 40),
    mw=st.integers(1, 40),
)
def test_mask_size_mismatch_is_an_error_or_resized(h: int, w: int, mh: int, mw: int) -> None:
    assume((h, w) != (mh, mw))
    photo = np.zeros((h, w, 3), np.uint8)
    mask = np.ones((mh, mw), np.uint8)
    with pytest.raises(EdgefillError) as err:
        inpainter()(photo, mask)
    assert f"{mw}x{mh}" in str(err.value) and f"{w}x{h}" in str(err.value)
    res = inpainter()(photo, mask, resize_mask=True)
    assert res.mask.shape == (h, w) and res.mask.all()


@SETTINGS
@given(h=st.integers(1, 70), w=st.integers(1, 70), c=st.integers(1, 5))
def test_pad_to_stride_round_trip(h: int, w: int, c: int) -> None:
    t = torch.arange(c * h * w, dtype=torch.float32).reshape(1, c, h, w)
    padded, (oh, ow) = pad_to_stride(t)
    assert padded.shape[2] % 4 == 0 and padded.shape[3] % 4 == 0
    assert padded.shape[2] >= max(h, 16) and padded.shape[3] >= max(w, 16)
    assert (oh, ow) == (h, w) and torch.equal(padded[..., :h, :w], t)


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(["irregular", "box"]),
    bucket=st.sampled_from([b for b in BUCKETS if b[0] >= 0.1]),
    h=st.integers(32, 96),
    w=st.integers(32, 96),
    seed=st.integers(0, 2**32 - 1),
)
def test_generated_masks_always_land_in_their_bucket(
    kind: str, bucket: tuple[float, float], h: int, w: int, seed: int
) -> None:
    mask = generate_mask(kind, h, w, np.random.default_rng(seed), bucket)
    assert mask.shape == (h, w)
    assert bucket[0] <= hole_ratio(mask) < bucket[1]
