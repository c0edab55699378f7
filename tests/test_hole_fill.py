"""G2's hole fill: the reference's white hole, or a Telea / PatchMatch pre-fill with a mask
channel that G2 corrects."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import box_hole, photo_array, spy_fill_hole

from edgefill import prefill
from edgefill.checkpoint import load_release, save_release
from edgefill.config import HOLE_FILLS, Config, ModelConfig, from_dict
from edgefill.edges import canny_edges, to_gray
from edgefill.errors import EdgefillError
from edgefill.networks import (
    EdgeGenerator,
    InpaintGenerator,
    adapt_inpaint_state,
    inpaint_input,
)
from edgefill.pipeline import Inpainter
from edgefill.prefill import fill_hole

TELEA = ModelConfig(width=4, edge_blocks=1, inpaint_blocks=1, hole_fill="telea")


def _hole(h: int, w: int, box: tuple[int, int, int, int]) -> torch.Tensor:
    m = torch.zeros(1, 1, h, w)
    y0, y1, x0, x1 = box
    m[..., y0:y1, x0:x1] = 1
    return m


def _rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("kind", HOLE_FILLS)
@pytest.mark.parametrize("h,w", [(37, 50), (64, 64), (1, 7), (9, 1)])
def test_fill_hole_keeps_known_pixels_exactly(kind: str, h: int, w: int) -> None:
    rgb = _rgb(h, w)
    hole = np.random.default_rng(1).random((h, w)) > 0.6
    out = fill_hole(kind, rgb, hole)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[~hole], rgb[~hole])


@pytest.mark.parametrize("kind", ["telea", "patchmatch"])
def test_fill_hole_is_the_classical_baseline_inside_the_hole(kind: str) -> None:
    from edgefill.baselines import inpaint

    rgb, hole = photo_array(), box_hole()
    np.testing.assert_array_equal(fill_hole(kind, rgb, hole, seed=3), inpaint(kind, rgb, hole, 3))


def test_thin_parts_are_the_components_close_to_known_pixels() -> None:
    hole = np.zeros((60, 80), bool)
    hole[10, 5:70] = True  # a 1 px scratch
    hole[20:24, 5:70] = True  # a 4 px one: 2 px from the known pixels at most
    hole[35:55, 30:50] = True  # a 20 px blob
    thin = prefill.thin_parts(hole)
    assert thin[10, 5:70].all() and thin[20:24, 5:70].all() and not thin[35:55, 30:50].any()
    assert not prefill.thin_parts(np.zeros((5, 5), bool)).any()


def test_biharmonic_matches_scikit_image() -> None:
    """The pre-fill's sparse solve gives the biharmonic baseline's result (scikit-image)."""
    from edgefill.baselines import inpaint

    rgb = photo_array()
    hole = np.zeros(rgb.shape[:2], bool)
    hole[20, 3:60] = hole[30:33, 10:50] = hole[0, :20] = True  # a scratch along the border too
    hole[40:44, 40:44] = True
    ours, ref = prefill.biharmonic(rgb, hole), inpaint("biharmonic", rgb, hole)
    assert np.abs(ours.astype(int) - ref).max() <= 1
    np.testing.assert_array_equal(ours[~hole], rgb[~hole])


def scratch_and_blob() -> tuple[np.ndarray, np.ndarray]:
    rgb = photo_array(64, 80)
    hole = np.zeros(rgb.shape[:2], bool)
    hole[20, 3:70] = True  # a 1 px scratch
    hole[36:56, 30:50] = True  # a blob
    return rgb, hole


def test_telea_prefill_interpolates_thin_parts_biharmonically() -> None:
    """Scratches get the biharmonic fill (smooth across the scratch), blobs Telea's."""
    rgb, hole = scratch_and_blob()
    out = fill_hole("telea", rgb, hole)
    thin = prefill.thin_parts(hole)
    telea = prefill.telea(rgb, hole)
    np.testing.assert_array_equal(out[thin], prefill.biharmonic(telea, thin)[thin])
    np.testing.assert_array_equal(out[hole & ~thin], telea[hole & ~thin])
    assert not np.array_equal(out[thin], telea[thin])


