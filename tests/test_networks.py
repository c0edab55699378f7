"""Networks: shapes and ranges, gradients, the 70x70 receptive field, reference checkpoints."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pytest
import torch

from edgefill.networks import (
    DEEP_FROM,
    DEEP_OWN_SHARE,
    DEEP_TO,
    EXEMPLAR_START_WEIGHT,
    Discriminator,
    EdgeGenerator,
    InpaintGenerator,
    PatchAttention,
    adapt_inpaint_state,
    count_parameters,
    gaussian_lowpass,
    hole_depth_ramp,
    load_reference,
    reference_state_dict,
)

SIZES = [(16, 16), (32, 48), (20, 36), (44, 28)]  # multiples of 4; other sizes: test_pipeline


def _seeded(make, seed: int = 0):
    torch.manual_seed(seed)
    return make()


@pytest.mark.parametrize("h,w", SIZES)
def test_edge_generator_shape_and_range(h: int, w: int) -> None:
    net = _seeded(lambda: EdgeGenerator(width=4, blocks=1))
    out = net(torch.rand(2, 3, h, w))
    assert out.shape == (2, 1, h, w)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("h,w", SIZES)
def test_inpaint_generator_shape_and_range(h: int, w: int) -> None:
    net = _seeded(lambda: InpaintGenerator(width=4, blocks=1))
    # Extreme inputs push the tanh towards saturation; the output must stay in [0, 1].
    x = torch.cat([torch.rand(2, 3, h, w) * 50 - 25, torch.rand(2, 1, h, w)], 1)
    out = net(x)
    assert out.shape == (2, 3, h, w)
    assert torch.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("channels", [2, 3])
@pytest.mark.parametrize("h,w", [(32, 32), (64, 48), (40, 72)])
def test_discriminator_shapes_and_features(channels: int, h: int, w: int) -> None:
    width = 4
    net = _seeded(lambda: Discriminator(channels, width=width))
    logits, feats = net(torch.rand(3, channels, h, w))
    # Three stride-2 convs, then two 4x4 stride-1 convs with padding 1 (each loses one pixel).
    assert logits.shape == (3, 1, h // 8 - 2, w // 8 - 2)
    assert len(feats) == 5
    expected = [
        (width, h // 2, w // 2),
        (2 * width, h // 4, w // 4),
        (4 * width, h // 8, w // 8),
        (8 * width, h // 8 - 1, w // 8 - 1),
        (1, h // 8 - 2, w // 8 - 2),
    ]
    assert [tuple(f.shape[1:]) for f in feats] == expected
    assert feats[-1] is logits  # the last feature is the output (used by feature matching)
    # Logits, not probabilities: the losses apply the sigmoid themselves.
    big, _ = net(torch.rand(1, channels, h, w) * 100)
    assert big.abs().max() > 0


def test_discriminator_receptive_field_is_70() -> None:
    """One patch logit must see exactly a 70x70 window of the input (a 70x70 PatchGAN)."""
    net = _seeded(lambda: Discriminator(3, width=4)).eval()
    x = torch.rand(1, 3, 160, 160, requires_grad=True)
    logits, _ = net(x)
    ci, cj = logits.shape[2] // 2, logits.shape[3] // 2
    logits[0, 0, ci, cj].backward()
    seen = x.grad.abs().sum(1)[0] > 0
    rows = torch.nonzero(seen.any(1)).flatten()
    cols = torch.nonzero(seen.any(0)).flatten()
    assert rows.max() - rows.min() + 1 == 70
    assert cols.max() - cols.min() + 1 == 70


def _check_gradients(net: torch.nn.Module, out: torch.Tensor) -> None:
    (out.float() * torch.randn_like(out)).sum().backward()
    params = dict(net.named_parameters())
    assert params, "network has no parameters"
    for name, p in params.items():
        assert p.grad is not None, f"no gradient reaches {name}"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient in {name}"
        if p.ndim > 1:  # every weight learns; biases right before an InstanceNorm get ~0
            assert p.grad.abs().sum() > 0, f"zero gradient for {name}"


def test_gradients_reach_every_parameter_edge_generator() -> None:
    net = _seeded(lambda: EdgeGenerator(width=4, blocks=2)).train()
    _check_gradients(net, net(torch.rand(2, 3, 24, 20)))


def test_gradients_reach_every_parameter_inpaint_generator() -> None:
    net = _seeded(lambda: InpaintGenerator(width=4, blocks=2)).train()
    _check_gradients(net, net(torch.rand(2, 4, 24, 20)))


def test_gradients_reach_every_parameter_discriminator() -> None:
    net = _seeded(lambda: Discriminator(2, width=4)).train()
    logits, feats = net(torch.rand(2, 2, 64, 64))
    _check_gradients(net, logits + sum(f.mean() for f in feats))


def test_generator_widths_and_blocks_are_constructor_arguments() -> None:
    small = EdgeGenerator(width=4, blocks=1)
    big = EdgeGenerator(width=8, blocks=3)
    assert len(small.middle) == 1 and len(big.middle) == 3
    assert count_parameters(big) > count_parameters(small)
    assert small.encoder[1].weight_orig.shape == (4, 3, 7, 7)
    assert InpaintGenerator(width=8, blocks=2).encoder[1].weight.shape == (8, 4, 7, 7)


def test_same_seed_same_weights_and_output() -> None:
    a = _seeded(lambda: InpaintGenerator(width=4, blocks=1), 3).eval()
    b = _seeded(lambda: InpaintGenerator(width=4, blocks=1), 3).eval()
    c = _seeded(lambda: InpaintGenerator(width=4, blocks=1), 4).eval()
    x = torch.rand(1, 4, 16, 16)
    assert torch.equal(a(x), b(x))
    assert not torch.equal(a(x), c(x))


# ----------------------------------------------------------------------------- exemplar blend


def _masked_input(h: int = 32, w: int = 40, channels: int = 5) -> torch.Tensor:
    """A pre-filled G2's input (channel 4: the mask, a box); 8 channels for model.exemplar."""
    x = torch.rand(2, channels, h, w)
    x[:, 4] = 0
    x[:, 4, 8:24, 12:30] = 1
    return x


