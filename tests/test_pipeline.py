"""Inference pipeline with a tiny random model: what comes back, never how good it looks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_CONFIG, box_hole, photo_array, tiny_generators
from PIL import Image

import edgefill.checkpoint as checkpoint_mod
from edgefill.checkpoint import save_release
from edgefill.config import ModelConfig
from edgefill.edges import canny_edges, to_gray
from edgefill.errors import EdgefillError
from edgefill.pipeline import Inpainter, InpaintResult, load_guide, pad_to_stride


@pytest.mark.parametrize("h,w", [(40, 52), (13, 21), (3, 5), (2, 2), (17, 64), (64, 17)])
def test_outside_pixels_are_bit_identical(inpainter: Inpainter, h: int, w: int) -> None:
    rgb = photo_array(h, w, seed=h * w)
    hole = np.zeros((h, w), bool)
    hole[h // 3 : max(h // 3 + 1, 2 * h // 3), w // 3 : max(w // 3 + 1, 2 * w // 3)] = True
    res = inpainter(rgb, hole)
    assert isinstance(res, InpaintResult)
    assert res.image.shape == (h, w, 3) and res.image.dtype == np.uint8
    np.testing.assert_array_equal(res.image[~hole], rgb[~hole])
    np.testing.assert_array_equal(res.mask, hole)
    assert res.edges.shape == (h, w) and res.edges.dtype == np.float32
    assert res.edges.min() >= 0 and res.edges.max() <= 1


def test_the_hole_is_actually_filled(inpainter: Inpainter, photo: np.ndarray) -> None:
    hole = box_hole(*photo.shape[:2])
    res = inpainter(photo, hole)
    assert not np.array_equal(res.image[hole], photo[hole])
    # What was in the hole must not matter: only the known pixels are seen.
    other = photo.copy()
    other[hole] = 255 - other[hole]
    np.testing.assert_array_equal(inpainter(other, hole).image, res.image)


def test_empty_mask_returns_the_input_without_running_the_model(
    inpainter: Inpainter, photo: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the model ran on an empty mask")

    monkeypatch.setattr(inpainter, "predict_edges", boom)
    monkeypatch.setattr(inpainter, "complete", boom)
    res = inpainter(photo, np.zeros(photo.shape[:2], np.uint8))
    np.testing.assert_array_equal(res.image, photo)
    assert res.image is not photo  # a copy: the caller's array is never aliased
    assert not res.mask.any()
    np.testing.assert_array_equal(res.edges, canny_edges(to_gray(photo), None, 2.0))


def test_full_mask_generates_the_whole_image(inpainter: Inpainter, photo: np.ndarray) -> None:
    hole = np.ones(photo.shape[:2], bool)
    res = inpainter(photo, hole)
    assert res.image.shape == photo.shape
    assert not np.array_equal(res.image, photo)
    assert res.image.std() > 0 or res.image.mean() > 0


def test_user_edges_change_the_result(inpainter: Inpainter, photo: np.ndarray) -> None:
    h, w = photo.shape[:2]
    hole = box_hole(h, w)
    blank = np.zeros((h, w), np.float32)
    lines = blank.copy()
    lines[h // 2, :] = 1.0
    lines[:, w // 2] = 1.0
    a = inpainter(photo, hole, edges=blank)
    b = inpainter(photo, hole, edges=lines)
    assert not np.array_equal(a.image[hole], b.image[hole])
    np.testing.assert_array_equal(a.image[~hole], b.image[~hole])
    # The guide replaces the prediction inside the hole; outside it the known edges stay.
    np.testing.assert_array_equal(b.edges[hole], lines[hole])
    known = canny_edges(to_gray(photo), hole, TINY_CONFIG.canny_sigma)
    np.testing.assert_array_equal(b.edges[~hole], known[~hole])
    np.testing.assert_array_equal(a.edges[~hole], known[~hole])


def test_user_edges_from_a_file(inpainter: Inpainter, photo: np.ndarray, tmp_path: Path) -> None:
    h, w = photo.shape[:2]
    hole = box_hole(h, w)
    drawn = np.zeros((h, w), np.uint8)
    drawn[h // 2, :] = 255
    Image.fromarray(drawn).save(tmp_path / "e.png")
    res = inpainter(photo, hole, edges=tmp_path / "e.png")
    np.testing.assert_allclose(res.edges[hole], drawn[hole] / 255, rtol=0, atol=1e-6)
    # save_edges writes the same convention (white lines on black) that edges= reads back.
    res.save_edges(tmp_path / "back.png")
    again = inpainter(photo, hole, edges=tmp_path / "back.png")
    np.testing.assert_array_equal(again.image, res.image)


def test_an_edge_map_made_on_a_turned_photos_stored_pixels_is_turned_too(
    inpainter: Inpainter, photo: np.ndarray, tmp_path: Path
) -> None:
    """As its mask is (masks.load_mask): a photo stored 52x40, shown 40x52 (orientation 6)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(photo).save(tmp_path / "p.png", exif=exif)
    stored_hole, stored_lines = box_hole(*photo.shape[:2]), np.zeros(photo.shape[:2], np.uint8)
    stored_lines[photo.shape[0] // 3, :] = 255  # off-centre: a turn moves it
    Image.fromarray(stored_hole.astype(np.uint8) * 255).save(tmp_path / "m.png")
    Image.fromarray(stored_lines).save(tmp_path / "e.png")
    res = inpainter(tmp_path / "p.png", tmp_path / "m.png", edges=tmp_path / "e.png")
    hole, lines = np.rot90(stored_hole, -1), np.rot90(stored_lines, -1) / 255  # orientation 6
    np.testing.assert_array_equal(res.mask, hole)
    np.testing.assert_allclose(res.edges[hole], lines[hole], rtol=0, atol=1e-6)


def test_guide_errors(inpainter: Inpainter, photo: np.ndarray) -> None:
    hole = box_hole(*photo.shape[:2])
    with pytest.raises(EdgefillError, match="edge map is 10x8 but the photo is 52x40"):
        inpainter(photo, hole, edges=np.zeros((8, 10), np.float32))
    with pytest.raises(EdgefillError, match="finite"):
        load_guide(np.full((40, 52), np.nan, np.float32), 52, 40)
    with pytest.raises(EdgefillError, match=r"\[0, 1\]"):
        load_guide(np.full((40, 52), 2.0, np.float32), 52, 40)


def test_inputs_as_paths_pil_and_arrays_agree(
    inpainter: Inpainter, photo_files: tuple[Path, Path]
) -> None:
    photo_path, mask_path = photo_files
    rgb = np.asarray(Image.open(photo_path))
    mask = np.asarray(Image.open(mask_path))
    by_path = inpainter(photo_path, mask_path).image
    by_str = inpainter(str(photo_path), str(mask_path)).image
    by_pil = inpainter(Image.open(photo_path), Image.open(mask_path)).image
    by_array = inpainter(rgb, mask).image
    by_float = inpainter(rgb.astype(np.float32) / 255, mask > 0).image
    for other in (by_str, by_pil, by_array, by_float):
        np.testing.assert_array_equal(other, by_path)


def test_results_are_deterministic(inpainter: Inpainter, photo: np.ndarray) -> None:
    hole = box_hole(*photo.shape[:2])
    a, b = inpainter(photo, hole), inpainter(photo, hole)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.edges, b.edges)