def test_a_scratch_with_a_rim_the_mask_missed_keeps_teleas_fill() -> None:
    """A bright rim along the scratch (damage below the mask's threshold) would be carried into
    the hole by the biharmonic fill: the rim offset sends that scratch to Telea."""
    rgb, hole = scratch_and_blob()
    thin = prefill.thin_parts(hole)
    labels, offsets = prefill.rim_offsets(prefill.telea(rgb, hole), thin)
    assert offsets[labels[20, 10]] <= prefill.RIM_TOLERANCE  # noise only: no rim
    rimmed = rgb.astype(int)
    rimmed[[19, 21], 3:70] += 30
    rimmed = np.clip(rimmed, 0, 255).astype(np.uint8)
    labels, offsets = prefill.rim_offsets(prefill.telea(rimmed, hole), thin)
    assert offsets[labels[20, 10]] > prefill.RIM_TOLERANCE
    np.testing.assert_array_equal(
        fill_hole("telea", rimmed, hole)[thin], prefill.telea(rimmed, hole)[thin]
    )


def test_patchmatch_fill_copies_texture_and_is_seeded() -> None:
    # Stripes: PatchMatch continues them (values stay 0 or 255), Telea smears them to grey.
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[:, ::4] = 255
    hole = np.zeros((64, 64), bool)
    hole[20:44, 20:44] = True
    pm, te = fill_hole("patchmatch", rgb, hole, 1), fill_hole("telea", rgb, hole)
    mid = (pm[hole] > 40) & (pm[hole] < 215)
    assert mid.mean() < 0.2 < ((te[hole] > 40) & (te[hole] < 215)).mean()
    np.testing.assert_array_equal(pm, fill_hole("patchmatch", rgb, hole, 1))


def test_the_edge_guide_codes_distance_to_edges_and_the_region_between_them() -> None:
    """Channel 0: distance to the nearest edge (0 on it, 0.5 from GUIDE_REACH px on); channel 1:
    one code per region the edges enclose, even where the contour has a gap of a few pixels."""
    edges = np.zeros((48, 48), np.float32)
    cv2.rectangle(edges, (10, 10), (37, 37), 1.0, 1)
    edges[10, 20:23] = 0.0  # a 3 px gap: closed by REGION_CLOSE
    guide = prefill.edge_guide_map(edges)
    assert guide.shape == (48, 48, 3) and guide.dtype == np.float32
    assert guide[10, 10, 0] == 0.0 and guide[0, 47, 0] == 0.5
    inside = guide[16:32, 16:32, 1]
    outside = np.r_[guide[:4, :, 1].ravel(), guide[44:, :, 1].ravel()]
    assert np.ptp(inside) == 0 and np.ptp(outside) == 0
    assert abs(inside[0, 0] - outside[0]) > 0.1
    assert (guide[..., 1] <= 0.5).all()  # the library wraps differences around at 1
    # Without edges there is one region: every pixel is far from an edge, with one code.
    flat = prefill.edge_guide_map(np.zeros((8, 8), np.float32))
    assert (flat[..., 0] == 0.5).all() and np.ptp(flat[..., 1]) == 0


def spy_patchmatch(monkeypatch: pytest.MonkeyPatch) -> list[tuple[tuple[int, ...], np.ndarray]]:
    """Record (image shape, hole) of every ``prefill.patchmatch`` call."""
    seen: list[tuple[tuple[int, ...], np.ndarray]] = []
    real = prefill.patchmatch

    def spy(rgb, hole, *args):  # noqa: ANN001, ANN002, ANN202
        seen.append((rgb.shape, hole.copy()))
        return real(rgb, hole, *args)

    monkeypatch.setattr(prefill, "patchmatch", spy)
    return seen