def test_a_g2_gaining_exemplar_starts_as_the_fixed_blend_of_its_fill_and_the_copy() -> None:
    old = _seeded(lambda: InpaintGenerator(width=4, blocks=1, hole_fill="telea")).eval()
    torch.nn.init.normal_(old.decoder[-1].weight, 0, 0.1)  # a learned correction is kept
    new = InpaintGenerator(width=4, blocks=1, hole_fill="telea", exemplar=True).eval()
    assert new.in_channels == 8 and new.decoder[-1].weight.shape[0] == 4
    new.load_state_dict(adapt_inpaint_state(old.state_dict(), new))
    x = _masked_input(channels=8)
    w = EXEMPLAR_START_WEIGHT
    expected = w * old(x[:, :5]) + (1 - w) * x[:, 5:8]
    assert torch.allclose(new(x), expected, atol=1e-6)


def test_the_blend_weight_channel_chooses_between_the_fill_and_the_copy() -> None:
    net = _seeded(lambda: InpaintGenerator(width=4, blocks=1, hole_fill="telea", exemplar=True))
    net = net.eval()
    with torch.no_grad():
        net.decoder[-1].weight[3] = 0
        net.decoder[-1].bias[3] = -50  # weight 0: the PatchMatch copy
    x = _masked_input(channels=8)
    assert torch.allclose(net(x), x[:, 5:8], atol=1e-6)
    with torch.no_grad():
        net.decoder[-1].bias[3] = 50  # weight 1: G2's own corrected fill
    own = (x[:, :3] + torch.tanh(net.logits(x)[:, :3])).clamp(0, 1)
    assert torch.allclose(net(x), own, atol=1e-6)


