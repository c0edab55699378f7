"""Image I/O: every photo mode becomes RGB uint8, arrays are validated, writes are atomic."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgefill.errors import EdgefillError
from edgefill.image import (
    DEFAULT_MAX_PIXELS,
    ImageMeta,
    encode_image,
    encode_png,
    load_rgb,
    open_image,
    save_image,
    shrink_short_side,
    to_tensor,
    to_uint8,
)


def test_shrink_short_side_only_ever_shrinks() -> None:
    img = np.zeros((300, 500, 3), np.uint8)
    assert shrink_short_side(img, 100).shape == (100, 167, 3)
    assert shrink_short_side(img[..., 0], 150).shape == (150, 250)
    assert shrink_short_side(img, 300) is img and shrink_short_side(img, 400) is img


# ----------------------------------------------------------------------------- photo modes


def test_rgb_png_round_trip_is_exact(tmp_path: Path, photo: np.ndarray) -> None:
    save_image(tmp_path / "p.png", photo)
    rgb, alpha = load_rgb(tmp_path / "p.png")
    assert alpha is None
    np.testing.assert_array_equal(rgb, photo)
    assert rgb.dtype == np.uint8 and rgb.flags.c_contiguous


def test_grayscale_becomes_three_equal_channels(tmp_path: Path) -> None:
    gray = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    Image.fromarray(gray).save(tmp_path / "g.png")
    rgb, alpha = load_rgb(tmp_path / "g.png")
    assert rgb.shape == (6, 8, 3) and alpha is None
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], gray)


def test_palette_and_palette_transparency(tmp_path: Path) -> None:
    img = Image.new("P", (6, 4), 1)
    img.putpalette([0, 0, 0, 250, 20, 30] + [0] * 762)
    img.save(tmp_path / "p.png")
    rgb, alpha = load_rgb(tmp_path / "p.png")
    assert alpha is None and (rgb == [250, 20, 30]).all()
    img.putpixel((0, 0), 0)
    img.save(tmp_path / "pt.png", transparency=0)
    rgb, alpha = load_rgb(tmp_path / "pt.png")
    assert alpha is not None and alpha[0, 0] == 0 and (alpha.flatten()[1:] == 255).all()


def test_cmyk_jpeg(tmp_path: Path) -> None:
    Image.new("CMYK", (10, 8), (0, 255, 255, 0)).save(tmp_path / "c.jpg")  # pure red in CMYK
    assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
    rgb, alpha = load_rgb(tmp_path / "c.jpg")
    assert rgb.shape == (8, 10, 3) and alpha is None
    r, g, b = rgb.reshape(-1, 3).mean(0)
    assert r > 200 and g < 60 and b < 60


def test_16bit_png_uses_the_full_range(tmp_path: Path) -> None:
    arr = np.array([[0, 257, 32896, 65535]], np.uint16)
    Image.fromarray(arr).save(tmp_path / "w.png")
    assert Image.open(tmp_path / "w.png").mode.startswith("I")
    rgb, _ = load_rgb(tmp_path / "w.png")
    assert rgb[0, :, 0].tolist() == [0, 1, 128, 255]
    # Data that uses fewer bits (12-bit camera data: up to 4095) is seen as an 8-bit copy of
    # it would be, not as the few dark levels of 0-65535 it occupies.
    Image.fromarray(np.array([[0, 16, 2048, 4095]], np.uint16)).save(tmp_path / "12bit.png")
    rgb, _ = load_rgb(tmp_path / "12bit.png")
    assert rgb[0, :, 0].tolist() == [0, 1, 128, 255]


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_returned(tmp_path: Path, mode: str) -> None:
    rgba = np.zeros((5, 7, 4), np.uint8)
    rgba[..., :3] = 90
    rgba[..., 3] = 255
    rgba[1:3, 2:4, 3] = 0
    Image.fromarray(rgba).convert(mode).save(tmp_path / "a.png")
    rgb, alpha = load_rgb(tmp_path / "a.png")
    assert rgb.shape == (5, 7, 3) and (rgb == 90).all()
    np.testing.assert_array_equal(alpha, rgba[..., 3])


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    arr = np.zeros((10, 20, 3), np.uint8)
    arr[:, :10] = (255, 0, 0)  # left half red, right half blue as stored
    arr[:, 10:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(arr).save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    rgb, _ = load_rgb(tmp_path / "r.jpg")
    assert rgb.shape == (20, 10, 3)  # as displayed: portrait
    assert rgb[:8, :, 0].mean() > 200 and rgb[:8, :, 2].mean() < 60  # red on top now
    assert rgb[12:, :, 2].mean() > 200 and rgb[12:, :, 0].mean() < 60


# ----------------------------------------------------------------------------- arrays


@pytest.mark.parametrize(
    "arr,expected",
    [
        (np.array([[[0, 128, 255]]], np.uint8), [0, 128, 255]),
        (np.array([[[0.0, 0.5, 1.0]]], np.float32), [0, 128, 255]),
        (np.array([[[0.0, 0.5, 1.0]]], np.float64), [0, 128, 255]),
        (np.array([[[0.0, 0.5, 1.0]]], np.float16), [0, 128, 255]),
        (np.array([[[0, 32896, 65535]]], np.uint16), [0, 128, 255]),
        (np.array([[[0, 128, 255]]], np.int64), [0, 128, 255]),
        (np.array([[[False, True, True]]]), [0, 255, 255]),
    ],
)
def test_array_dtypes(arr: np.ndarray, expected: list[int]) -> None:
    rgb, alpha = load_rgb(arr)
    assert rgb.dtype == np.uint8 and alpha is None
    assert rgb[0, 0].tolist() == expected


def test_array_channels() -> None:
    gray = np.arange(6, dtype=np.uint8).reshape(2, 3)
    for arr in (gray, gray[..., None]):
        rgb, alpha = load_rgb(arr)
        assert rgb.shape == (2, 3, 3) and alpha is None
        assert (rgb[..., 2] == gray).all()
    rgba = np.dstack([np.zeros((2, 3, 3), np.uint8), gray])
    rgb, alpha = load_rgb(rgba)
    assert rgb.shape == (2, 3, 3)
    np.testing.assert_array_equal(alpha, gray)


@pytest.mark.parametrize(
    "arr,match",
    [
        (np.full((4, 4, 3), np.nan, np.float32), "NaN"),
        (np.full((4, 4, 3), np.inf), "NaN or infinite"),
        (np.full((4, 4, 3), 1.5), r"\[0, 1\]"),
        (np.full((4, 4, 3), -0.1), r"\[0, 1\]"),
        (np.full((4, 4, 3), 300, np.int32), "0, 255"),
        (np.zeros((4, 4, 3), complex), "dtype"),
        (np.zeros((4, 4, 5), np.uint8), "shape"),
        (np.zeros((2, 4, 4, 3), np.uint8), "shape"),
        (np.zeros((0, 4, 3), np.uint8), "no pixels"),
    ],
)
def test_bad_arrays(arr: np.ndarray, match: str) -> None:
    with pytest.raises(EdgefillError, match=match):
        load_rgb(arr)


def test_wrong_input_type() -> None:
    with pytest.raises(EdgefillError, match="expected a file path or PIL image"):
        open_image(12345)  # type: ignore[arg-type]


def test_pil_input_is_accepted(photo: np.ndarray) -> None:
    rgb, _ = load_rgb(Image.fromarray(photo))
    np.testing.assert_array_equal(rgb, photo)


def test_tensor_conversions(photo: np.ndarray) -> None:
    t = to_tensor(photo)
    assert t.shape == (1, 3, *photo.shape[:2]) and t.dtype == torch.float32
    assert 0 <= t.min() and t.max() <= 1
    np.testing.assert_array_equal(to_uint8(t), photo)
    gray = photo[..., 0]
    assert to_tensor(gray).shape == (1, 1, *gray.shape)
    np.testing.assert_array_equal(to_uint8(to_tensor(gray)), gray)
    np.testing.assert_array_equal(to_uint8(torch.full((1, 2, 2), 7.0)), np.full((2, 2), 255))


# ----------------------------------------------------------------------------- size limits


def test_pixel_limit_is_configurable(tmp_path: Path) -> None:
    assert 80_000_000 <= DEFAULT_MAX_PIXELS <= 200_000_000
    Image.new("RGB", (100, 60)).save(tmp_path / "p.png")
    with pytest.raises(EdgefillError, match="100x60.*limit"):
        load_rgb(tmp_path / "p.png", max_pixels=5000)
    with pytest.raises(EdgefillError, match="limit"):
        load_rgb(np.zeros((60, 100, 3), np.uint8), max_pixels=5000)
    assert load_rgb(tmp_path / "p.png", max_pixels=6000)[0].shape == (60, 100, 3)


def test_our_limit_replaces_pils(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Raising max_pixels must work beyond PIL's own guard, and without its warnings."""
    Image.new("RGB", (100, 60)).save(tmp_path / "p.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL would refuse 6000 px (> 2x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_rgb(tmp_path / "p.png", max_pixels=10_000)[0].shape == (60, 100, 3)
    assert Image.MAX_IMAGE_PIXELS == 1000  # PIL's setting is restored for everyone else


def test_files_are_closed_once_read_or_refused(tmp_path: Path) -> None:
    """A folder run reads thousands of files: none is left open for the garbage collector, a
    refused one (too many pixels, truncated) and a multi-frame one (GIF) included."""
    import gc

    rgb = np.random.default_rng(0).integers(0, 256, (60, 100, 3), np.uint8)
    Image.fromarray(rgb).save(tmp_path / "p.png")
    data = (tmp_path / "p.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    frames = [Image.fromarray(rgb), Image.fromarray(255 - rgb)]
    frames[0].save(tmp_path / "two.gif", save_all=True, append_images=frames[1:])
    cases = [("p.png", 100), ("cut.png", 10**6), ("two.gif", 10**6), ("p.png", 10**6)]
    gc.collect()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for name, limit in cases:
            try:
                load_rgb(tmp_path / name, max_pixels=limit)
            except EdgefillError:
                pass
        gc.collect()
    assert [str(w.message) for w in seen if w.category is ResourceWarning] == []


# ----------------------------------------------------------------------------- writing


def test_save_creates_missing_folders(tmp_path: Path, photo: np.ndarray) -> None:
    out = save_image(tmp_path / "a" / "b" / "c.png", photo)
    assert out.is_file()
    np.testing.assert_array_equal(load_rgb(out)[0], photo)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"])
def test_save_formats(tmp_path: Path, photo: np.ndarray, suffix: str) -> None:
    out = save_image(tmp_path / f"x{suffix}", photo)
    rgb, _ = load_rgb(out)
    assert rgb.shape == photo.shape
    assert np.abs(rgb.astype(int) - photo).mean() < 8


def test_save_rgba_as_jpeg_drops_alpha(tmp_path: Path, photo: np.ndarray) -> None:
    rgba = np.dstack([photo, np.full(photo.shape[:2], 255, np.uint8)])
    out = save_image(tmp_path / "x.jpg", rgba)
    assert Image.open(out).mode == "RGB"
    out = save_image(tmp_path / "x.png", rgba)
    assert Image.open(out).mode == "RGBA"


def test_save_unsupported_format(tmp_path: Path, photo: np.ndarray) -> None:
    with pytest.raises(EdgefillError, match="unsupported output format '.gif'"):
        save_image(tmp_path / "x.gif", photo)
    with pytest.raises(EdgefillError, match="unsupported output format"):
        save_image(tmp_path / "noext", photo)


def test_save_under_a_file_is_a_clear_error(tmp_path: Path, photo: np.ndarray) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(EdgefillError, match="cannot write"):
        save_image(tmp_path / "file" / "x.png", photo)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_save_into_read_only_folder(tmp_path: Path, photo: np.ndarray) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(EdgefillError, match="cannot write"):
            save_image(ro / "x.png", photo)
    finally:
        ro.chmod(0o755)


def test_saved_files_get_normal_permissions(tmp_path: Path, photo: np.ndarray) -> None:
    old = os.umask(0o022)
    try:
        out = save_image(tmp_path / "x.png", photo)
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600


def test_save_is_atomic(tmp_path: Path, photo: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that dies halfway leaves the previous file intact and no temp file behind."""
    target = tmp_path / "out.png"
    save_image(target, photo)
    before = target.read_bytes()

    real_save = Image.Image.save

    def dying_save(self, fp, *args, **kwargs):  # noqa: ANN001, ANN202
        fp.write(b"\x89PNG partial garbage")
        raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of encoding

    monkeypatch.setattr(Image.Image, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_image(target, 255 - photo)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]

    def failing_save(self, fp, *args, **kwargs):  # noqa: ANN001, ANN202
        fp.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(EdgefillError, match="No space left"):
        save_image(target, 255 - photo)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]

    monkeypatch.setattr(Image.Image, "save", real_save)
    save_image(target, 255 - photo)
    np.testing.assert_array_equal(load_rgb(target)[0], 255 - photo)


def zlib_level_class(png: bytes) -> int:
    """FLEVEL of the first IDAT's zlib header: 0 for zlib levels 0-1, 1 for 2-5, 2 for 6, 3 above."""
    i = png.index(b"IDAT") + 4
    return png[i + 1] >> 6


def test_pngs_are_written_with_a_fast_zlib_level(photo: np.ndarray, tmp_path: Path) -> None:
    """Files at level 3 (Pillow's default 6 took 2-4x as long on 12 MP photos, docs/performance.md),
    the web app's previews at 1."""
    deep = photo.astype(np.uint16) * 257
    for data in (
        encode_image(photo, "PNG", ImageMeta(dpi=(300, 300))),
        encode_image(deep, "PNG"),
        save_image(tmp_path / "r.png", photo).read_bytes(),
    ):
        assert zlib_level_class(data) == 1  # zlib levels 2-5
    assert zlib_level_class(encode_png(photo)) == 0


def test_encode_png(photo: np.ndarray) -> None:
    import io

    data = encode_png(photo)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), photo)


def test_tags_pillow_cannot_parse_are_dropped_not_the_photo(tmp_path: Path, monkeypatch) -> None:
    import edgefill.image as image_mod

    def broken(img: Image.Image) -> bytes:
        raise SyntaxError("not a TIFF directory")  # what Pillow raises on a corrupt IFD

    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path / "p.tif")
    monkeypatch.setattr(image_mod, "_tiff_exif", broken)
    photo = image_mod.load_photo(tmp_path / "p.tif")
    assert photo.rgb.shape == (6, 8, 3) and photo.meta.exif is None