def test_patchmatch_runs_reduced_above_max_side(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above max_side PatchMatch sees a reduced copy whose hole covers every hole pixel; the
    fill is upscaled into the hole and the known pixels stay exact. At or below it: full size."""
    seen = spy_patchmatch(monkeypatch)
    rgb = np.zeros((120, 200, 3), np.uint8)
    rgb[:, ::4] = 255
    hole = np.zeros((120, 200), bool)
    hole[41:79, 61:139] = True
    hole[5, 7] = True  # a single pixel must survive the reduction
    out = fill_hole("patchmatch", rgb, hole, 1, max_side=100)
    ((shape, small_hole),) = seen
    assert shape == (60, 100, 3)
    assert small_hole[2, 3] and small_hole[20:39, 30:69].all() and not small_hole[:, 80:].any()
    np.testing.assert_array_equal(out[~hole], rgb[~hole])
    assert np.abs(out[hole].astype(int) - 128).mean() > 40  # stripes copied, not grey
    fill_hole("patchmatch", rgb, hole, 1, max_side=200)
    assert seen[1][0] == (120, 200, 3)


def test_fill_hole_white_and_all_hole_and_bad_kind() -> None:
    rgb, hole = _rgb(20, 30), np.zeros((20, 30), bool)
    hole[5:15, 5:15] = True
    assert np.all(fill_hole("white", rgb, hole)[hole] == 255)
    for kind in ("telea", "patchmatch"):
        assert np.all(fill_hole(kind, rgb, np.ones((20, 30), bool)) == 128)
    np.testing.assert_array_equal(fill_hole("patchmatch", rgb, np.zeros_like(hole)), rgb)
    with pytest.raises(EdgefillError, match="hole fill"):
        fill_hole("black", rgb, hole)


def test_missing_patchmatch_library_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "patchmatch", None)  # import fails like a missing package
    assert "pypatchmatch" in (prefill.patchmatch_unavailable() or "")
    rgb, hole = _rgb(8, 8), np.eye(8, dtype=bool)
    with pytest.raises(EdgefillError, match="pip install pypatchmatch"):
        fill_hole("patchmatch", rgb, hole)


def test_missing_opencv_contrib_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """The exemplar fill's thin parts need cv2.xphoto (FSR), which plain OpenCV wheels lack."""
    assert prefill.fills_unavailable("telea", "white", exemplar=True) is None
    monkeypatch.delattr(cv2, "xphoto", raising=False)
    with pytest.raises(EdgefillError, match="opencv-contrib-python-headless"):
        prefill.fsr(_rgb(8, 8)[..., 0], np.eye(8, dtype=bool))
    assert "xphoto" in (prefill.fills_unavailable("telea", "white", exemplar=True) or "")
    assert prefill.fills_unavailable("telea", "white", exemplar=False) is None


def test_inpaint_input_channels() -> None:
    img, m, e = torch.rand(1, 3, 16, 16), _hole(16, 16, (4, 12, 4, 12)), torch.rand(1, 1, 16, 16)
    white = inpaint_input(img, m, e, "white")
    for kind in ("telea", "patchmatch"):
        filled = inpaint_input(img, m, e, kind)
        assert white.shape[1] == 4 and filled.shape[1] == 5
        assert torch.equal(filled[:, :3], img) and torch.equal(white[:, :3], img)
        assert torch.equal(filled[:, 3:4], e) and torch.equal(filled[:, 4:], m)
    with pytest.raises(ValueError, match="hole_fill"):
        inpaint_input(img, m, e, "black")
    with pytest.raises(ValueError, match="hole_fill"):
        InpaintGenerator(4, 1, "black")
    assert InpaintGenerator(4, 1, "telea").encoder[1].weight.shape[1] == 5


def test_prefilled_generator_outputs_a_correction_of_its_input() -> None:
    torch.manual_seed(0)
    g = InpaintGenerator(4, 1, "telea").eval()
    x = torch.rand(1, 5, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(g(x), (x[:, :3] + torch.tanh(g.logits(x))).clamp(0, 1))
        # Clamped inside the network, so training losses see what inference returns.
        x[:, :3] = 1.0
        assert g(x).max() <= 1 and g(x - 2).min() >= 0
        white = InpaintGenerator(4, 1, "white").eval()
        y = white(x[:, :4])
    assert y.min() >= 0 and y.max() <= 1


def test_hole_fill_is_validated_in_the_config() -> None:
    assert Config().model.hole_fill == "white"
    assert from_dict({"model": {"hole_fill": "telea"}}).model.hole_fill == "telea"
    with pytest.raises(EdgefillError, match="hole_fill"):
        from_dict({"model": {"hole_fill": "black"}})


def test_a_white_g2_starts_a_telea_one_as_exactly_its_prefill() -> None:
    torch.manual_seed(0)
    g4, g5 = InpaintGenerator(4, 1, "white").eval(), InpaintGenerator(4, 1, "telea").eval()
    with pytest.raises(RuntimeError):
        g5.load_state_dict(g4.state_dict())
    sd = adapt_inpaint_state(g4.state_dict(), g5)
    g5.load_state_dict(sd)
    x = torch.rand(1, 5, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(g5(x), x[:, :3])
    # Every other learned weight is kept; the mask channel starts at zero.
    w4, w5 = g4.state_dict()["encoder.1.weight"], sd["encoder.1.weight"]
    assert torch.equal(w5[:, :4], w4) and torch.all(w5[:, 4] == 0)
    assert torch.equal(
        sd["middle.0.conv_block.1.weight"], g4.state_dict()["middle.0.conv_block.1.weight"]
    )
    # Matching shapes pass through untouched; other mismatches are left for load_state_dict.
    same = adapt_inpaint_state(g5.state_dict(), g5)
    assert all(torch.equal(same[k], v) for k, v in g5.state_dict().items())
    wide = InpaintGenerator(8, 1, "telea")
    with pytest.raises(RuntimeError):
        wide.load_state_dict(adapt_inpaint_state(g4.state_dict(), wide))


def test_a_telea_g2_starts_a_patchmatch_one_as_exactly_its_prefill() -> None:
    torch.manual_seed(0)
    telea, pm = InpaintGenerator(4, 1, "telea").eval(), InpaintGenerator(4, 1, "patchmatch").eval()
    torch.nn.init.normal_(telea.decoder[-1].weight, 0, 0.5)  # a learned, non-zero correction
    x = torch.rand(1, 5, 32, 32) * 0.5 + 0.25
    pm.load_state_dict(adapt_inpaint_state(telea.state_dict(), pm, reset_output=True))
    with torch.no_grad():
        assert not torch.allclose(telea(x), x[:, :3])
        torch.testing.assert_close(pm(x), x[:, :3])


def test_telea_release_round_trip_and_pipeline(tmp_path: Path) -> None:
    torch.manual_seed(0)
    g1, g2 = EdgeGenerator(4, 1), InpaintGenerator(4, 1, "telea")
    rel = save_release(tmp_path / "rel", g1.state_dict(), g2.state_dict(), TELEA)
    _, g2b, cfg, _ = load_release(rel)
    assert cfg.hole_fill == "telea" and g2b.in_channels == 5
    inp = Inpainter.from_pretrained(rel, precision="fp32")
    rgb, hole = photo_array(), box_hole()
    out, _ = inp.inpaint_arrays(rgb, hole)
    np.testing.assert_array_equal(out[~hole], rgb[~hole])
    # G2 gets the Telea fill and the mask: complete() matches the network run by hand.
    edges = np.zeros(hole.shape, np.float32)
    x = inpaint_input(
        torch.from_numpy(fill_hole("telea", rgb, hole)).permute(2, 0, 1)[None].float() / 255,
        torch.from_numpy(hole)[None, None].float(),
        torch.from_numpy(edges)[None, None],
        "telea",
    )
    with torch.no_grad():
        want = g2b(x)[0].clamp(0, 1).permute(1, 2, 0).mul(255).round().numpy()
    got = inp.complete(rgb, hole, edges).astype(np.float32)
    assert np.abs(got - want).max() <= 1


def test_release_without_hole_fill_loads_as_the_reference(tmp_path: Path) -> None:
    import json

    torch.manual_seed(0)
    g1, g2 = EdgeGenerator(4, 1), InpaintGenerator(4, 1)
    rel = save_release(tmp_path / "rel", g1.state_dict(), g2.state_dict(), ModelConfig(4, 1, 1))
    doc = json.loads((rel / "config.json").read_text())
    del doc["model"]["hole_fill"]  # releases written before the option existed
    (rel / "config.json").write_text(json.dumps(doc))
    assert load_release(rel)[2].hole_fill == "white"


def test_pipeline_guides_the_patchmatch_fill_by_drawn_edges_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from edgefill import pipeline as pipeline_module

    torch.manual_seed(0)
    cfg = ModelConfig(
        width=4, edge_blocks=1, inpaint_blocks=1, hole_fill="patchmatch", edge_guide=2.0
    )
    inp = Inpainter.from_modules(EdgeGenerator(4, 1), InpaintGenerator(4, 1, "patchmatch"), cfg)
    calls = spy_fill_hole(monkeypatch, pipeline_module)
    rgb, hole = photo_array(), box_hole()
    plain, _ = inp.inpaint_arrays(rgb, hole)
    line = np.zeros(hole.shape, np.float32)
    line[hole.shape[0] // 2] = 1
    drawn, _ = inp.inpaint_arrays(rgb, hole, line)
    assert [weight for _, weight in calls] == [0.0, 2.0]
    assert not np.array_equal(plain, drawn)


def test_pipeline_gives_g1_the_pre_filled_gray_with_edge_hole_fill() -> None:
    from edgefill.edges import canny_edges, to_gray
    from edgefill.networks import edge_input

    torch.manual_seed(0)
    g1 = EdgeGenerator(4, 1).eval()
    cfg = ModelConfig(width=4, edge_blocks=1, inpaint_blocks=1, edge_hole_fill="telea")
    inp = Inpainter.from_modules(g1, InpaintGenerator(4, 1), cfg)
    rgb, hole = photo_array(), box_hole()
    known, pred = inp.predict_edges(rgb, hole)
    gray = torch.from_numpy(to_gray(rgb))[None, None]
    hole_gray = torch.from_numpy(to_gray(fill_hole("telea", rgb, hole)))[None, None]
    m = torch.from_numpy(hole.astype(np.float32))[None, None]
    e = torch.from_numpy(canny_edges(to_gray(rgb), hole, cfg.canny_sigma))[None, None]
    with torch.no_grad():
        want = g1(edge_input(gray, e, m, hole_gray))[0, 0].numpy()
        white = g1(edge_input(gray, e, m))[0, 0].numpy()
    np.testing.assert_allclose(pred, want, atol=1e-5)
    assert np.abs(pred - white).max() > 1e-3  # not what the white hole gives
    with pytest.raises(EdgefillError, match="edge_hole_fill"):
        from_dict({"model": {"edge_hole_fill": "paint"}})


def test_pipeline_runs_patchmatch_reduced_on_large_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pipeline passes PATCHMATCH_MAX_SIDE, so a large photo's PatchMatch sees a reduced copy
    (its cost grows with the area; G2 corrects the upscaled fill at full size)."""
    from edgefill import pipeline as pipeline_module

    monkeypatch.setattr(pipeline_module, "PATCHMATCH_MAX_SIDE", 32)
    seen = spy_patchmatch(monkeypatch)
    torch.manual_seed(0)
    cfg = ModelConfig(width=4, edge_blocks=1, inpaint_blocks=1, hole_fill="patchmatch")
    inp = Inpainter.from_modules(EdgeGenerator(4, 1), InpaintGenerator(4, 1, "patchmatch"), cfg)
    rgb, hole = photo_array(), box_hole()
    out, _ = inp.inpaint_arrays(rgb, hole, hd_strategy="original")
    assert max(rgb.shape[:2]) > 32 and seen and all(max(shape[:2]) == 32 for shape, _ in seen)
    np.testing.assert_array_equal(out[~hole], rgb[~hole])


def _exemplar_release(tmp_path: Path, blend_bias: float) -> Path:
    """A tiny model.exemplar release whose blend weight is sigmoid(blend_bias) everywhere."""
    torch.manual_seed(0)
    g2 = InpaintGenerator(4, 1, "telea", exemplar=True)
    with torch.no_grad():
        g2.decoder[-1].weight[3] = 0
        g2.decoder[-1].bias[3] = blend_bias
    cfg = ModelConfig(width=4, edge_blocks=1, inpaint_blocks=1, hole_fill="telea", exemplar=True)
    return save_release(tmp_path / "rel", EdgeGenerator(4, 1).state_dict(), g2.state_dict(), cfg)


def test_an_exemplar_release_round_trips_and_the_pipeline_passes_the_patchmatch_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgefill import pipeline as pipeline_module

    rel = _exemplar_release(tmp_path, -30.0)  # weight 0: the output is the copy
    _, g2, cfg, _ = load_release(rel)
    assert cfg.exemplar and g2.exemplar and g2.in_channels == 8
    inp = Inpainter.from_pretrained(rel, precision="fp32")
    calls = []
    real = pipeline_module.exemplar_fill

    def spy(rgb, hole, seed=0, edges=None, edge_guide=0.0, max_side=None, smooth=None):  # noqa: ANN001, ANN202
        calls.append(edge_guide)
        return real(rgb, hole, seed, edges, edge_guide, max_side, smooth)

    monkeypatch.setattr(pipeline_module, "exemplar_fill", spy)
    rgb, hole = photo_array(), box_hole()
    edges = np.zeros(hole.shape, np.float32)
    got = inp.complete(rgb, hole, edges)
    assert calls == [0.0]
    np.testing.assert_array_equal(got[hole], prefill.exemplar_fill(rgb, hole)[hole])
    line = np.zeros(hole.shape, np.float32)
    line[hole.shape[0] // 2] = 1
    inp.complete(rgb, hole, line, drawn=True)
    assert calls[-1] == cfg.edge_guide  # guided like the patchmatch pre-fill


def test_the_exemplar_copy_keeps_a_smooth_fill_with_grain_on_thin_parts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(prefill, "THIN_FSR", 0.0)  # FSR's share: the next test
    rgb = _rgb(64, 64)
    hole = np.zeros((64, 64), bool)
    hole[30:32, 4:60] = True  # a scratch: thin
    hole[8:24, 8:24] = True  # a blob: not thin
    thin = prefill.thin_parts(hole)
    copy = prefill.fill_hole("patchmatch", rgb, hole)
    got = prefill.exemplar_fill(rgb, hole)
    blob = hole & ~thin
    np.testing.assert_array_equal(got[blob], copy[blob])  # PatchMatch's copy on the blob
    np.testing.assert_array_equal(got[~hole], rgb[~hole])
    smooth = prefill.smooth_fill(rgb, hole).astype(np.float32)
    grain = copy.astype(np.float32) - cv2.GaussianBlur(copy.astype(np.float32), (0, 0), 1.0)
    want = np.clip(np.round(smooth + prefill.THIN_DETAIL * grain), 0, 255)
    np.testing.assert_array_equal(got[thin], want[thin])
    assert not np.array_equal(got[thin], copy[thin])


def test_the_exemplar_copy_can_leave_fsr_out_where_opencv_lacks_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """train.thin_fsr=false (a GPU machine whose OpenCV has no cv2.xphoto): the thin parts are
    the smooth fill with grain alone, and neither the fill nor the trainer's check needs FSR."""
    rgb = _stripes(64, 64)
    hole = np.zeros((64, 64), bool)
    hole[30:32, 4:60] = True  # a scratch: thin
    with_fsr = prefill.exemplar_fill(rgb, hole)
    monkeypatch.delattr(cv2, "xphoto", raising=False)
    assert prefill.fills_unavailable("telea", "white", exemplar=True, thin_fsr=False) is None
    got = prefill.exemplar_fill(rgb, hole, thin_fsr=False)
    monkeypatch.setattr(prefill, "THIN_FSR", 0.0)
    np.testing.assert_array_equal(got, prefill.exemplar_fill(rgb, hole))
    assert not np.array_equal(got[hole], with_fsr[hole])  # FSR did move the thin parts
    batch = prefill.fill_batch(
        prefill.EXEMPLAR,
        torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255,
        torch.from_numpy(hole)[None, None].float(),
        thin_fsr=False,
    )
    np.testing.assert_array_equal(batch[0].permute(1, 2, 0).mul(255).round().byte().numpy(), got)


def _stripes(h: int, w: int) -> np.ndarray:
    """Grey diagonal stripes (period 8 px) on a colour tint: texture a smooth fill cannot continue."""
    y, x = np.mgrid[:h, :w]
    v = 128 + 60 * np.sin(2 * np.pi * (x + y) / 8)
    return np.clip(np.stack([v + 20, v, v - 20], -1), 0, 255).astype(np.uint8)


def test_fsr_luma_continues_a_texture_across_a_scratch() -> None:
    rgb = _stripes(64, 96)
    hole = np.zeros((64, 96), bool)
    hole[20:22, 8:88] = True
    got = prefill.fsr_luma(rgb, hole)
    truth = prefill.luma(rgb)
    np.testing.assert_allclose(got[~hole], truth[~hole], atol=1e-3)  # the photo's own outside
    fsr_err = np.abs(got - truth)[hole].mean()
    smooth_err = np.abs(prefill.luma(prefill.smooth_fill(rgb, hole)) - truth)[hole].mean()
    assert fsr_err < 3 < smooth_err


def test_fsr_luma_works_on_a_crop_on_fsrs_block_grid() -> None:
    rng = np.random.default_rng(0)
    rgb = cv2.GaussianBlur(rng.integers(0, 256, (200, 240, 3), dtype=np.uint8), (0, 0), 2)
    rgb = np.clip(rgb.astype(int) * 3 - 256, 0, 255).astype(np.uint8)
    hole = np.zeros((200, 240), bool)
    hole[105:107, 95:175] = True  # 5 px off the grid: a crop at 95 - 64 would shift FSR's blocks
    # FSR on the whole photo's grey, the grey fsr_luma rounds (cv2's own RGB2GRAY rounds other
    # pixels the other way, and FSR spreads that by a level or two, more on some CPUs)
    grey = np.clip(np.round(prefill.luma(rgb)), 0, 255).astype(np.uint8)
    whole = prefill.fsr(grey, hole)
    assert np.abs(prefill.fsr_luma(rgb, hole) - whole)[hole].max() <= 1


def test_the_exemplar_copy_takes_fsrs_luminance_on_thin_parts_within_its_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rgb = _stripes(64, 96)
    hole = np.zeros((64, 96), bool)
    hole[20:22, 8:88] = True  # a scratch: thin
    hole[36:56, 30:50] = True  # a blob: not thin
    thin = prefill.thin_parts(hole)
    monkeypatch.setattr(prefill, "THIN_FSR", 0.0)
    without = prefill.exemplar_fill(rgb, hole).astype(np.float32)
    monkeypatch.setattr(prefill, "THIN_FSR", 1.0)
    got = prefill.exemplar_fill(rgb, hole).astype(np.float32)
    known = np.where((hole & ~thin)[..., None], prefill.fill_hole("patchmatch", rgb, hole), rgb)
    want = prefill.fsr_luma(known, thin)
    assert np.abs(prefill.luma(got) - want)[thin].max() <= 1.0  # rounding only
    chroma = got[..., 0] - got[..., 1], without[..., 0] - without[..., 1]
    assert np.abs(chroma[0] - chroma[1])[thin].max() <= 2  # luminance moved, colour kept
    np.testing.assert_array_equal(got[~thin], without[~thin])
    calls = []
    monkeypatch.setattr(prefill, "fsr_luma", lambda *a: calls.append(1))
    monkeypatch.setattr(prefill, "THIN_FSR_MAX_PIXELS", int(thin.sum()) - 1)
    np.testing.assert_array_equal(prefill.exemplar_fill(rgb, hole), without)  # over budget
    assert calls == []


def test_the_pipeline_takes_the_copy_as_it_is_on_thin_parts(tmp_path: Path) -> None:
    inp = Inpainter.from_pretrained(_exemplar_release(tmp_path, 0.0), precision="fp32")
    rgb = photo_array()
    hole = box_hole()
    hole[5:7, 4:60] = True  # a scratch beside the box
    thin = prefill.thin_parts(hole)
    assert thin.any() and (hole & ~thin).any()
    copy = inp.exemplar_copy(rgb, hole)
    got = inp.complete(rgb, hole, np.zeros(hole.shape, np.float32), copy=copy)
    np.testing.assert_array_equal(got[thin], copy[thin])
    blob = hole & ~thin
    assert np.abs(got[blob].astype(int) - copy[blob]).mean() > 1  # blended with G2 there


def test_a_hole_of_thin_parts_only_runs_no_network_with_the_same_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inp = Inpainter.from_pretrained(_exemplar_release(tmp_path, 0.0), precision="fp32")
    rgb = photo_array()
    hole = np.zeros(rgb.shape[:2], bool)
    hole[20:22, 4:48] = True  # a scratch: every part thin
    comp = inp._edges(rgb, hole, None)
    want = inp.complete(rgb, hole, comp)
    calls = []
    real = inp.engine

    def spy(name, x):  # noqa: ANN001, ANN202
        calls.append(name)
        return real(name, x)

    monkeypatch.setattr(inp, "engine", spy)
    got, edges = inp.inpaint_arrays(rgb, hole, hd_strategy="original")
    np.testing.assert_array_equal(got[hole], want[hole])
    assert calls == []  # the fill is the copy: neither G1 nor G2 runs
    # The edge map: the photo's known edges outside, the fill's own edges inside the scratch.
    sigma = inp.config.canny_sigma
    np.testing.assert_array_equal(edges[~hole], canny_edges(to_gray(rgb), hole, sigma)[~hole])
    np.testing.assert_array_equal(edges[hole], canny_edges(to_gray(got), None, sigma)[hole])
    assert edges[hole].any()  # the scratch crosses the photo's structure
    # Only the edge map asked for: G1 predicts it, as for any hole.
    assert inp.edge_map(rgb, hole, hd_strategy="original").shape == hole.shape
    assert calls == ["edge"]
    hole[8:24, 8:24] = True  # a blob besides: both networks run
    calls.clear()
    inp.inpaint_arrays(rgb, hole, hd_strategy="original")
    assert calls == ["edge", "inpaint"]


def test_drawn_edges_replace_g1_which_does_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inp = Inpainter.from_pretrained(_exemplar_release(tmp_path, 0.0), precision="fp32")
    rgb, hole = photo_array(), box_hole()
    line = np.zeros(hole.shape, np.float32)
    line[hole.shape[0] // 2] = 1
    known, _ = inp.predict_edges(rgb, hole)
    calls = []
    real = inp.engine

    def spy(name, x):  # noqa: ANN001, ANN202
        calls.append(name)
        return real(name, x)

    monkeypatch.setattr(inp, "engine", spy)
    _, edges = inp.inpaint_arrays(rgb, hole, line, hd_strategy="original")
    assert calls == ["inpaint"] * 2  # G2 only (and on the mirror): G1's edges would be replaced
    np.testing.assert_array_equal(edges, np.where(hole, line, known))


def test_the_pipeline_runs_the_patchmatch_copy_beside_g1_with_the_same_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inp = Inpainter.from_pretrained(_exemplar_release(tmp_path, 0.0), precision="fp32")
    rgb, hole = photo_array(), box_hole()
    threads = []
    real = Inpainter.exemplar_copy

    def spy(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        threads.append(threading.current_thread() is threading.main_thread())
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Inpainter, "exemplar_copy", spy)
    out, _ = inp.inpaint_arrays(rgb, hole, hd_strategy="original")
    assert threads == [False]  # one copy, computed off the main thread
    comp = inp._edges(rgb, hole, None)
    want = inp.complete(rgb, hole, comp)  # the copy computed in line
    assert threads == [False, True]
    np.testing.assert_array_equal(out[hole], want[hole])
    line = np.zeros(hole.shape, np.float32)
    line[hole.shape[0] // 2] = 1
    inp.inpaint_arrays(rgb, hole, line, hd_strategy="original")
    assert threads[-1] is True  # drawn edges guide the copy: it waits for them


def test_the_smooth_prefill_is_made_while_the_copy_runs_not_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without thin parts the copy thread leaves G2's pre-fill to the main thread, which makes it
    before it waits for the copy: the copy here only finishes once the pre-fill has started."""
    inp = Inpainter.from_pretrained(_exemplar_release(tmp_path, 0.0), precision="fp32")
    rgb, hole = photo_array(), box_hole()
    started, waited = threading.Event(), []
    real_copy, real_prefill = Inpainter.exemplar_copy, Inpainter.prefill

    def copy(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        waited.append(started.wait(timeout=5))
        return real_copy(self, *args, **kwargs)

    def prefill_spy(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        started.set()
        return real_prefill(self, *args, **kwargs)

    expected = inp.inpaint_arrays(rgb, hole, hd_strategy="original")[0]
    monkeypatch.setattr(Inpainter, "exemplar_copy", copy)
    monkeypatch.setattr(Inpainter, "prefill", prefill_spy)
    out = inp.inpaint_arrays(rgb, hole, hd_strategy="original")[0]
    assert waited == [True]
    np.testing.assert_array_equal(out, expected)


def test_g1_leaves_the_copy_a_core_and_torch_threads_are_restored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inp = Inpainter.from_pretrained(_exemplar_release(tmp_path, 0.0), precision="fp32")
    rgb, hole = photo_array(), box_hole()
    seen = []
    real = Inpainter._edges

    def spy(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        seen.append(torch.get_num_threads())
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Inpainter, "_edges", spy)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        inp.inpaint_arrays(rgb, hole, hd_strategy="original")
        assert seen == [1]  # the copy runs beside G1 on the other core
        assert torch.get_num_threads() == 2
        line = np.zeros(hole.shape, np.float32)
        line[hole.shape[0] // 2] = 1
        inp.inpaint_arrays(rgb, hole, line, hd_strategy="original")
        assert seen == [1, 2]  # drawn edges: the copy waits for them, G1 keeps both cores
    finally:
        torch.set_num_threads(before)


def test_the_smooth_fill_of_a_scratch_is_solved_once_for_g2_and_its_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rgb = _rgb(64, 64)
    hole = np.zeros((64, 64), bool)
    hole[30:32, 4:60] = True  # a scratch: every part thin
    want = prefill.exemplar_fill(rgb, hole)
    smooth = prefill.fill_hole("telea", rgb, hole)
    np.testing.assert_array_equal(prefill.exemplar_fill(rgb, hole, smooth=smooth), want)
    inp = Inpainter.from_pretrained(_exemplar_release(tmp_path, 0.0), precision="fp32")
    expected = inp.inpaint_arrays(rgb, hole, hd_strategy="original")[0]
    calls = []
    real = prefill.smooth_fill

    def spy(*args):  # noqa: ANN002, ANN202
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(prefill, "smooth_fill", spy)
    got = inp.inpaint_arrays(rgb, hole, hd_strategy="original")[0]
    assert len(calls) == 1  # G2's pre-fill, reused by the copy
    np.testing.assert_array_equal(got, expected)
    calls.clear()
    inp.complete(rgb, hole, np.zeros(hole.shape, np.float32))
    assert len(calls) == 1
    calls.clear()
    inp.inpaint_arrays(photo_array(), box_hole(), hd_strategy="original")
    assert len(calls) == 1  # no thin part: the copy does not need it