def test_a_white_g2_gaining_exemplar_starts_as_the_blend_of_prefill_and_copy() -> None:
    white = _seeded(lambda: InpaintGenerator(width=4, blocks=1))
    new = InpaintGenerator(width=4, blocks=1, hole_fill="telea", exemplar=True).eval()
    new.load_state_dict(adapt_inpaint_state(white.state_dict(), new))
    x = _masked_input(channels=8)
    w = EXEMPLAR_START_WEIGHT
    assert torch.allclose(new(x), w * x[:, :3] + (1 - w) * x[:, 5:8], atol=1e-6)


def test_gradients_reach_every_parameter_of_an_exemplar_g2() -> None:
    net = _seeded(lambda: InpaintGenerator(width=4, blocks=1, hole_fill="telea", exemplar=True))
    _check_gradients(net.train(), net(_masked_input(channels=8)))


def test_hole_depth_ramp_rises_from_the_border_to_the_middle_of_a_box() -> None:
    mask = torch.zeros(1, 1, 100, 100)
    mask[..., 20:80, 20:80] = 1  # pixel (20 + k, 50) lies k + 1 px from the nearest known one
    ramp = hole_depth_ramp(mask)[0, 0, :, 50]
    assert torch.equal(ramp[:20], torch.zeros(20))  # known pixels
    assert torch.all(ramp[20 : 20 + DEEP_FROM] == 0)  # near the border: the blend as it was
    assert torch.all(ramp[20 + DEEP_TO : 80 - DEEP_TO] == 1)  # deep inside: the full shift
    assert torch.all(ramp[20:50].diff() >= 0) and 0 < ramp[20 + (DEEP_FROM + DEEP_TO) // 2] < 1


def test_hole_depth_ramp_leaves_thin_holes_alone() -> None:
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 10:50, 30 : 30 + 2 * DEEP_FROM - 1] = 1  # a stroke: no pixel DEEP_FROM px deep
    assert hole_depth_ramp(mask).max() == 0


def test_gaussian_lowpass_keeps_constants_and_smooths_noise() -> None:
    x = torch.full((1, 3, 20, 30), 0.4)
    assert torch.allclose(gaussian_lowpass(x, 4.0), x, atol=1e-6)
    noise = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    assert gaussian_lowpass(noise, 4.0).std() < noise.std() / 5


def _quarter_blend(**options: object) -> InpaintGenerator:
    """An exemplar G2 whose fill is its input fill (no correction) and whose blend weight is 1/4
    everywhere: its output is exactly the blend rule applied to the inputs."""
    net = _seeded(lambda: InpaintGenerator(4, 1, "telea", exemplar=True, **options))
    with torch.no_grad():
        net.decoder[-1].weight.zero_()
        net.decoder[-1].bias.zero_()
        net.decoder[-1].bias[3] = -torch.log(torch.tensor(3.0))
    return net.eval()


def test_deep_blend_moves_low_frequencies_to_g2s_fill_deep_in_the_hole_only() -> None:
    nets = {deep: _quarter_blend(deep_blend=deep) for deep in (False, True)}
    x = torch.zeros(1, 8, 96, 96)
    x[:, 4, 16:80, 16:80] = 1  # a 64 px box hole
    x[:, :3] = 0.2  # G2's fill
    x[:, 5:8] = 0.6  # the copy
    plain, deep = nets[False](x), nets[True](x)
    assert torch.allclose(plain, torch.full_like(plain, 0.25 * 0.2 + 0.75 * 0.6))
    # the middle of the hole: flat input, so all of it is low frequency: DEEP_OWN_SHARE of G2's
    middle = deep[0, :, 48, 48]
    expected = DEEP_OWN_SHARE * 0.2 + (1 - DEEP_OWN_SHARE) * 0.6
    assert torch.allclose(middle, torch.full_like(middle, expected), atol=1e-3)
    assert torch.equal(
        deep[..., 16:80, 16 : 16 + DEEP_FROM], plain[..., 16:80, 16 : 16 + DEEP_FROM]
    )
    assert torch.equal(deep[..., :16, :], plain[..., :16, :])  # known pixels: as they were


