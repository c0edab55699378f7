"""Loss terms: exact values on simple inputs; each term finite and decreasing when trained alone."""

from __future__ import annotations

import math

import pytest
import torch

from edgefill import losses as L
from edgefill.networks import Discriminator, InpaintGenerator
from edgefill.vgg import VGG16Features

KINDS = ("nsgan", "lsgan", "hinge")


@pytest.fixture(autouse=True)
def one_thread():  # noqa: ANN201  tiny tensors: more threads only add overhead
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_adversarial_values_at_zero_logits() -> None:
    z = torch.zeros(2, 1, 4, 4)
    assert L.adversarial_d("nsgan", z, z).item() == pytest.approx(math.log(2))
    assert L.adversarial_g("nsgan", z).item() == pytest.approx(math.log(2))
    assert L.adversarial_d("lsgan", z, z).item() == pytest.approx(0.25)
    assert L.adversarial_g("lsgan", z).item() == pytest.approx(0.25)
    assert L.adversarial_d("hinge", z, z).item() == pytest.approx(1.0)
    assert L.adversarial_g("hinge", z).item() == pytest.approx(0.0)


@pytest.mark.parametrize("kind", KINDS)
def test_adversarial_d_prefers_correct_logits(kind: str) -> None:
    big = torch.full((1, 1, 2, 2), 5.0)
    good = L.adversarial_d(kind, big, -big)
    bad = L.adversarial_d(kind, -big, big)
    assert good < bad
    assert L.adversarial_g(kind, big) < L.adversarial_g(kind, -big)


@pytest.mark.parametrize("kind", KINDS)
def test_hole_target_counts_patches_without_hole_as_real(kind: str) -> None:
    """With a ``hole``, a fake's patches outside it are scored as real ones, and the generator's
    term ignores them; all-hole patches give the plain losses. (A hole at the logits' size is
    its own patch map.)"""
    gen = torch.Generator().manual_seed(0)
    real, logits = torch.randn(2, 1, 4, 4, generator=gen), torch.randn(2, 1, 4, 4, generator=gen)
    none, every = torch.zeros_like(logits), torch.ones_like(logits)
    as_real = (L._called_real(kind, real).mean() + L._called_real(kind, logits).mean()) / 2
    assert L.adversarial_d(kind, real, logits, none).item() == pytest.approx(as_real.item())
    assert L.adversarial_d(kind, real, logits, every).item() == pytest.approx(
        L.adversarial_d(kind, real, logits).item()
    )
    assert L.adversarial_g(kind, logits, every).item() == pytest.approx(
        L.adversarial_g(kind, logits).item()
    )
    half = torch.zeros_like(logits)
    half[..., :2, :] = 1
    changed = logits.clone()
    changed[..., 2:, :] += 3.0  # only patches outside the hole
    assert L.adversarial_g(kind, changed, half).item() == pytest.approx(
        L.adversarial_g(kind, logits, half).item()
    )


def test_hole_patches_marks_cells_with_any_hole_pixel() -> None:
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 5, 9] = 1  # one pixel, in cell (1, 2) of a 4x4 grid
    cells = L.hole_patches(mask, torch.zeros(1, 1, 4, 4))
    assert cells.shape == (1, 1, 4, 4) and cells.sum() == 1 and cells[0, 0, 1, 2] == 1


def test_unknown_gan_loss() -> None:
    with pytest.raises(ValueError, match="unknown GAN loss"):
        L.adversarial_g("wgan", torch.zeros(1))


def test_masked_l1_normalises_by_hole_fraction() -> None:
    out, target = torch.ones(1, 3, 4, 4), torch.zeros(1, 3, 4, 4)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :] = 1  # half the image
    assert L.masked_l1(out, target, mask).item() == pytest.approx(2.0)


def test_masked_l1_weighs_the_hole_by_hole_weight() -> None:
    """0 (LaMa) ignores the hole's pixels, 1 is the reference, 3 counts the hole three times."""
    target = torch.zeros(1, 3, 4, 4)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :] = 1  # half the image
    in_hole = torch.zeros(1, 3, 4, 4)
    in_hole[..., :2, :] = 1.0  # wrong in the hole only
    known = 1.0 - in_hole  # wrong outside the hole only
    assert L.masked_l1(in_hole, target, mask, 0.0).item() == 0.0
    assert L.masked_l1(known, target, mask, 0.0).item() == pytest.approx(1.0)
    assert L.masked_l1(in_hole, target, mask, 1.0).item() == pytest.approx(1.0)
    assert L.masked_l1(in_hole, target, mask, 3.0).item() == pytest.approx(3.0)
    assert L.masked_l1(known, target, mask, 3.0).item() == pytest.approx(1.0)


def test_balanced_edge_bce_weighs_classes_and_sees_only_the_hole() -> None:
    target = torch.zeros(1, 1, 8, 8)
    target[..., 2, :] = 1.0  # one edge row: 1/8 of the pixels
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4, :] = 1.0  # the hole holds the edge row: 1/4 of its pixels
    assert float(L.balanced_edge_bce(target, target, mask)) < 1e-3
    # Outside the hole nothing counts.
    noisy = target.clone()
    noisy[..., 6:, :] = 0.7
    assert torch.equal(
        L.balanced_edge_bce(noisy, target, mask), L.balanced_edge_bce(target, target, mask)
    )
    # Balanced: missing every edge costs as much as flagging every non-edge (weights 3/4, 1/4).
    none, all_ = torch.full_like(target, 0.01), torch.full_like(target, 0.99)
    torch.testing.assert_close(
        L.balanced_edge_bce(none, target, mask), L.balanced_edge_bce(all_, target, mask)
    )
    expected = -0.75 * 0.25 * math.log(0.01) - 0.25 * 0.75 * math.log(0.99)
    assert float(L.balanced_edge_bce(none, target, mask)) == pytest.approx(expected, rel=1e-4)


