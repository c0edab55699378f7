"""Training losses: adversarial (nsgan / lsgan / hinge), feature matching, L1, perceptual, style, TV."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgefill.vgg import VGG16Features

# VGG16 analogues of the reference's VGG19 layers: content at relu{k}_1, style at the block ends.
PERCEPTUAL_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
STYLE_LAYERS = ("relu2_2", "relu3_3", "relu4_3", "relu5_2")


def _called_real(kind: str, logits: torch.Tensor) -> torch.Tensor:
    """Per-patch loss of calling these logits real (a discriminator on real patches; nsgan and
    lsgan generators on fakes)."""
    if kind == "nsgan":
        return F.softplus(-logits)  # = BCE-with-logits against 1, stable for large logits
    if kind == "lsgan":
        return (torch.sigmoid(logits) - 1) ** 2
    if kind == "hinge":
        return F.relu(1 - logits)
    raise ValueError(f"unknown GAN loss {kind!r}")


def _called_fake(kind: str, logits: torch.Tensor) -> torch.Tensor:
    """Per-patch loss of calling these logits fake."""
    if kind == "nsgan":
        return F.softplus(logits)
    if kind == "lsgan":
        return torch.sigmoid(logits) ** 2
    if kind == "hinge":
        return F.relu(1 + logits)
    raise ValueError(f"unknown GAN loss {kind!r}")


def hole_patches(mask: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """1 where a discriminator patch (a cell of the logits' grid) holds any hole pixel, else 0:
    ``mask`` (Bx1xHxW) max-pooled to the logits' size (LaMa's mask-as-fake-target)."""
    return F.adaptive_max_pool2d(mask.to(logits.dtype), logits.shape[-2:])


def adversarial_d(
    kind: str,
    real_logits: torch.Tensor,
    fake_logits: torch.Tensor,
    hole: torch.Tensor | None = None,
) -> torch.Tensor:
    """Discriminator loss on real and (detached) fake patch logits, averaged as in the reference.

    ``hole`` (Bx1xHxW, 1 = missing): only the patches of a fake that hold hole pixels
    (``hole_patches``) are fake; the others are the photo's own pixels and count as real.
    None: every patch of a fake is fake (the reference)."""
    fake = _called_fake(kind, fake_logits)
    if hole is not None:
        cells = hole_patches(hole, fake_logits)
        fake = cells * fake + (1 - cells) * _called_real(kind, fake_logits)
    return (_called_real(kind, real_logits).mean() + fake.mean()) / 2


def adversarial_g(
    kind: str, fake_logits: torch.Tensor, hole: torch.Tensor | None = None
) -> torch.Tensor:
    """Generator loss: make the discriminator call the fakes real. ``hole`` (as in
    ``adversarial_d``): averaged over the patches that hold hole pixels only (a generator cannot
    change the others)."""
    per_patch = -fake_logits if kind == "hinge" else _called_real(kind, fake_logits)
    if hole is None:
        return per_patch.mean()
    cells = hole_patches(hole, fake_logits)
    return (per_patch * cells).sum() / cells.sum().clamp_min(1.0)


def feature_matching(
    fake_feats: list[torch.Tensor], real_feats: list[torch.Tensor]
) -> torch.Tensor:
    """Sum over discriminator layers of L1 between fake and (detached) real activations."""
    return sum(F.l1_loss(f, r.detach()) for f, r in zip(fake_feats, real_feats, strict=True))  # type: ignore[return-value]


def masked_l1(
    output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, hole_weight: float = 1.0
) -> torch.Tensor:
    """L1 over the whole image divided by the hole fraction (the reference's normalisation),
    the hole's pixels weighted by ``hole_weight`` (1: all pixels alike, as the reference).

    This weighs a batch with small holes as much as one with large holes.
    """
    diff = (output - target).abs()
    if hole_weight != 1.0:
        diff = diff * (1 + (hole_weight - 1) * mask)
    return diff.mean() / mask.mean().clamp_min(1e-3)


def hole_gradient_l1(
    output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """L1 between the horizontal and vertical pixel differences of ``output`` and ``target``,
    over the neighbour pairs that touch the hole (mask 1), per pair. Unlike pixel L1, which a
    blurred step satisfies half-way, it asks for the step itself: where the edge guide says where
    a step lies, following the guide is the way to lower it."""
    m = mask.float()
    total = output.new_zeros(())
    pairs = output.new_zeros(())
    for dim in (-1, -2):
        n = output.shape[dim] - 1
        d_out = output.narrow(dim, 1, n) - output.narrow(dim, 0, n)
        d_tgt = target.narrow(dim, 1, n) - target.narrow(dim, 0, n)
        touch = torch.maximum(m.narrow(dim, 1, n), m.narrow(dim, 0, n))
        total = total + ((d_out - d_tgt).abs() * touch).sum()
        pairs = pairs + touch.sum() * output.shape[1]
    return total / pairs.clamp_min(1.0)


def balanced_edge_bce(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, eps: float = 1e-4
) -> torch.Tensor:
    """BCE of edge probabilities against {0, 1} edges over the hole (mask 1), each class weighted
    by the other's share of the hole's pixels (HED, Xie & Tu 2015): edges are a tenth of them,
    so unweighted BCE would be won by predicting none."""
    p = pred.float().clamp(eps, 1 - eps)
    t, m = target.float(), mask.float()
    pos = (t * m).sum()
    beta = 1 - pos / m.sum().clamp_min(1.0)  # the share of non-edge pixels
    nll = -(beta * t * torch.log(p) + (1 - beta) * (1 - t) * torch.log(1 - p))
    return (nll * m).sum() / m.sum().clamp_min(1.0)


def gram(x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    f = x.reshape(b, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (
        x[..., :, 1:] - x[..., :, :-1]
    ).abs().mean()


class VGGLosses(nn.Module):
    """Perceptual (L1 of VGG activations) and style (L1 of Gram matrices) losses, one VGG pass."""

    def __init__(self, vgg: VGG16Features):
        super().__init__()
        self.vgg = vgg.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> VGGLosses:  # the VGG always stays in eval mode
        super().train(mode)
        self.vgg.eval()
        return self

    def forward(
        self, output: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        names = tuple(dict.fromkeys(PERCEPTUAL_LAYERS + STYLE_LAYERS))
        fo = self.vgg(output, names)
        with torch.no_grad():
            ft = self.vgg(target, names)
        perceptual = sum(F.l1_loss(fo[n], ft[n]) for n in PERCEPTUAL_LAYERS)
        # Gram matrices in float32 even under autocast: they overflow in half precision.
        style = sum(F.l1_loss(gram(fo[n].float()), gram(ft[n].float())) for n in STYLE_LAYERS)
        return perceptual, style  # type: ignore[return-value]
