"""Image-quality metrics on float tensors N3HW in [0, 1]: PSNR, SSIM, L1 and LPIPS (VGG16, v0.1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgefill.vgg import LPIPS_LAYERS, VGG16Features, load_vgg_state


def psnr(
    output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-image PSNR in dB (peak 1.0); with ``mask`` (N1HW) only those pixels count."""
    err = (output - target) ** 2
    if mask is None:
        mse = err.flatten(1).mean(1)
    else:
        m = mask.expand_as(err)
        mse = (err * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))


def l1(
    output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-image mean absolute error (fraction of the range; x100 for the 'L1 %' of papers)."""
    err = (output - target).abs()
    if mask is None:
        return err.flatten(1).mean(1)
    m = mask.expand_as(err)
    return (err * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = (g / g.sum()).float()
    return (g[:, None] @ g[None, :])[None, None]


def ssim_map(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SSIM map (Wang et al. 2004, 11x11 Gaussian sigma 1.5) averaged over channels, N1HW (valid)."""
    c = output.shape[1]
    win = _gaussian_window().to(output).expand(c, 1, 11, 11)
    c1, c2 = 0.01**2, 0.03**2

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, win, groups=c)

    mu_x, mu_y = blur(output), blur(target)
    sxx = blur(output * output) - mu_x**2
    syy = blur(target * target) - mu_y**2
    sxy = blur(output * target) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return s.mean(1, keepdim=True)


def ssim(
    output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-image mean SSIM; with ``mask``, averaged over windows centred in the mask.

    Images smaller than the 11x11 window are scored on the window they fit (reflect-padded).
    """
    h, w = output.shape[-2:]
    if h < 11 or w < 11:
        ph, pw = max(0, 11 - h), max(0, 11 - w)
        pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
        output = F.pad(output, pad, mode="replicate")
        target = F.pad(target, pad, mode="replicate")
        if mask is not None:
            mask = F.pad(mask, pad, mode="replicate")
    s = ssim_map(output, target)
    if mask is None:
        return s.flatten(1).mean(1)
    m = mask[..., 5:-5, 5:-5]
    return (s * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1)


class LPIPS(nn.Module):
    """LPIPS (Zhang et al. 2018) with the VGG16 backbone and the official v0.1 linear layers.

    d(x, y) = sum_l mean_hw || w_l * (f_l(x)/|f_l(x)| - f_l(y)/|f_l(y)|) ||^2, inputs in [0, 1].
    """

    def __init__(
        self, state: dict[str, torch.Tensor] | None = None, path: str | Path | None = None
    ):
        super().__init__()
        state = state if state is not None else load_vgg_state(path)
        self.net = VGG16Features()
        self.net.load_state_dict({k: v for k, v in state.items() if k.startswith("features.")})
        self.lins = nn.ParameterList(
            [nn.Parameter(state[f"lin{k}.weight"].float(), requires_grad=False) for k in range(5)]
        )
        self.eval().requires_grad_(False)

    @staticmethod
    def _unit(f: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
        return f / (f.pow(2).sum(1, keepdim=True).sqrt() + eps)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fx = self.net(x, LPIPS_LAYERS)
        fy = self.net(y, LPIPS_LAYERS)
        total = torch.zeros(x.shape[0], device=x.device)
        for k, name in enumerate(LPIPS_LAYERS):
            d = (self._unit(fx[name]) - self._unit(fy[name])) ** 2
            total = total + F.conv2d(d, self.lins[k]).mean((1, 2, 3))
        return total


def edge_scores(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, threshold: float = 0.5
) -> dict[str, float]:
    """Precision / recall / F1 of binarised predicted edges against Canny edges, inside the hole."""
    p = (pred >= threshold) & (mask > 0)
    t = (target >= 0.5) & (mask > 0)
    tp = float((p & t).sum())
    precision = tp / max(float(p.sum()), 1.0)
    recall = tp / max(float(t.sum()), 1.0)
    f1 = 2 * precision * recall / max(precision + recall, 1e-8)
    return {"precision": precision, "recall": recall, "f1": f1}


def as_numpy(values: torch.Tensor) -> np.ndarray:
    return values.detach().float().cpu().numpy()