def test_rgba_photo_with_a_mask_keeps_its_alpha(inpainter: Inpainter, tmp_path: Path) -> None:
    rgb = photo_array(24, 28)
    alpha = np.full((24, 28), 255, np.uint8)
    alpha[:4] = 0  # a transparent band that is NOT the hole, because a mask is given
    Image.fromarray(np.dstack([rgb, alpha])).save(tmp_path / "p.png")
    hole = box_hole(24, 28)
    res = inpainter(tmp_path / "p.png", hole)
    np.testing.assert_array_equal(res.mask, hole)
    np.testing.assert_array_equal(res.alpha, alpha)
    out = Image.open(res.save(tmp_path / "out.png"))
    assert out.mode == "RGBA"
    arr = np.asarray(out)
    np.testing.assert_array_equal(arr[..., 3], alpha)
    np.testing.assert_array_equal(arr[..., :3][~hole], rgb[~hole])
    assert Image.open(res.save(tmp_path / "out.jpg")).mode == "RGB"


def test_rgba_photo_without_a_mask_fills_its_transparency(
    inpainter: Inpainter, tmp_path: Path
) -> None:
    rgb = photo_array(24, 28)
    alpha = np.full((24, 28), 255, np.uint8)
    alpha[8:16, 10:20] = 0
    Image.fromarray(np.dstack([rgb, alpha])).save(tmp_path / "p.png")
    res = inpainter(tmp_path / "p.png")
    np.testing.assert_array_equal(res.mask, alpha == 0)
    assert res.alpha is None
    assert Image.open(res.save(tmp_path / "out.png")).mode == "RGB"
    np.testing.assert_array_equal(res.image[alpha > 0], rgb[alpha > 0])


