"""EdgeConnect networks (Nazeri et al. 2019), module-for-module as in knazeri/edge-connect.

Layer indices inside each ``nn.Sequential`` match the reference so its released checkpoints load
key for key; widths and residual-block counts are constructor arguments. Networks take tensors
and return tensors: no config objects, files or devices in here. ``fuse_for_inference`` swaps in
the faster inference-time layers (baked spectral norm, ``FastInstanceNorm``) with the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from edgefill.config import HOLE_FILLS, ModelConfig

# The weight of G2's own corrected fill against the PatchMatch copy when a G2 gains
# ``model.exemplar`` (``adapt_inpaint_state``). Chosen on training photos (docs/model-card.md,
# session 11): a fixed blend of 1/4 of the shipped G2's fill and 3/4 of PatchMatch's had a lower
# LPIPS than either alone.
EXEMPLAR_START_WEIGHT = 0.25

# ``model.deep_blend``: deep inside a hole the copy's colours come from patches found far away
# and are a guess; there the blend's low frequencies (Gaussian of DEEP_SIGMA px) lean to G2's
# own fill, DEEP_OWN_SHARE of them where a pixel lies DEEP_TO px or more from the nearest known
# pixel, rising from the blend's own weight at DEEP_FROM px; the copy's texture (the high
# frequencies) stays. Values chosen on training photos; off in the shipped release, since it
# raises box-hole PSNR but costs FID and weakens drawn edges (docs/model-card.md, session 15).
DEEP_FROM, DEEP_TO = 8, 24
DEEP_SIGMA = 8.0
DEEP_OWN_SHARE = 0.75


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


class PatchAttention(nn.Module):
    """Contextual attention (DeepFill v2, Yu et al. 2019) in a cheap form: each cell of a coarser
    copy of the feature map in or next to the hole takes a softmax-weighted mean of the features
    of the known cells (cosine similarity of learned projections), and the result enters the hole
    through a zero-initialised 1x1 conv, so a G2 that gains the block starts out as it was and
    learns how much texture to copy from the photo itself. Known positions are never changed.

    The coarser copy averages ``stride`` x ``stride`` cells, ``stride`` (2, 4, ...) chosen so that
    it has at most ``MAX_KEYS`` positions: memory stays bounded on big photos.
    """

    MAX_KEYS = 4096
    QUERY_CHUNK = 2048

    def __init__(self, dim: int, key_dim: int | None = None, scale: float = 10.0):
        super().__init__()
        kd = key_dim or max(dim // 4, 8)
        self.query = nn.Conv2d(dim, kd, 1)
        self.key = nn.Conv2d(dim, kd, 1)
        self.out = nn.Conv2d(dim, dim, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.scale = scale  # softmax temperature on cosine similarity, DeepFill's value

    @classmethod
    def stride_for(cls, h: int, w: int) -> int:
        s = 2
        while -(-h // s) * -(-w // s) > cls.MAX_KEYS:
            s *= 2
        return s

    def forward(self, x: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        """``x`` BxCxHxW features, ``hole`` Bx1xHxW (1 = missing) at the same resolution."""
        h, w = x.shape[-2:]
        s = self.stride_for(h, w)
        pad = (0, -w % s, 0, -h % s)
        xs = F.avg_pool2d(F.pad(x, pad, mode="replicate"), s)
        # A coarse cell is a key only if all of it is known: hole features never leak back in.
        holed = F.max_pool2d(F.pad(hole, pad, value=1.0), s)
        known = 1 - holed.flatten(2)  # Bx1xN
        # Queries: the cells a hole pixel's bilinear upsampling reads (its own and neighbours').
        asked = F.max_pool2d(holed, 3, stride=1, padding=1).flatten(2) > 0
        q = F.normalize(self.query(xs).flatten(2), dim=1)
        k = F.normalize(self.key(xs).flatten(2), dim=1)
        v = xs.flatten(2)
        bias = (known - 1) * 1e4  # -1e4 on hole keys: softmax weight 0, no NaN when all masked
        copied = torch.zeros_like(v)
        for b in range(x.shape[0]):
            if not known[b].any():
                continue  # nothing known to copy from
            idx = asked[b, 0].nonzero().squeeze(1)
            for i in range(0, len(idx), self.QUERY_CHUNK):
                cols = idx[i : i + self.QUERY_CHUNK]
                logits = q[b, :, cols].t() @ k[b]
                weights = torch.softmax(logits * self.scale + bias[b], dim=-1)
                copied[b, :, cols] = (v[b] @ weights.t()).to(copied.dtype)  # bf16 autocast
        # The 1x1 conv commutes with bilinear upsampling (weights summing to 1): run it coarse.
        out = self.out(copied.view_as(xs))
        out = F.interpolate(out, scale_factor=s, mode="bilinear", align_corners=False)
        return x + out[..., :h, :w] * hole


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

    def activate(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The output from the last conv's ``logits`` and the input ``x``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.logits(x), x)


class EdgeGenerator(_Generator):
    """G1: (gray with hole erased, Canny edges with hole erased, mask) -> edge probabilities."""

    def __init__(self, width: int = 64, blocks: int = 8, use_spectral_norm: bool = True):
        super().__init__(3, 1, width, blocks, use_spectral_norm)

    def activate(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)


def hole_depth_ramp(mask: torch.Tensor, start: int = DEEP_FROM, end: int = DEEP_TO) -> torch.Tensor:
    """Per pixel of ``mask`` (Bx1, 1 = missing): 0 within ``start`` px of a known pixel, rising
    linearly to 1 at ``end`` px and beyond (octagonal distance: 3x3 square and cross dilations
    of the known region in turn; the image's edge counts as missing, not known)."""
    known = 1 - mask
    total = torch.zeros_like(mask)
    for k in range(1, end):
        # Dilations from shifted slices: 14x faster than max_pool2d on a 512 px map, exact.
        p = F.pad(known, (1, 1, 1, 1))  # beyond the image: not known
        if k % 2:  # 3x3 square, separable
            row = torch.maximum(torch.maximum(p[..., :, :-2], p[..., :, 1:-1]), p[..., :, 2:])
            known = torch.maximum(
                torch.maximum(row[..., :-2, :], row[..., 1:-1, :]), row[..., 2:, :]
            )
        else:  # cross
            known = torch.maximum(
                torch.maximum(torch.maximum(known, p[..., :-2, 1:-1]), p[..., 2:, 1:-1]),
                torch.maximum(p[..., 1:-1, :-2], p[..., 1:-1, 2:]),
            )
        if k >= start:  # after k dilations a pixel is still missing iff it lies more than k px deep
            total = total + known
    return 1 - total / (end - start)


def gaussian_lowpass(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur (radius 3 sigma, replicated border) of a BxCxHxW tensor."""
    r = int(3 * sigma)
    taps = [math.exp(-0.5 * (i / sigma) ** 2) for i in range(-r, r + 1)]
    total = sum(taps)
    # A constant kernel over channels folded into the batch: ONNX export needs a known shape.
    k = torch.tensor([t / total for t in taps], dtype=x.dtype, device=x.device)
    b, c, h, w = x.shape
    y = x.reshape(b * c, 1, h, w)
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))
    return y.reshape(b, c, h, w)


class InpaintGenerator(_Generator):
    """G2: (masked RGB, composite edges[, mask]) -> RGB; build its input with ``inpaint_input``.

    hole_fill "white" (the reference) outputs the image in [0, 1]. Otherwise the input's RGB is
    already filled and G2 adds a correction in (-1, 1) to it, clamped to [0, 1] here so that the
    losses in training see exactly what inference returns. With ``exemplar`` the input also
    carries a PatchMatch fill (channels 5-7) and a fourth output channel gives, per pixel, the
    weight of G2's corrected fill against that copy (``model.exemplar``); ``copy_detail`` puts
    back that share of the copy's detail finer than ``copy_detail_sigma`` px, and
    ``deep_blend`` then shifts the blend's low frequencies toward G2's fill deep inside the hole
    (DEEP_OWN_SHARE).
    """

    def __init__(
        self,
        width: int = 64,
        blocks: int = 8,
        hole_fill: str = "white",
        attention: bool = False,
        exemplar: bool = False,
        deep_blend: bool = False,
        copy_detail: float = 0.0,
        copy_detail_sigma: float = 2.0,
    ):
        if hole_fill not in HOLE_FILLS:
            raise ValueError(f"hole_fill must be one of {HOLE_FILLS}, got {hole_fill!r}")
        if attention and hole_fill == "white":
            raise ValueError("attention needs a pre-filled G2: its input carries the mask")
        if exemplar and hole_fill == "white":
            raise ValueError("exemplar needs a pre-filled G2: it blends with the corrected fill")
        if deep_blend and not exemplar:
            raise ValueError("deep_blend changes the exemplar blend: it needs exemplar")
        if copy_detail and not exemplar:
            raise ValueError("copy_detail puts back the copy's texture: it needs exemplar")
        self.in_channels = (4 if hole_fill == "white" else 5) + (3 if exemplar else 0)
        super().__init__(self.in_channels, 4 if exemplar else 3, width, blocks, False)
        self.hole_fill = hole_fill
        self.exemplar = exemplar
        self.deep_blend = deep_blend
        self.copy_detail = float(copy_detail)
        self.copy_detail_sigma = float(copy_detail_sigma)
        self.attend = PatchAttention(width * 4) if attention else None

    @classmethod
    def from_config(cls, m: ModelConfig) -> InpaintGenerator:
        """The G2 a ``ModelConfig`` describes."""
        return cls(
            m.width,
            m.inpaint_blocks,
            m.hole_fill,
            m.attention,
            m.exemplar,
            m.deep_blend,
            m.copy_detail,
            m.copy_detail_sigma,
        )

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        if self.attend is None:
            return super().logits(x)
        features = self.middle(self.encoder(x))
        hole = F.max_pool2d(x[:, 4:5], 4).to(features.dtype)  # any missing pixel: a hole cell
        return self.decoder(self.attend(features, hole))

    def activate(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.hole_fill == "white":
            return (torch.tanh(logits) + 1) / 2
        own = (x[:, :3].to(logits.dtype) + torch.tanh(logits[:, :3])).clamp(0, 1)
        if not self.exemplar:
            return own
        weight = torch.sigmoid(logits[:, 3:4])
        copy = x[:, 5:8].to(logits.dtype)
        blend = weight * own + (1 - weight) * copy
        if self.copy_detail:
            # the share ``weight`` of the copy's texture that the blend left out, put back
            detail = copy - gaussian_lowpass(copy, self.copy_detail_sigma)
            blend = (blend + self.copy_detail * weight * detail).clamp(0, 1)
        if not self.deep_blend:
            return blend
        ramp = hole_depth_ramp(x[:, 4:5].to(logits.dtype))
        if not torch.jit.is_tracing() and not bool(ramp.any()):
            return blend  # no pixel that deep (scratches, thin strokes): skip the blur
        shift = gaussian_lowpass((DEEP_OWN_SHARE - weight) * (own - copy), DEEP_SIGMA)
        return (blend + ramp * shift).clamp(0, 1)


def edge_input(
    gray: torch.Tensor,
    edges: torch.Tensor,
    mask: torch.Tensor,
    hole_gray: torch.Tensor | None = None,
) -> torch.Tensor:
    """G1 input: gray with the hole painted white (as in the reference) or, given ``hole_gray``
    (the gray of a pre-filled photo, ``model.edge_hole_fill``), filled with it; known Canny
    edges; mask."""
    hole = mask if hole_gray is None else hole_gray * mask
    return torch.cat([gray * (1 - mask) + hole, edges * (1 - mask), mask], 1)


def inpaint_input(
    filled: torch.Tensor,
    mask: torch.Tensor,
    edges: torch.Tensor,
    hole_fill: str = "white",
    exemplar: torch.Tensor | None = None,
) -> torch.Tensor:
    """G2 input from the pre-filled photo (Bx3, see ``edgefill.prefill.fill_hole``), the hole
    (Bx1, 1 = missing) and the composite edges (Bx1); pre-filled G2s also get the mask, and
    those with ``model.exemplar`` the PatchMatch fill (Bx3) last."""
    if hole_fill == "white":
        return torch.cat([filled, edges], 1)
    if hole_fill not in HOLE_FILLS:
        raise ValueError(f"hole_fill must be one of {HOLE_FILLS}, got {hole_fill!r}")
    parts = [filled, edges, mask] + ([] if exemplar is None else [exemplar])
    return torch.cat(parts, 1)


def adapt_inpaint_state(
    sd: Mapping[str, torch.Tensor], module: nn.Module, reset_output: bool = False
) -> dict[str, torch.Tensor]:
    """A G2 state dict made loadable into ``module``; unchanged when the shapes already match.

    A "white" G2 (4 input channels) starting a pre-filled one (5): the mask channel gets zero
    weights and the output conv is zeroed, so the new G2 starts as exactly its pre-fill and keeps
    every learned feature; training then learns the correction. ``reset_output`` zeroes the
    output conv in any case (a G2 moving from one pre-fill to another: a correction learned for
    Telea's blur would damage PatchMatch's texture). A G2 gaining a ``PatchAttention`` block
    gets the block's fresh (identity) weights. A G2 gaining ``exemplar`` gets zero weights from
    the PatchMatch channels and a blend-weight output of constant EXEMPLAR_START_WEIGHT: it
    starts as that fixed blend of its own fill and the PatchMatch copy.
    """
    target = module.state_dict()
    first = "encoder.1.weight"
    last = f"decoder.{len(module.decoder) - 1}"
    out = dict(sd)
    if first in sd and first in target and sd[first].shape != target[first].shape:
        w = sd[first]
        extra = target[first].shape[1] - w.shape[1]
        if extra <= 0 or w.shape[0] != target[first].shape[0]:
            return out  # not a G2 gaining input channels: let load_state_dict report it
        out[first] = torch.cat([w, w.new_zeros(w.shape[0], extra, *w.shape[2:])], 1)
        reset_output = reset_output or w.shape[1] == 4  # it was a "white" G2
    for k, v in target.items():  # a G2 gaining attention: the new block starts as identity
        if k.startswith("attend.") and k not in out:
            out[k] = v.clone()
    weight, bias = f"{last}.weight", f"{last}.bias"
    if reset_output:
        out[weight] = torch.zeros_like(target[weight])
        out[bias] = torch.zeros_like(target[bias])
    if weight in out and out[weight].shape[0] == 3 and target[weight].shape[0] == 4:
        w, b = out[weight], out[bias]
        out[weight] = torch.cat([w, w.new_zeros(1, *w.shape[1:])], 0)
        out[bias] = torch.cat([b, b.new_zeros(1)])
    if weight in out and out[weight].shape[0] == 4 and (reset_output or sd[weight].shape[0] == 3):
        start = torch.tensor(EXEMPLAR_START_WEIGHT)
        out[bias] = out[bias].clone()
        out[bias][3] = torch.log(start / (1 - start))  # sigmoid(bias) = the start weight
    return out


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


# ----------------------------------------------------------------------------- inference-time layers


def bake_spectral_norm(net: nn.Module) -> nn.Module:
    """Replace spectral-norm reparametrisation by its (fixed, eval-mode) weight: faster inference."""
    for m in net.modules():
        if hasattr(m, "weight_orig"):
            torch.nn.utils.remove_spectral_norm(m)
    return net


class FastInstanceNorm(nn.Module):
    """Instance norm without affine parameters or running statistics, computed as a group norm
    with one channel per group: the same numbers (to float rounding), but ATen's group-norm kernel
    is 1.3-3x faster on the CPU than instance norm (which copies to a (1, N*C, H, W) batch norm),
    especially for channels-last and bf16 tensors. ONNX export writes a plain InstanceNormalization.
    """

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            return F.instance_norm(x, eps=self.eps)
        return F.group_norm(x, x.shape[1], eps=self.eps)


def fuse_for_inference(net: nn.Module) -> nn.Module:
    """In place: bake spectral norm and swap plain InstanceNorm2d for FastInstanceNorm.

    Parameter names and values are unchanged (neither norm has parameters), so state dicts and
    release files are unaffected; fp32 outputs match the original module to ~1e-6.
    """
    bake_spectral_norm(net)
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if (
                isinstance(child, nn.InstanceNorm2d)
                and not child.affine
                and not child.track_running_stats
            ):
                setattr(parent, name, FastInstanceNorm(child.eps))
    return net


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
