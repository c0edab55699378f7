"""G2's hole fill: the reference's white hole and the pull-push "smooth" fill with a mask channel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import box_hole, photo_array

from edgefill.checkpoint import load_release, save_release
from edgefill.config import Config, ModelConfig, from_dict
from edgefill.errors import EdgefillError
from edgefill.networks import (
    EdgeGenerator,
    InpaintGenerator,
    inpaint_input,
    smooth_fill,
    widen_input,
)
from edgefill.pipeline import Inpainter

SMOOTH = ModelConfig(width=4, edge_blocks=1, inpaint_blocks=1, hole_fill="smooth")


def _hole(h: int, w: int, box: tuple[int, int, int, int]) -> torch.Tensor:
    m = torch.zeros(1, 1, h, w)
    y0, y1, x0, x1 = box
    m[..., y0:y1, x0:x1] = 1
    return m


@pytest.mark.parametrize("h,w", [(37, 50), (64, 64), (1, 7), (9, 1)])
def test_smooth_fill_keeps_known_pixels(h: int, w: int) -> None:
    img = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(0))
    m = (torch.rand(2, 1, h, w, generator=torch.Generator().manual_seed(1)) > 0.6).float()
    out = smooth_fill(img, m)
    assert out.shape == img.shape
    assert torch.equal(out * (1 - m), img * (1 - m))


def test_smooth_fill_of_a_flat_photo_is_flat() -> None:
    img = torch.empty(1, 3, 40, 52)
    img[:, 0], img[:, 1], img[:, 2] = 0.2, 0.7, 0.4
    out = smooth_fill(img, _hole(40, 52, (5, 35, 10, 45)))
    torch.testing.assert_close(out, img)


def test_smooth_fill_interpolates_between_the_sides() -> None:
    # Left half black, right half white, a hole across the border: the fill ramps from dark on
    # the left of the hole to bright on its right, never leaving [0, 1].
    img = torch.zeros(1, 3, 64, 64)
    img[..., 32:] = 1
    out = smooth_fill(img, _hole(64, 64, (16, 48, 16, 48)))
    row = out[0, 0, 32, 16:48]
    assert row[0] < 0.25 and row[-1] > 0.75
    assert torch.all(row[1:] >= row[:-1] - 1e-6)
    assert out.min() >= 0 and out.max() <= 1


def test_smooth_fill_of_an_all_hole_image_is_grey() -> None:
    out = smooth_fill(torch.rand(1, 3, 20, 30), torch.ones(1, 1, 20, 30))
    torch.testing.assert_close(out, torch.full_like(out, 0.5))


def test_inpaint_input_channels() -> None:
    img, m, e = torch.rand(1, 3, 16, 16), _hole(16, 16, (4, 12, 4, 12)), torch.rand(1, 1, 16, 16)
    white = inpaint_input(img, m, e, "white")
    smooth = inpaint_input(img, m, e, "smooth")
    assert white.shape[1] == 4 and smooth.shape[1] == 5
    assert torch.all(white[:, :3, 4:12, 4:12] == 1)  # the reference paints the hole white
    assert torch.equal(smooth[:, 4:], m)
    assert torch.equal(smooth[:, :3], smooth_fill(img, m))
    with pytest.raises(ValueError, match="hole_fill"):
        inpaint_input(img, m, e, "black")
    with pytest.raises(ValueError, match="hole_fill"):
        InpaintGenerator(4, 1, "black")
    assert InpaintGenerator(4, 1, "smooth").encoder[1].weight.shape[1] == 5


def test_hole_fill_is_validated_in_the_config() -> None:
    assert Config().model.hole_fill == "white"
    assert from_dict({"model": {"hole_fill": "smooth"}}).model.hole_fill == "smooth"
    with pytest.raises(EdgefillError, match="hole_fill"):
        from_dict({"model": {"hole_fill": "black"}})


def test_widen_input_lets_a_white_g2_initialise_a_smooth_one() -> None:
    torch.manual_seed(0)
    g4, g5 = InpaintGenerator(4, 1, "white").eval(), InpaintGenerator(4, 1, "smooth").eval()
    with pytest.raises(RuntimeError):
        g5.load_state_dict(g4.state_dict())
    g5.load_state_dict(widen_input(g4.state_dict(), g5))
    # The new mask channel starts with zero weights: same output as the 4-channel network.
    x = torch.rand(1, 4, 32, 32)
    x5 = torch.cat([x, torch.rand(1, 1, 32, 32)], 1)
    with torch.no_grad():
        torch.testing.assert_close(g5(x5), g4(x))
    # Matching shapes pass through untouched.
    sd = widen_input(g5.state_dict(), g5)
    assert all(torch.equal(sd[k], v) for k, v in g5.state_dict().items())


def test_smooth_release_round_trip_and_pipeline(tmp_path: Path) -> None:
    torch.manual_seed(0)
    g1, g2 = EdgeGenerator(4, 1), InpaintGenerator(4, 1, "smooth")
    rel = save_release(tmp_path / "rel", g1.state_dict(), g2.state_dict(), SMOOTH)
    _, g2b, cfg, _ = load_release(rel)
    assert cfg.hole_fill == "smooth" and g2b.in_channels == 5
    inp = Inpainter.from_pretrained(rel, precision="fp32")
    rgb, hole = photo_array(), box_hole()
    out, _ = inp.inpaint_arrays(rgb, hole)
    np.testing.assert_array_equal(out[~hole], rgb[~hole])
    # G2 gets the smooth fill and the mask: complete() matches the network run by hand.
    edges = np.zeros(hole.shape, np.float32)
    x = inpaint_input(
        torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255,
        torch.from_numpy(hole)[None, None].float(),
        torch.from_numpy(edges)[None, None],
        "smooth",
    )
    with torch.no_grad():
        want = g2b(x)[0].permute(1, 2, 0).mul(255).round().numpy()
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