def test_mask_options_pass_through(inpainter: Inpainter, photo: np.ndarray) -> None:
    soft = np.zeros(photo.shape[:2], np.uint8)
    soft[5:10, 5:10] = 100
    soft[20:30, 20:30] = 200
    assert inpainter(photo, soft).mask.sum() == 25 + 100
    assert inpainter(photo, soft, mask_threshold=128).mask.sum() == 100
    small = soft[::2, ::2]
    with pytest.raises(EdgefillError, match="26x20.*52x40"):
        inpainter(photo, small)
    assert inpainter(photo, small, resize_mask=True).mask.shape == photo.shape[:2]
    with pytest.raises(EdgefillError, match="limit"):
        inpainter(photo, soft, max_pixels=1000)


def test_edge_threshold_binarises_predicted_edges(photo: np.ndarray) -> None:
    g1, g2 = tiny_generators(0)
    cfg = ModelConfig(width=4, edge_blocks=1, inpaint_blocks=1, edge_threshold=0.5)
    inp = Inpainter.from_modules(g1, g2, cfg)
    _, pred = inp.predict_edges(photo, box_hole(*photo.shape[:2]))
    assert set(np.unique(pred)) <= {0.0, 1.0}
    soft = Inpainter.from_modules(*tiny_generators(0), TINY_CONFIG)
    _, pred = soft.predict_edges(photo, box_hole(*photo.shape[:2]))
    assert len(np.unique(pred)) > 2


@pytest.mark.parametrize("h,w", [(1, 1), (3, 5), (4, 4), (17, 30), (16, 16), (33, 18)])
def test_pad_to_stride(h: int, w: int) -> None:
    t = torch.rand(1, 2, h, w)
    padded, (oh, ow) = pad_to_stride(t)
    ph, pw = padded.shape[-2:]
    assert (oh, ow) == (h, w)
    assert ph % 4 == 0 and pw % 4 == 0 and ph >= 16 and pw >= 16
    assert ph - h < max(4, 16 - h + 1) and pw - w < max(4, 16 - w + 1)  # no more than needed
    assert torch.equal(padded[..., :h, :w], t)


# ----------------------------------------------------------------------------- loading weights


def test_from_pretrained_loads_a_release(tiny_release: Path, photo: np.ndarray) -> None:
    inp = Inpainter.from_pretrained(tiny_release)
    assert inp.config == TINY_CONFIG
    hole = box_hole(*photo.shape[:2])
    res = inp(photo, hole)
    np.testing.assert_array_equal(res.image[~hole], photo[~hole])
    # The generators are ready for inference: eval mode, no gradients, no spectral-norm hooks.
    assert not inp.g1.training and not inp.g2.training
    assert not any(p.requires_grad for p in inp.g1.parameters())
    assert not any(hasattr(m, "weight_orig") for m in inp.g1.modules())


def test_fp32_release_reproduces_the_in_memory_model(tmp_path: Path, photo: np.ndarray) -> None:
    g1, g2 = tiny_generators(5)
    rel = save_release(tmp_path / "rel", g1.state_dict(), g2.state_dict(), TINY_CONFIG, half=False)
    hole = box_hole(*photo.shape[:2])
    direct = Inpainter.from_modules(g1, g2, TINY_CONFIG)(photo, hole)
    loaded = Inpainter.from_pretrained(rel, precision="fp32")(photo, hole)
    np.testing.assert_array_equal(loaded.image, direct.image)
    np.testing.assert_allclose(loaded.edges, direct.edges, atol=1e-6)