def test_deep_blend_keeps_the_copys_texture() -> None:
    net = _seeded(lambda: InpaintGenerator(4, 1, "telea", exemplar=True, deep_blend=True)).eval()
    with torch.no_grad():
        net.decoder[-1].weight.zero_()
        net.decoder[-1].bias.zero_()  # weight 1/2, G2's fill = its input
    x = torch.zeros(1, 8, 96, 96)
    x[:, 4, 16:80, 16:80] = 1
    x[:, :3] = 0.5
    stripes = 0.5 + 0.2 * torch.tensor([1.0, -1.0]).repeat(48)  # 1 px stripes: high frequency
    x[:, 5:8] = stripes.view(1, 1, 1, 96)
    out = net(x)[0, 0, 48, 40:56]
    assert torch.allclose(out - 0.5, 0.5 * (stripes[40:56] - 0.5), atol=2e-3)


def test_deep_blend_leaves_a_hole_without_deep_pixels_as_the_plain_blend() -> None:
    deep = _seeded(lambda: InpaintGenerator(4, 1, "telea", exemplar=True, deep_blend=True))
    plain = _seeded(lambda: InpaintGenerator(4, 1, "telea", exemplar=True))
    x = torch.rand(1, 8, 64, 64, generator=torch.Generator().manual_seed(3))
    x[:, 4] = 0
    x[:, 4, 20:30, 5:60] = 1  # 10 px wide: no pixel lies DEEP_FROM px deep
    with torch.no_grad():
        assert torch.equal(deep.eval()(x), plain.eval()(x))


def test_gradients_reach_every_parameter_of_a_deep_blend_g2() -> None:
    net = _seeded(lambda: InpaintGenerator(4, 1, "telea", exemplar=True, deep_blend=True))
    _check_gradients(net.train(), net(_masked_input(channels=8)))


def test_copy_detail_puts_back_the_copys_fine_texture_and_nothing_else() -> None:
    nets = {c: _quarter_blend(copy_detail=c) for c in (0.0, 1.0)}
    x = torch.zeros(1, 8, 64, 96)
    x[:, 4, 16:48, 16:80] = 1
    x[:, :3] = 0.5  # G2's fill: flat
    stripes = 0.5 + 0.2 * torch.tensor([1.0, -1.0]).repeat(48)  # 1 px stripes: high frequency
    x[:, 5:8] = stripes.view(1, 1, 1, 96)
    plain, detailed = nets[0.0](x)[0, 0, 32, 40:56], nets[1.0](x)[0, 0, 32, 40:56]
    # the blend gives the stripes 3/4 of their contrast, copy_detail 1 all of it
    assert torch.allclose(plain - 0.5, 0.75 * (stripes[40:56] - 0.5), atol=1e-5)
    assert torch.allclose(detailed - 0.5, stripes[40:56] - 0.5, atol=2e-3)
    x[:, 5:8] = 0.3  # a flat copy has no texture to put back: the plain blend
    assert torch.allclose(nets[1.0](x), nets[0.0](x), atol=1e-6)


def test_copy_detail_sigma_sets_how_coarse_a_texture_is_put_back() -> None:
    x = torch.zeros(1, 8, 64, 96)
    x[:, 4, 16:48, 16:80] = 1
    x[:, :3] = 0.5
    wave = torch.sin(torch.arange(96) * (2 * math.pi / 12))  # 12 px period
    x[:, 5:8] = 0.5 + 0.2 * wave.view(1, 1, 1, 96)

    def contrast(**options: object) -> float:
        """The output's share of the copy's contrast, over two whole periods."""
        with torch.no_grad():
            row = _quarter_blend(**options)(x)[0, 0, 32, 36:60] - 0.5
        return float((row * wave[36:60]).sum() / (0.2 * wave[36:60].square().sum()))

    # a Gaussian of sigma s keeps exp(-2 (pi s / 12)^2) of this wave: 0.58 for 2 px, 0.11 for 4,
    # so copy_detail 1 adds back 0.42 resp. 0.89 of the 1/4 that the blend left out
    assert contrast() == pytest.approx(0.75, abs=1e-3)
    assert contrast(copy_detail=1.0) == pytest.approx(0.75 + 0.25 * 0.42, abs=0.01)
    assert contrast(copy_detail=1.0, copy_detail_sigma=4.0) == pytest.approx(
        0.75 + 0.25 * 0.89, abs=0.01
    )