def test_gram_and_tv_values() -> None:
    x = torch.arange(8.0).reshape(1, 2, 2, 2)
    f = x.reshape(1, 2, 4)
    assert torch.allclose(L.gram(x), f @ f.transpose(1, 2) / 8)
    ramp = torch.arange(4.0).repeat(4, 1)[None, None]  # +1 per column, constant per row
    assert L.total_variation(ramp).item() == pytest.approx(1.0)


def test_hole_gradient_l1_asks_for_the_step_inside_the_hole() -> None:
    """A step the photo has inside the hole: a sharp fill scores 0, a blurred one does not, and
    differences between pixel pairs away from the hole do not count."""
    photo = torch.zeros(1, 1, 6, 6)
    photo[..., 3:] = 1.0  # a vertical step between columns 2 and 3
    hole = torch.zeros(1, 1, 6, 6)
    hole[..., 2:4] = 1.0  # columns 2-3: the step lies inside the hole
    assert L.hole_gradient_l1(photo, photo, hole).item() == 0.0
    blurred = photo.clone()
    blurred[..., 2] = 1 / 3
    blurred[..., 3] = 2 / 3  # a ramp from column 1 to 4: three steps of 1/3
    # Horizontal pairs touching the hole per row: (1,2), (2,3), (3,4); their differences are
    # 1/3, 1/3, 1/3 against the photo's 0, 1, 0; vertical pairs in columns 2-3 are all flat.
    touching = 6 * 3 + 5 * 2  # horizontal pairs + vertical pairs that touch the hole
    expected = 6 * (1 / 3 + 2 / 3 + 1 / 3) / touching
    assert L.hole_gradient_l1(blurred, photo, hole).item() == pytest.approx(expected)
    far = photo.clone()
    far[..., 0, 0] = 0.5  # away from the hole: not counted
    assert L.hole_gradient_l1(far, photo, hole).item() == 0.0


def test_vgg_losses_zero_on_identical_and_vgg_stays_frozen() -> None:
    torch.manual_seed(0)
    vl = L.VGGLosses(VGG16Features()).train()
    assert not vl.vgg.training
    assert not any(p.requires_grad for p in vl.parameters())
    x = torch.rand(1, 3, 32, 32)
    p, s = vl(x, x)
    assert p.item() == 0 and s.item() == 0


# ----------------------------------------------------------------------------- training alone


def _fixed_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    image = torch.rand(2, 3, 32, 32, generator=g)
    mask = torch.zeros(2, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    x = torch.cat([image * (1 - mask) + mask, torch.zeros(2, 1, 32, 32)], 1)
    return x, image, mask


def _train(loss_fn, params, steps: int = 15, lr: float = 1e-3) -> list[float]:  # noqa: ANN001
    opt = torch.optim.Adam(params, lr=lr, betas=(0.5, 0.9))
    values = []
    for _ in range(steps):
        loss = loss_fn()
        assert torch.isfinite(loss), loss
        values.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return values


def _decreased(values: list[float]) -> bool:
    first, last = values[0], min(values[-3:])
    return last < first - 0.05 * abs(first) - 1e-6


@pytest.fixture
def nets() -> tuple[InpaintGenerator, Discriminator]:
    torch.manual_seed(0)
    return InpaintGenerator(4, 1), Discriminator(3, width=8)


@pytest.mark.parametrize("kind", KINDS)
def test_generator_adversarial_decreases(kind: str, nets) -> None:  # noqa: ANN001
    g, d = nets
    d.requires_grad_(False)
    x, _, _ = _fixed_batch()
    values = _train(lambda: L.adversarial_g(kind, d(g(x))[0]), g.parameters())
    assert _decreased(values), values


@pytest.mark.parametrize("kind", KINDS)
def test_discriminator_adversarial_decreases(kind: str, nets) -> None:  # noqa: ANN001
    g, d = nets
    x, image, _ = _fixed_batch()
    with torch.no_grad():
        fake = g(x)
    values = _train(lambda: L.adversarial_d(kind, d(image)[0], d(fake)[0]), d.parameters(), lr=1e-3)
    assert _decreased(values), values


def test_feature_matching_decreases(nets) -> None:  # noqa: ANN001
    g, d = nets
    d.requires_grad_(False)
    x, image, _ = _fixed_batch()

    def loss() -> torch.Tensor:
        with torch.no_grad():
            real = d(image)[1]
        return L.feature_matching(d(g(x))[1], real)

    values = _train(loss, g.parameters())
    assert _decreased(values), values


def test_l1_and_tv_decrease(nets) -> None:  # noqa: ANN001
    g, _ = nets
    x, image, mask = _fixed_batch()
    assert _decreased(_train(lambda: L.masked_l1(g(x), image, mask), g.parameters(), lr=3e-3))
    torch.manual_seed(1)
    g = InpaintGenerator(4, 1)
    assert _decreased(_train(lambda: L.total_variation(g(x)), g.parameters(), lr=3e-3))


@pytest.mark.parametrize("which", ["perceptual", "style"])
def test_vgg_losses_decrease(which: str, nets) -> None:  # noqa: ANN001
    g, _ = nets
    torch.manual_seed(0)
    vl = L.VGGLosses(VGG16Features())
    x, image, mask = _fixed_batch()

    def loss() -> torch.Tensor:
        out = g(x)
        p, s = vl(out * mask + image * (1 - mask), image)
        return p if which == "perceptual" else 1e3 * s

    values = _train(loss, g.parameters(), lr=3e-3)
    assert _decreased(values), values