def test_missing_default_weights_say_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoint_mod, "DEFAULT_WEIGHTS", tmp_path / "nowhere")
    for name in (None, "default"):
        with pytest.raises(EdgefillError) as err:
            Inpainter.from_pretrained(name)
        msg = str(err.value)
        assert "--weights" in msg and "train" in msg
    with pytest.raises(EdgefillError, match="weights not found"):
        Inpainter.from_pretrained(tmp_path / "missing")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error() -> None:
    g1, g2 = tiny_generators(0)
    with pytest.raises(EdgefillError, match="--device cpu"):
        Inpainter.from_modules(g1, g2, TINY_CONFIG, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_keeps_outside_pixels_and_agrees_with_cpu(photo: np.ndarray) -> None:
    hole = box_hole(*photo.shape[:2])
    cpu = Inpainter.from_modules(*tiny_generators(0), TINY_CONFIG)(photo, hole)
    gpu_inp = Inpainter.from_modules(*tiny_generators(0), TINY_CONFIG, "cuda", precision="fp32")
    for h, w in ((40, 52), (3, 5), (17, 64)):  # odd sizes go through the padding on the GPU too
        rgb, m = photo_array(h, w), box_hole(h, w)
        res = gpu_inp(rgb, m)
        np.testing.assert_array_equal(res.image[~m], rgb[~m])
    gpu = gpu_inp(photo, hole)
    np.testing.assert_array_equal(gpu.image[~hole], photo[~hole])
    assert np.abs(gpu.image.astype(int) - cpu.image.astype(int)).max() <= 3


def test_inpainter_is_importable_from_the_package() -> None:
    import edgefill
    from edgefill import Inpainter as Top
    from edgefill import InpaintResult as TopResult

    assert Top is Inpainter and TopResult is InpaintResult
    assert {"Inpainter", "InpaintResult"} <= set(dir(edgefill))
    with pytest.raises(AttributeError):
        edgefill.NoSuchThing  # noqa: B018
    # `import edgefill` stays light; torch loads only when Inpainter is used.
    probe = (
        "import sys, edgefill; assert 'torch' not in sys.modules, 'torch imported early'; "
        "from edgefill import Inpainter; assert 'torch' in sys.modules"
    )
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


# ----------------------------------------------------------------------------- flip average


def _mirror(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a[:, ::-1])


def _fills(inp: Inpainter, rgb: np.ndarray, hole: np.ndarray, drawn: bool) -> np.ndarray:
    edges = canny_edges(to_gray(rgb), None, inp.config.canny_sigma)
    return inp.complete(rgb, hole, edges, drawn).astype(np.float32)


@pytest.mark.parametrize("size", [(40, 52), (13, 21)])  # 13x21 is padded for the stride
def test_flip_average_is_the_mean_of_the_fill_and_the_mirrored_fill(size: tuple[int, int]) -> None:
    g1, g2 = tiny_generators(3)
    rgb, hole = photo_array(*size, seed=5), box_hole(*size)
    hole[:, : size[1] // 2] = False  # not mirror-symmetric
    plain = Inpainter.from_modules(g1, g2, TINY_CONFIG, flip_average="none")
    both = Inpainter.from_modules(g1, g2, TINY_CONFIG, flip_average="always")
    fill = _fills(plain, rgb, hole, False)
    mirrored = _mirror(_fills(plain, _mirror(rgb), _mirror(hole), False))
    got = _fills(both, rgb, hole, False)
    assert np.abs(got - (fill + mirrored) / 2).max() <= 1  # each fill was rounded to uint8
    assert np.abs(got - fill).max() > 2  # a random G2 is not mirror-symmetric


def test_flip_average_defaults_to_drawn_edges_only() -> None:
    g1, g2 = tiny_generators(3)
    rgb, hole = photo_array(seed=5), box_hole()
    default = Inpainter.from_modules(g1, g2, TINY_CONFIG)
    plain = Inpainter.from_modules(g1, g2, TINY_CONFIG, flip_average="none")
    both = Inpainter.from_modules(g1, g2, TINY_CONFIG, flip_average="always")
    drawn = _fills(default, rgb, hole, True)
    np.testing.assert_array_equal(drawn, _fills(both, rgb, hole, True))
    assert not np.array_equal(drawn, _fills(plain, rgb, hole, True))
    np.testing.assert_array_equal(
        _fills(default, rgb, hole, False), _fills(plain, rgb, hole, False)
    )


def test_an_unknown_flip_average_is_refused() -> None:
    g1, g2 = tiny_generators(0)
    with pytest.raises(EdgefillError, match="flip_average must be one of drawn, always, none"):
        Inpainter.from_modules(g1, g2, TINY_CONFIG, flip_average="yes")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_call_given_up_stops_inside_the_network_pass_running(precision: str) -> None:
    """One pass over a large window takes tens of seconds on a CPU: Cancel must not wait for
    it. A stop set while G1 runs ends the call at G1's next convolution; another thread's
    pass through the same networks is not stopped by it."""
    import threading

    from edgefill.backends import stoppable
    from edgefill.errors import Stopped

    g1, g2 = tiny_generators(0)
    inp = Inpainter.from_modules(g1, g2, TINY_CONFIG, precision=precision)
    convs = [m for m in inp.engine.nets["edge"].modules() if isinstance(m, torch.nn.Conv2d)]
    ran: list[int] = []
    stop = threading.Event()

    def count(module: torch.nn.Module, args: object, out: torch.Tensor) -> None:
        ran.append(convs.index(module))
        if module is convs[1]:
            stop.set()  # the client leaves while G1's second convolution runs

    handles = [c.register_forward_hook(count) for c in convs]
    rgb, hole = photo_array(64, 64), box_hole(64, 64)
    with pytest.raises(Stopped):
        inp.inpaint_arrays(rgb, hole, stop=stop)
    assert ran == [0, 1], f"G1 went on after the stop: convolutions {ran} of {len(convs)}"

    for h in handles:
        h.remove()
    x = torch.zeros(1, 3, 64, 64)
    other = threading.Thread(target=lambda: ran.append(inp.engine("edge", x).shape[1]))
    with stoppable(stop):  # this thread's calls are given up, the other thread's are not
        other.start()
        other.join()
        with pytest.raises(Stopped):
            inp.engine("edge", x)
    assert ran[-1] == 1
    result, _ = inp.inpaint_arrays(rgb, hole)  # and after the stopped call, calls run again
    assert result[~hole].tolist() == rgb[~hole].tolist()


def test_a_call_given_up_stops_before_its_next_network_pass(monkeypatch) -> None:
    """``stop`` (the web server's Cancel) ends a call at the next window or network, and the
    PatchMatch copies not started yet are dropped, not waited for."""
    import threading
    import time

    from edgefill.errors import Stopped
    from edgefill.networks import EdgeGenerator, InpaintGenerator

    cfg = ModelConfig(width=4, edge_blocks=1, inpaint_blocks=1, hole_fill="telea", exemplar=True)
    inp = Inpainter.from_modules(EdgeGenerator(4, 1), InpaintGenerator.from_config(cfg), cfg)
    rgb = photo_array(200, 200)
    hole = np.zeros((200, 200), bool)
    for y, x in ((20, 20), (20, 150), (150, 20), (150, 150)):  # four windows, far apart
        hole[y : y + 30, x : x + 30] = True
    calls = {"edges": 0, "complete": 0, "copies": 0}
    stop = threading.Event()
    edges, complete, copy = inp._edges, inp.complete, inp._prefill_and_copy

    def first_edges_then_stop(*args):
        calls["edges"] += 1
        stop.set()  # the client leaves while G1 runs on the first window
        return edges(*args)

    def counted(name, fn, seconds=0.0):
        def run(*args):
            calls[name] += 1
            time.sleep(seconds)  # a copy long enough that the others are still queued
            return fn(*args)

        return run

    monkeypatch.setattr(inp, "_edges", first_edges_then_stop)
    monkeypatch.setattr(inp, "complete", counted("complete", complete))
    monkeypatch.setattr(inp, "_prefill_and_copy", counted("copies", copy, 1.0))
    with pytest.raises(Stopped):
        inp.inpaint_arrays(rgb, hole, hd_strategy="crop", hd_margin=16, stop=stop)
    assert calls["edges"] == 1 and calls["complete"] == 0
    assert calls["copies"] == 1, "the queued copies ran for a call given up"

    with pytest.raises(Stopped):  # given up before it started: no network runs at all
        inp.edge_map(rgb, hole, hd_strategy="crop", stop=stop)
    assert calls["edges"] == 1
    monkeypatch.undo()
    result, _ = inp.inpaint_arrays(rgb, hole, hd_strategy="crop", stop=threading.Event())
    assert result[~hole].tolist() == rgb[~hole].tolist()  # an event never set changes nothing
