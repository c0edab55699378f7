"""Masks: file rules (nonzero = hole, alpha, sizes, colour), generators, buckets, seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgefill.errors import EdgefillError
from edgefill.masks import (
    BUCKETS,
    MASK_KINDS,
    bucket_name,
    bucket_of,
    generate_mask,
    grow_hole,
    hole_ratio,
    irregular_mask,
    load_mask,
    mask_from_alpha,
    parse_bucket,
    prepare_inputs,
    write_mask_set,
)
from edgefill.pipeline import Inpainter

# ----------------------------------------------------------------------------- reading


def test_nonzero_is_hole(tmp_path: Path) -> None:
    arr = np.array([[0, 1, 2, 127], [128, 200, 254, 255]], np.uint8)
    Image.fromarray(arr).save(tmp_path / "m.png")
    mask = load_mask(tmp_path / "m.png")
    assert mask.dtype == bool
    assert mask.tolist() == [[False, True, True, True], [True, True, True, True]]


def test_threshold_for_soft_masks(tmp_path: Path) -> None:
    arr = np.array([[0, 1, 127, 128, 255]], np.uint8)
    Image.fromarray(arr).save(tmp_path / "m.png")
    assert load_mask(tmp_path / "m.png", threshold=128).tolist() == [
        [False, False, False, True, True]
    ]
    # Float arrays in [0, 1] use the same 0-255 threshold scale.
    soft = np.array([[0.0, 0.003, 0.3, 0.5, 0.51, 1.0]])
    assert load_mask(soft).tolist() == [[False, False, True, True, True, True]]
    assert load_mask(soft, threshold=128).tolist() == [[False, False, False, False, True, True]]


def test_jpeg_masks_leave_their_compression_noise_out_of_the_hole(tmp_path: Path) -> None:
    import cv2

    arr = np.zeros((120, 160), np.uint8)
    cv2.line(arr, (10, 10), (150, 100), 255, 4)
    cv2.circle(arr, (70, 80), 15, 255, -1)
    Image.fromarray(arr).save(tmp_path / "m.jpg", quality=90)
    drawn = arr > 0
    data = (tmp_path / "m.jpg").read_bytes()
    for src in (tmp_path / "m.jpg", data, Image.open(tmp_path / "m.jpg")):
        np.testing.assert_array_equal(load_mask(src), drawn)  # as if threshold 128
    assert load_mask(tmp_path / "m.jpg", threshold=250).sum() < drawn.sum()  # higher ones hold
    assert load_mask(np.asarray(Image.open(tmp_path / "m.jpg"))).sum() > drawn.sum()  # arrays: 1


@pytest.mark.parametrize("kind", ["jpg", "tif", "16-bit tif"])
@pytest.mark.parametrize("orientation", [5, 6, 7, 8])
def test_a_mask_made_on_a_turned_photos_stored_pixels_is_turned_too(
    tmp_path: Path, orientation: int, kind: str
) -> None:
    """A camera photo stored 80x60 and shown 60x80 (EXIF orientation), with a mask made on
    its stored pixels (a script that ignores EXIF): the mask is turned as the photo is. A TIFF
    too, which Pillow turns while loading it (and a 16-bit one keeps its samples, turned)."""
    import tifffile
    from PIL import ImageOps

    exif = Image.Exif()
    exif[0x0112] = orientation
    rgb = np.random.default_rng(0).integers(0, 256, (60, 80, 3), np.uint8)
    photo_file = tmp_path / ("photo.jpg" if kind == "jpg" else "photo.tif")
    if kind == "16-bit tif":
        deep = rgb.astype(np.uint16) * 257 + 3
        tifffile.imwrite(
            photo_file, deep, photometric="rgb", extratags=[(274, "H", 1, orientation)]
        )
    else:
        Image.fromarray(rgb).save(photo_file, exif=exif)
    stored = np.zeros((60, 80), np.uint8)
    stored[5:20, 10:60] = 255  # off-centre: each orientation puts it elsewhere
    Image.fromarray(stored).save(tmp_path / "mask.png")
    Image.fromarray(stored).save(tmp_path / "turned.png", exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "turned.png"))) > 0
    photo, hole, _ = prepare_inputs(photo_file, tmp_path / "mask.png")
    assert photo.rgb.shape[:2] == hole.shape == (80, 60)
    np.testing.assert_array_equal(hole, expected)
    if kind == "16-bit tif":  # the samples are the photo's, turned as the mask is
        index = Image.fromarray(np.arange(60 * 80, dtype=np.uint16).reshape(60, 80))
        index.info["exif"] = exif.tobytes()
        moved = np.asarray(ImageOps.exif_transpose(index)).astype(int)
        np.testing.assert_array_equal(photo.deep, deep.reshape(-1, 3)[moved])
    # A mask made for the upright photo is taken as it is; without an orientation a mask of
    # the other shape is still the wrong size.
    Image.fromarray(expected.astype(np.uint8) * 255).save(tmp_path / "upright.png")
    hole = prepare_inputs(photo_file, tmp_path / "upright.png")[1]
    np.testing.assert_array_equal(hole, expected)
    Image.fromarray(rgb).save(tmp_path / "plain.jpg")
    with pytest.raises(EdgefillError, match="mask is 60x80 but the photo is 80x60"):
        prepare_inputs(tmp_path / "plain.jpg", tmp_path / "upright.png")


@pytest.mark.parametrize("mode", ["1", "L", "P", "LA", "I;16"])
def test_mask_file_modes(tmp_path: Path, mode: str) -> None:
    arr = np.zeros((6, 8), np.uint8)
    arr[2:4, 3:6] = 255
    img = Image.fromarray(arr)
    if mode == "I;16":
        img = Image.fromarray(arr.astype(np.uint16) * 257)
        assert img.mode == "I;16"
    else:
        img = img.convert(mode)
    img.save(tmp_path / "m.png")
    np.testing.assert_array_equal(load_mask(tmp_path / "m.png"), arr > 0)


def test_16bit_mask_threshold_uses_the_0_255_scale(tmp_path: Path) -> None:
    arr = np.array([[0, 100, 32000, 33000, 65535]], np.uint16)  # 33000/257 = 128.4
    Image.fromarray(arr).save(tmp_path / "m.png")
    assert load_mask(tmp_path / "m.png", threshold=128).tolist() == [
        [False, False, False, True, True]
    ]


def test_gray_rgb_mask_is_accepted_and_colour_refused(tmp_path: Path) -> None:
    gray = np.zeros((6, 8, 3), np.uint8)
    gray[1:3, 1:3] = 255
    Image.fromarray(gray).save(tmp_path / "gray.png")
    assert load_mask(tmp_path / "gray.png").sum() == 4
    colour = gray.copy()
    colour[4, 4] = (255, 0, 0)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    with pytest.raises(EdgefillError, match=r"colour.*colour\.png|colour\.png.*colour") as err:
        load_mask(tmp_path / "colour.png")
    assert "white on black" in str(err.value)  # the usual mistake: strokes on the photo itself


def test_wrong_size_names_both_sizes_and_resize_fixes_it(tmp_path: Path) -> None:
    arr = np.zeros((20, 30), np.uint8)
    arr[:, 15:] = 255
    Image.fromarray(arr).save(tmp_path / "m.png")
    with pytest.raises(EdgefillError) as err:
        load_mask(tmp_path / "m.png", size=(60, 41))
    msg = str(err.value)
    assert "30x20" in msg and "60x41" in msg and "m.png" in msg and "--resize-mask" in msg
    resized = load_mask(tmp_path / "m.png", size=(60, 41), resize=True)
    assert resized.shape == (41, 60)
    assert not resized[:, :29].any() and resized[:, 31:].all()  # nearest neighbour, no blur


def test_a_mask_resized_smaller_keeps_its_thin_strokes(tmp_path: Path) -> None:
    """A scratch mask drawn at twice the photo's size: nearest neighbour keeps one row in two,
    so 1 px lines on the rows it skips vanished from the hole."""
    arr = np.zeros((200, 300), np.uint8)
    for row in (101, 150):
        arr[row, 20:280] = 255
    for col in (51, 100):
        arr[10:190, col] = 255
    Image.fromarray(arr).save(tmp_path / "m.png")
    small = load_mask(tmp_path / "m.png", size=(150, 100), resize=True)
    for row in (101, 150):
        assert small[row // 2, 20:140].all()
    for col in (51, 100):
        assert small[5:95, col // 2].all()
    assert small.sum() <= 2 * (2 * 130 + 2 * 90)  # at most one extra pixel across each line
    # One axis shrinking, the other growing: the growing one stays nearest neighbour.
    assert load_mask(tmp_path / "m.png", size=(150, 400), resize=True)[202:204].any()


def test_array_masks() -> None:
    b = np.zeros((3, 4), bool)
    b[1, 1] = True
    out = load_mask(b)
    assert out is not b and np.array_equal(out, b)
    np.testing.assert_array_equal(load_mask(b.astype(np.uint8)[..., None]), b)
    with pytest.raises(EdgefillError, match="NaN"):
        load_mask(np.full((3, 4), np.nan))
    with pytest.raises(EdgefillError, match="2-D"):
        load_mask(np.zeros((2, 3, 4, 5)))
    with pytest.raises(EdgefillError, match="dtype"):
        load_mask(np.zeros((3, 4), complex))


def test_alpha_of_rgba_photo_is_the_mask(tmp_path: Path, inpainter: Inpainter) -> None:
    rgba = np.full((10, 12, 4), 200, np.uint8)
    rgba[..., 3] = 255
    rgba[2:5, 3:9, 3] = 0  # transparent: the hole
    rgba[6, 6, 3] = 127  # mostly transparent counts too
    rgba[7, 7, 3] = 128  # mostly opaque does not
    Image.fromarray(rgba).save(tmp_path / "p.png")
    expected = rgba[..., 3] < 128
    np.testing.assert_array_equal(mask_from_alpha(rgba[..., 3]), expected)
    rgb, hole, alpha = inpainter.prepare(tmp_path / "p.png")
    np.testing.assert_array_equal(hole, expected)
    assert alpha is None  # the transparency was used up as the mask: the result is opaque
    assert rgb.shape == (10, 12, 3)


def test_no_mask_and_no_alpha_is_an_error(tmp_path: Path, inpainter: Inpainter) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "p.png")
    with pytest.raises(EdgefillError, match="mask"):
        inpainter.prepare(tmp_path / "p.png")


# ----------------------------------------------------------------------------- buckets


def test_buckets() -> None:
    assert [bucket_name(*b) for b in BUCKETS] == [
        "0-10%",
        "10-20%",
        "20-30%",
        "30-40%",
        "40-50%",
        "50-60%",
    ]
    assert bucket_of(0.1) == "10-20%" and bucket_of(0.1999) == "10-20%"
    assert bucket_of(0.6) is None
    assert parse_bucket("10-20") == (0.1, 0.2) and parse_bucket("50-60%") == (0.5, 0.6)
    for bad in ("10", "a-b", "20-10", "50-150"):
        with pytest.raises(EdgefillError):
            parse_bucket(bad)


# ----------------------------------------------------------------------------- generators

RATIO_BUCKETS = [b for b in BUCKETS if b[0] >= 0.1]  # 10-20 % ... 50-60 %


@pytest.mark.parametrize("kind", ["irregular", "box"])
@pytest.mark.parametrize("bucket", RATIO_BUCKETS, ids=lambda b: bucket_name(*b))
@pytest.mark.parametrize("size", [(64, 64), (48, 80), (96, 40)])
def test_generated_masks_land_in_their_bucket(kind: str, bucket: tuple, size: tuple) -> None:
    h, w = size
    for seed in range(8):
        mask = generate_mask(kind, h, w, np.random.default_rng(seed), bucket)
        assert mask.shape == (h, w) and mask.dtype == bool
        r = hole_ratio(mask)
        assert bucket[0] <= r < bucket[1], f"{kind} seed {seed}: ratio {r:.3f} outside {bucket}"


def test_irregular_masks_are_strokes_not_noise() -> None:
    from scipy import ndimage

    mask = irregular_mask(128, 128, np.random.default_rng(0), (0.2, 0.3))
    _, n = ndimage.label(mask)
    assert n <= 40  # a few connected strokes, not scattered pixels
    assert ndimage.binary_opening(mask, np.ones((3, 3))).sum() > 0.5 * mask.sum()


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_generators_are_reproducible_by_seed(kind: str) -> None:
    a = generate_mask(kind, 64, 72, np.random.default_rng(5))
    b = generate_mask(kind, 64, 72, np.random.default_rng(5))
    c = generate_mask(kind, 64, 72, np.random.default_rng(6))
    assert a.shape == (64, 72) and a.dtype == bool
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert 0 < hole_ratio(a) <= 0.6


def test_scratches_are_thin() -> None:
    for seed in range(5):
        mask = generate_mask("scratch", 128, 128, np.random.default_rng(seed))
        assert 0 < hole_ratio(mask) < 0.2


def test_generator_errors() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(EdgefillError, match="unknown mask kind"):
        generate_mask("blob", 8, 8, rng)
    with pytest.raises(EdgefillError, match="positive"):
        generate_mask("box", 0, 8, rng)
    with pytest.raises(EdgefillError, match="irregular and box"):
        generate_mask("scratch", 32, 32, rng, (0.1, 0.2))  # a bucket it cannot honour
    with pytest.raises(EdgefillError):
        irregular_mask(32, 32, rng, (0.5, 0.2))


def test_write_mask_set_is_reproducible(tmp_path: Path) -> None:
    a = write_mask_set(tmp_path / "a", "irregular", 4, (40, 32), seed=3, ratio_range=(0.2, 0.3))
    b = write_mask_set(tmp_path / "b", "irregular", 4, (40, 32), seed=3, ratio_range=(0.2, 0.3))
    c = write_mask_set(tmp_path / "c", "irregular", 4, (40, 32), seed=4, ratio_range=(0.2, 0.3))
    assert [p.name for p in a] == [p.name for p in b] == [p.name for p in c]
    assert len({p.name for p in a}) == 4
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    assert [p.read_bytes() for p in a] != [p.read_bytes() for p in c]
    for p in a:
        img = Image.open(p)
        assert img.size == (40, 32) and img.mode == "L"
        arr = np.asarray(img)
        assert set(np.unique(arr)) <= {0, 255}
        assert 0.2 <= hole_ratio(load_mask(p)) < 0.3


# ----------------------------------------------------------------------------- photo + mask


def test_load_photo_and_mask_is_the_one_input_path(tmp_path: Path) -> None:
    from edgefill.masks import load_photo_and_mask

    rgba = np.zeros((6, 8, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[2:4, 3:6, 3] = 0
    rgb, hole, alpha = load_photo_and_mask(rgba)  # no mask: the transparency is the hole
    assert hole.sum() == 6 and hole[2:4, 3:6].all() and alpha is None
    mask = np.zeros((6, 8), np.uint8)
    mask[0, 0] = 200
    rgb, hole, alpha = load_photo_and_mask(rgba, mask, mask_threshold=128)
    assert hole.sum() == 1 and alpha is not None and (alpha == rgba[..., 3]).all()
    assert rgb.shape == (6, 8, 3) and rgb.dtype == np.uint8
    with pytest.raises(EdgefillError, match="no mask given"):
        load_photo_and_mask(rgba[..., :3])
    with pytest.raises(EdgefillError, match="mask is 4x3 but the photo is 8x6"):
        load_photo_and_mask(rgba, np.zeros((3, 4), np.uint8))
    _, hole, _ = load_photo_and_mask(rgba, mask[:3, :4], resize_mask=True)
    assert hole.shape == (6, 8)


def test_grow_hole_widens_by_a_disc_and_refuses_what_is_not_a_pixel_count() -> None:
    hole = np.zeros((21, 21), bool)
    hole[10, 10] = True
    grown = grow_hole(hole, 3)
    assert grown[10, 13] and grown[7, 10] and grown[12, 12]  # 3 px along the axes, 2.8 diagonally
    assert not grown[13, 13] and not grown[10, 14]  # a disc: corners rounded, no more than 3 px
    assert grow_hole(hole, 0) is hole
    for bad in (-1, 2.5, True, "3"):
        with pytest.raises(EdgefillError, match="whole number of pixels >= 0"):
            grow_hole(hole, bad)