def test_copy_detail_needs_exemplar() -> None:
    with pytest.raises(ValueError, match="copy_detail .* needs exemplar"):
        InpaintGenerator(width=4, blocks=1, hole_fill="telea", copy_detail=1.0)


def test_deep_blend_needs_exemplar() -> None:
    with pytest.raises(ValueError, match="deep_blend .* needs exemplar"):
        InpaintGenerator(width=4, blocks=1, hole_fill="telea", deep_blend=True)


def test_exemplar_needs_a_prefilled_g2() -> None:
    with pytest.raises(ValueError, match="exemplar needs a pre-filled G2"):
        InpaintGenerator(width=4, blocks=1, hole_fill="white", exemplar=True)


# ----------------------------------------------------------------------------- patch attention


def test_a_g2_gaining_attention_starts_as_exactly_the_same_g2() -> None:
    old = _seeded(lambda: InpaintGenerator(width=4, blocks=1, hole_fill="telea")).eval()
    new = InpaintGenerator(width=4, blocks=1, hole_fill="telea", attention=True).eval()
    new.load_state_dict(adapt_inpaint_state(old.state_dict(), new))
    x = _masked_input()
    assert torch.equal(old(x), new(x))
    torch.nn.init.normal_(new.attend.out.weight)  # once the block has learned something
    change = (old(x) - new(x)).abs().mean(1)[0]
    # It acts on the hole (the decoder's instance norms carry a little of it everywhere).
    assert change[8:24, 12:30].mean() > 2 * change[:, :8].mean()


def test_gradients_reach_every_parameter_of_an_attention_g2() -> None:
    net = _seeded(lambda: InpaintGenerator(width=4, blocks=1, hole_fill="telea", attention=True))
    torch.nn.init.normal_(net.attend.out.weight)  # zero at init: q/k learn from the next step
    _check_gradients(net.train(), net(_masked_input()))


def test_an_attention_g2_runs_under_bf16_autocast() -> None:
    net = _seeded(lambda: InpaintGenerator(width=4, blocks=1, hole_fill="telea", attention=True))
    torch.nn.init.normal_(net.attend.out.weight)
    x = _masked_input()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # as train.amp=bf16 runs it
        out = net(x)
    torch.testing.assert_close(out.float(), net(x), atol=0.05, rtol=0)


def test_attention_needs_the_mask_channel() -> None:
    with pytest.raises(ValueError, match="pre-filled"):
        InpaintGenerator(width=4, blocks=1, hole_fill="white", attention=True)


def _identity_attention(dim: int) -> PatchAttention:
    att = PatchAttention(dim, key_dim=dim, scale=100.0)
    for conv in (att.query, att.key, att.out):
        torch.nn.init.zeros_(conv.bias)
        conv.weight.data = torch.eye(dim).view(dim, dim, 1, 1).clone()
    return att


def test_patch_attention_copies_the_most_similar_known_features_into_the_hole() -> None:
    f = torch.zeros(1, 3, 16, 24)
    f[0, 0, :, :8] = 1  # known texture A on the left
    f[0, 1, :, 8:16] = 1  # known texture B in the middle
    f[0, 1, :, 16:] = 0.6  # the hole's own features look like B, faintly
    f[0, 2, :, 16:] = 0.1
    hole = torch.zeros(1, 1, 16, 24)
    hole[..., 16:] = 1
    out = _identity_attention(3)(f, hole)
    assert torch.equal(out[..., :16], f[..., :16])  # known features are untouched
    inside = out[0, :, 2:14, 18:22] - f[0, :, 2:14, 18:22]  # away from the coarse cells' seam
    torch.testing.assert_close(inside[1], torch.ones(12, 4), atol=1e-3, rtol=0)  # B copied
    assert inside[0].abs().max() < 1e-3  # A is not


