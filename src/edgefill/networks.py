"""EdgeConnect networks (Nazeri et al. 2019), module-for-module as in knazeri/edge-connect.

Layer indices inside each ``nn.Sequential`` match the reference so its released checkpoints load
key for key; widths and residual-block counts are constructor arguments. Networks take tensors
and return tensors: no config objects, files or devices in here.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.utils import spectral_norm


def _sn(module: nn.Module, use: bool) -> nn.Module:
    return spectral_norm(module) if use else module


def init_weights(net: nn.Module, gain: float = 0.02) -> None:
    """N(0, gain) init of conv weights, zero biases (the reference's 'normal' init)."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            weight = getattr(m, "weight_orig", m.weight)
            nn.init.normal_(weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class ResnetBlock(nn.Module):
    """Two 3x3 convs (the first dilated) with instance norm and an identity skip."""

    def __init__(self, dim: int, dilation: int = 2, use_spectral_norm: bool = False):
        super().__init__()
        bias = not use_spectral_norm
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(dilation),
            _sn(nn.Conv2d(dim, dim, 3, padding=0, dilation=dilation, bias=bias), use_spectral_norm),
            nn.InstanceNorm2d(dim, track_running_stats=False),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            _sn(nn.Conv2d(dim, dim, 3, padding=0, dilation=1, bias=bias), use_spectral_norm),
            nn.InstanceNorm2d(dim, track_running_stats=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class _Generator(nn.Module):
    """Encoder (7x7 conv, two stride-2 4x4 convs) -> dilated residual blocks -> decoder."""

    def __init__(
        self, in_channels: int, out_channels: int, width: int, blocks: int, use_spectral_norm: bool
    ):
        super().__init__()
        sn = use_spectral_norm
        w1, w2, w4 = width, width * 2, width * 4
        self.encoder = nn.Sequential(
            nn.ReflectionPad2d(3),
            _sn(nn.Conv2d(in_channels, w1, 7, padding=0), sn),
            nn.InstanceNorm2d(w1, track_running_stats=False),
            nn.ReLU(True),
            _sn(nn.Conv2d(w1, w2, 4, stride=2, padding=1), sn),
            nn.InstanceNorm2d(w2, track_running_stats=False),
            nn.ReLU(True),
            _sn(nn.Conv2d(w2, w4, 4, stride=2, padding=1), sn),
            nn.InstanceNorm2d(w4, track_running_stats=False),
            nn.ReLU(True),
        )
        self.middle = nn.Sequential(*[ResnetBlock(w4, 2, sn) for _ in range(blocks)])
        self.decoder = nn.Sequential(
            _sn(nn.ConvTranspose2d(w4, w2, 4, stride=2, padding=1), sn),
            nn.InstanceNorm2d(w2, track_running_stats=False),
            nn.ReLU(True),
            _sn(nn.ConvTranspose2d(w2, w1, 4, stride=2, padding=1), sn),
            nn.InstanceNorm2d(w1, track_running_stats=False),
            nn.ReLU(True),
            nn.ReflectionPad2d(3),
            nn.Conv2d(w1, out_channels, 7, padding=0),
        )
        init_weights(self)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        # Height and width must be multiples of 4 (two stride-2 stages); callers pad.
        return self.decoder(self.middle(self.encoder(x)))


class EdgeGenerator(_Generator):
    """G1: (gray with hole erased, Canny edges with hole erased, mask) -> edge probabilities."""

    def __init__(self, width: int = 64, blocks: int = 8, use_spectral_norm: bool = True):
        super().__init__(3, 1, width, blocks, use_spectral_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))


class InpaintGenerator(_Generator):
    """G2: (masked RGB, composite edges) -> RGB in [0, 1]."""

    def __init__(self, width: int = 64, blocks: int = 8):
        super().__init__(4, 3, width, blocks, use_spectral_norm=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (torch.tanh(self.logits(x)) + 1) / 2


class Discriminator(nn.Module):
    """70x70 PatchGAN with spectral norm; returns (patch logits, features of each layer).

    The reference applies a sigmoid for nsgan/lsgan; we return logits and let the loss apply it
    (numerically safer BCE). The features are what the feature-matching loss compares.
    """

    def __init__(self, in_channels: int, width: int = 64, use_spectral_norm: bool = True):
        super().__init__()
        sn, bias = use_spectral_norm, not use_spectral_norm
        w = width
        self.conv1 = nn.Sequential(
            _sn(nn.Conv2d(in_channels, w, 4, 2, 1, bias=bias), sn), nn.LeakyReLU(0.2, True)
        )
        self.conv2 = nn.Sequential(
            _sn(nn.Conv2d(w, w * 2, 4, 2, 1, bias=bias), sn), nn.LeakyReLU(0.2, True)
        )
        self.conv3 = nn.Sequential(
            _sn(nn.Conv2d(w * 2, w * 4, 4, 2, 1, bias=bias), sn), nn.LeakyReLU(0.2, True)
        )
        self.conv4 = nn.Sequential(
            _sn(nn.Conv2d(w * 4, w * 8, 4, 1, 1, bias=bias), sn), nn.LeakyReLU(0.2, True)
        )
        self.conv5 = nn.Sequential(_sn(nn.Conv2d(w * 8, 1, 4, 1, 1, bias=bias), sn))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        c1 = self.conv1(x)
        c2 = self.conv2(c1)
        c3 = self.conv3(c2)
        c4 = self.conv4(c3)
        c5 = self.conv5(c4)
        return c5, [c1, c2, c3, c4, c5]


def reference_state_dict(checkpoint: Mapping[str, object], key: str) -> dict[str, torch.Tensor]:
    """Extract the weights from a knazeri/edge-connect checkpoint (``{'generator': sd, ...}``).

    The reference Discriminator registers ``conv1`` twice (also as ``features``), so its files
    carry duplicate ``features.*`` keys; they are dropped. ``module.`` prefixes from
    DataParallel are stripped.
    """
    if key not in checkpoint:
        raise KeyError(f"checkpoint has no {key!r} entry (keys: {sorted(checkpoint)})")
    sd = checkpoint[key]
    if not isinstance(sd, Mapping):
        raise KeyError(f"checkpoint entry {key!r} is not a state dict")
    out: dict[str, torch.Tensor] = {}
    for name, value in sd.items():
        name = name.removeprefix("module.")
        if name.startswith("features."):
            continue
        out[name] = value  # type: ignore[assignment]
    return out


def load_reference(module: nn.Module, checkpoint: Mapping[str, object]) -> nn.Module:
    """Load a reference EdgeConnect ``*_gen.pth`` / ``*_dis.pth`` dict into ``module`` strictly."""
    key = "discriminator" if isinstance(module, Discriminator) else "generator"
    module.load_state_dict(reference_state_dict(checkpoint, key), strict=True)
    return module


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