def test_patch_attention_never_copies_from_the_hole() -> None:
    f = torch.rand(1, 4, 16, 16)
    hole = torch.zeros(1, 1, 16, 16)
    hole[..., 4:12, 4:12] = 1
    poisoned = f.clone()
    poisoned[..., 4:12, 4:12] = 1e3  # huge values inside the hole must not travel
    out = _identity_attention(4)(poisoned, hole)
    assert (out - poisoned)[..., 6:10, 6:10].abs().max() <= 1.0 + 1e-4  # a mean of known values
    all_hole = _identity_attention(4)(f, torch.ones(1, 1, 16, 16))  # nothing known: no copy
    assert torch.equal(all_hole, f)


@pytest.mark.parametrize("h,w", [(8, 8), (128, 128), (129, 131), (750, 1000)])
def test_patch_attention_keeps_its_key_count_bounded(h: int, w: int) -> None:
    s = PatchAttention.stride_for(h, w)
    assert s >= 2 and -(-h // s) * -(-w // s) <= PatchAttention.MAX_KEYS
    assert s == 2 or -(-h // (s // 2)) * -(-w // (s // 2)) > PatchAttention.MAX_KEYS
    if h * w < 20000:  # odd sizes come back at their own size
        f = torch.rand(1, 8, h, w)
        assert PatchAttention(8)(f, torch.ones(1, 1, h, w)).shape == f.shape


# ----------------------------------------------------------------------------- reference checkpoints
#
# The key names and shapes below are written out by hand from knazeri/edge-connect's
# src/networks.py (EdgeGenerator / InpaintGenerator / ResnetBlock / Discriminator at the
# released size: 64 channels, 8 residual blocks), independently of our modules, so a renamed
# layer or a changed index in our nn.Sequentials fails this test.


def _sn_conv(prefix: str, out_c: int, in_c: int, k: int, bias: bool) -> dict[str, tuple]:
    keys = {
        f"{prefix}.weight_orig": (out_c, in_c, k, k),
        f"{prefix}.weight_u": (out_c,),
        f"{prefix}.weight_v": (in_c * k * k,),
    }
    if bias:
        keys[f"{prefix}.bias"] = (out_c,)
    return keys


def _sn_deconv(prefix: str, in_c: int, out_c: int, k: int) -> dict[str, tuple]:
    # Spectral norm of a ConvTranspose2d normalises along dim 1 (its output channels).
    return {
        f"{prefix}.weight_orig": (in_c, out_c, k, k),
        f"{prefix}.weight_u": (out_c,),
        f"{prefix}.weight_v": (in_c * k * k,),
        f"{prefix}.bias": (out_c,),
    }


def _conv(prefix: str, out_c: int, in_c: int, k: int, transposed: bool = False) -> dict:
    shape = (in_c, out_c, k, k) if transposed else (out_c, in_c, k, k)
    return {f"{prefix}.weight": shape, f"{prefix}.bias": (out_c,)}


def reference_generator_keys(in_c: int, out_c: int, sn: bool, blocks: int = 8) -> dict:
    keys: dict[str, tuple] = {}
    if sn:
        keys |= _sn_conv("encoder.1", 64, in_c, 7, bias=True)
        keys |= _sn_conv("encoder.4", 128, 64, 4, bias=True)
        keys |= _sn_conv("encoder.7", 256, 128, 4, bias=True)
        for i in range(blocks):
            keys |= _sn_conv(f"middle.{i}.conv_block.1", 256, 256, 3, bias=False)
            keys |= _sn_conv(f"middle.{i}.conv_block.5", 256, 256, 3, bias=False)
        keys |= _sn_deconv("decoder.0", 256, 128, 4)
        keys |= _sn_deconv("decoder.3", 128, 64, 4)
    else:
        keys |= _conv("encoder.1", 64, in_c, 7)
        keys |= _conv("encoder.4", 128, 64, 4)
        keys |= _conv("encoder.7", 256, 128, 4)
        for i in range(blocks):
            keys |= _conv(f"middle.{i}.conv_block.1", 256, 256, 3)
            keys |= _conv(f"middle.{i}.conv_block.5", 256, 256, 3)
        keys |= _conv("decoder.0", 128, 256, 4, transposed=True)
        keys |= _conv("decoder.3", 64, 128, 4, transposed=True)
    keys |= _conv("decoder.7", out_c, 64, 7)  # the last conv never has spectral norm
    return keys


def reference_discriminator_keys(in_c: int) -> dict:
    keys: dict[str, tuple] = {}
    chans = [in_c, 64, 128, 256, 512, 1]
    for i in range(5):
        keys |= _sn_conv(f"conv{i + 1}.0", chans[i + 1], chans[i], 4, bias=False)
    return keys


CASES = {
    "EdgeModel_gen": (lambda: EdgeGenerator(), reference_generator_keys(3, 1, sn=True)),
    "InpaintingModel_gen": (lambda: InpaintGenerator(), reference_generator_keys(4, 3, sn=False)),
    "EdgeModel_dis": (lambda: Discriminator(2), reference_discriminator_keys(2)),
    "InpaintingModel_dis": (lambda: Discriminator(3), reference_discriminator_keys(3)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_default_architecture_has_the_reference_keys(name: str) -> None:
    make, expected = CASES[name]
    ours = {k: tuple(v.shape) for k, v in make().state_dict().items()}
    assert ours == expected


def _reference_file(module: torch.nn.Module, prefix: str = "") -> dict:
    """What the reference's torch.save({'iteration': n, 'generator': sd}) holds, through a file."""
    sd = {prefix + k: v.clone() for k, v in module.state_dict().items()}
    if isinstance(module, Discriminator):
        # The reference registers conv1 twice (self.conv1 = self.features = ...).
        sd |= {
            prefix + "features." + k[len("conv1.") :]: v.clone()
            for k, v in module.state_dict().items()
            if k.startswith("conv1.")
        }
        doc = {"discriminator": sd}
    else:
        doc = {"iteration": 1234, "generator": sd}
    buf = io.BytesIO()
    torch.save(doc, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def _forward(net: torch.nn.Module, name: str) -> torch.Tensor:
    torch.manual_seed(99)
    in_c = {"EdgeModel_gen": 3, "InpaintingModel_gen": 4, "EdgeModel_dis": 2}.get(name, 3)
    out = net(torch.rand(1, in_c, 32, 32))
    return out[0] if isinstance(out, tuple) else out


@pytest.mark.parametrize(
    "name,prefix",
    [(name, "") for name in sorted(CASES)]
    + [("EdgeModel_gen", "module."), ("InpaintingModel_dis", "module.")],  # DataParallel files
)
def test_load_reference_checkpoint_matches_forward(name: str, prefix: str) -> None:
    make, expected = CASES[name]
    source = _seeded(make, 1).eval()
    ckpt = _reference_file(source, prefix)
    key = "discriminator" if "dis" in name else "generator"
    assert set(ckpt[key]) >= {prefix + k for k in expected}
    if key == "discriminator":
        assert prefix + "features.0.weight_orig" in ckpt[key]

    target = _seeded(make, 2).eval()
    with torch.no_grad():
        before = _forward(target, name)
        want = _forward(source, name)
        assert not torch.allclose(before, want)  # different seeds: the load has to do the work
        load_reference(target, ckpt)
        got = _forward(target, name)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_reference_state_dict_drops_features_and_prefix() -> None:
    d = _seeded(lambda: Discriminator(3, width=4))
    ckpt = _reference_file(d, "module.")
    sd = reference_state_dict(ckpt, "discriminator")
    assert not any(k.startswith(("features.", "module.")) for k in sd)
    assert set(sd) == set(d.state_dict())


def test_load_reference_errors() -> None:
    g = EdgeGenerator(width=4, blocks=1)
    with pytest.raises(KeyError, match="generator"):
        load_reference(g, {"discriminator": {}})
    with pytest.raises(KeyError):
        load_reference(g, {"generator": 3})
    # Weights of another architecture must not load silently.
    other = {"generator": EdgeGenerator(width=8, blocks=1).state_dict()}
    with pytest.raises(RuntimeError):
        load_reference(g, other)


def test_load_reference_checkpoint_from_torch_0_4() -> None:
    """The oldest reference files store spectral norm as weight_orig, weight, weight_u (no _v)."""
    source = _seeded(lambda: EdgeGenerator(width=4, blocks=1), 1).eval()
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        want = source(x)  # in eval mode this also sets each module's normalised .weight
    old: dict[str, torch.Tensor] = {}
    for name, module in source.named_modules():
        prefix = f"{name}." if name else ""
        for key, value in module.state_dict(prefix=prefix, keep_vars=False).items():
            if key.count(".") == prefix.count(".") and not key.endswith("weight_v"):
                old[key] = value.clone()
        if hasattr(module, "weight_orig"):
            old[prefix + "weight"] = module.weight.detach().clone()
    assert not any(k.endswith("weight_v") for k in old)
    assert "encoder.1.weight" in old and "encoder.1.weight_orig" in old
    target = _seeded(lambda: EdgeGenerator(width=4, blocks=1), 2).eval()
    load_reference(target, {"generator": old})
    with torch.no_grad():
        got = target(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- frozen reference fixture
#
# tests/fixtures/edge-connect-tiny holds checkpoints written by the reference repository's own
# code (scripts/make_reference_fixture.py: its networks at 1/16 width, one residual block, saved
# as its models.py saves them) and the outputs its modules computed on fixed inputs. Loading
# them into edgefill's modules must reproduce those outputs: unlike the test above, nothing here
# is built from edgefill's modules, so a drift from the reference fails.

FIXTURE = Path(__file__).parent / "fixtures" / "edge-connect-tiny"
REFERENCE_NETS = {
    "EdgeModel_gen": lambda: EdgeGenerator(width=4, blocks=1),
    "InpaintingModel_gen": lambda: InpaintGenerator(width=4, blocks=1),
    "EdgeModel_dis": lambda: Discriminator(2, width=4),  # input: gray, edges (the reference)
    "InpaintingModel_dis": lambda: Discriminator(3, width=4),
}


def _outputs(net: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    out = net(x)
    if isinstance(out, tuple):  # ours returns logits; the reference (use_sigmoid) the sigmoid
        return [torch.sigmoid(out[0]), *out[1]]
    return [out]


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("name", sorted(REFERENCE_NETS))
def test_frozen_reference_checkpoints_give_the_reference_outputs(name: str, mode: str) -> None:
    expected = torch.load(FIXTURE / "expected.pt", weights_only=True)[name]
    ckpt = torch.load(FIXTURE / f"{name}.pth", weights_only=True)
    net = load_reference(_seeded(REFERENCE_NETS[name], 5), ckpt)
    net.train(mode == "train")  # train: spectral norm runs its power iteration
    with torch.no_grad():
        got = _outputs(net, expected["input"])
    assert len(got) == len(expected[mode])
    for g, want in zip(got, expected[mode], strict=True):
        # Scaled to the tensor: the discriminators' deep features reach 1e5, and fp32 sums taken
        # in another order (AVX2 vs AVX-512 kernels) differ by a few ulps of that scale, also
        # where a feature cancels to near 0. A drift from the reference is off by far more.
        scale = max(1.0, want.abs().max().item())
        torch.testing.assert_close(g, want, rtol=1e-4, atol=1e-5 * scale)
