"""Conversions between files / PIL / numpy and the library's tensors (float32 NCHW RGB in [0, 1]).

Everything else in the package works on tensors or plain arrays; file formats live only here.
"""

from __future__ import annotations

import io
import os
import threading
import uuid
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from edgefill.config import DEFAULT_MAX_PIXELS
from edgefill.errors import EdgefillError

ImageInput = str | Path | Image.Image | np.ndarray


def _open(path: Path, max_pixels: int) -> Image.Image:
    if not path.exists():
        raise EdgefillError(f"{path}: file not found")
    if path.is_dir():
        raise EdgefillError(f"{path}: is a directory, expected an image file")
    if path.stat().st_size == 0:
        raise EdgefillError(f"{path}: file is empty")
    try:
        img = _open_unguarded(path)
        _check_size(img.size, max_pixels, str(path))
        img.load()
    except EdgefillError:
        raise
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
    ) as exc:
        raise EdgefillError(f"{path}: not a readable image ({exc})") from None
    return img


# PIL has its own bomb guard (a warning above ~89 MP, an error above ~179 MP) that would make
# ``max_pixels`` impossible to raise and print warnings below our limit; we check the header size
# ourselves before decoding, so PIL's guard is lifted just for our own Image.open calls.
_PIL_GUARD_LOCK = threading.Lock()


def _open_unguarded(path: Path) -> Image.Image:
    with _PIL_GUARD_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            return Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _check_size(size: tuple[int, int], max_pixels: int, name: str) -> None:
    w, h = size
    if w < 1 or h < 1:
        raise EdgefillError(f"{name}: image has no pixels ({w}x{h})")
    if w * h > max_pixels:
        raise EdgefillError(
            f"{name}: {w}x{h} = {w * h / 1e6:.0f} MP exceeds the limit of {max_pixels / 1e6:.0f} MP "
            "(raise it with max_pixels / --max-pixels if the file is trusted)"
        )


def open_image(src: ImageInput, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open a path or pass through a PIL image, applying the EXIF orientation."""
    if isinstance(src, (str, Path)):
        img = _open(Path(src), max_pixels)
    elif isinstance(src, Image.Image):
        img = src
        _check_size(img.size, max_pixels, "image")
    else:
        raise EdgefillError(f"expected a file path or PIL image, got {type(src).__name__}")
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block must not make the photo unusable
        return img


def _to_uint8(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise EdgefillError(f"{name}: array contains NaN or infinite values")
        lo, hi = float(arr.min(initial=0.0)), float(arr.max(initial=0.0))
        if lo < 0 or hi > 1:
            raise EdgefillError(f"{name}: float arrays must be in [0, 1], got [{lo:g}, {hi:g}]")
        return np.round(arr * 255).astype(np.uint8)
    if arr.dtype == np.uint16:
        return (arr.astype(np.uint32) * 255 // 65535).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        if arr.min(initial=0) < 0 or arr.max(initial=0) > 255:
            raise EdgefillError(f"{name}: integer arrays must be in [0, 255]")
        return arr.astype(np.uint8)
    raise EdgefillError(f"{name}: unsupported array dtype {arr.dtype}")


def pil_to_rgb_alpha(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """RGB uint8 HxWx3 and, when the image carries transparency, alpha uint8 HxW."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img).astype(np.float64)
        # 16-bit files use the full 0-65535 range; 32-bit "I" images carry no range, so guess.
        top = 65535.0 if img.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        gray = np.clip(np.round(arr / top * 255), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2), None
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = np.asarray(img.convert("RGBA"))
        return np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3])
    return np.array(img.convert("RGB")), None  # np.array: a writable copy (asarray's is not)


def load_rgb(
    src: ImageInput, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[np.ndarray, np.ndarray | None]:
    """Any supported input as (RGB uint8 HxWx3, alpha uint8 HxW or None)."""
    if isinstance(src, np.ndarray):
        arr = src
        if arr.ndim == 2:
            arr = arr[..., None]
        if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
            raise EdgefillError(
                f"image array must be HxW, HxWx1, HxWx3 or HxWx4, got shape {src.shape}"
            )
        _check_size((arr.shape[1], arr.shape[0]), max_pixels, "image array")
        arr = _to_uint8(arr, "image array")
        alpha = arr[..., 3].copy() if arr.shape[2] == 4 else None
        rgb = np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr[..., :3]
        return np.ascontiguousarray(rgb), alpha
    return pil_to_rgb_alpha(open_image(src, max_pixels))


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """uint8 HxWx3 (or HxW) -> float32 1xCxHxW in [0, 1]."""
    t = torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0)  # a writable copy
    if t.ndim == 2:
        return t[None, None]
    return t.permute(2, 0, 1)[None].contiguous()


def to_uint8(t: torch.Tensor) -> np.ndarray:
    """float 1xCxHxW / CxHxW in [0, 1] -> uint8 HxWxC (HxW for one channel)."""
    if t.ndim == 4:
        t = t[0]
    arr = t.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()
    arr = arr.transpose(1, 2, 0)
    return arr[..., 0] if arr.shape[2] == 1 else arr


def encode_png(arr: np.ndarray, compress_level: int = 6) -> bytes:
    """PNG bytes of a uint8 array; a lower ``compress_level`` (0-9) is faster, larger."""
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


OUTPUT_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}


def output_format(path: str | Path) -> str:
    """PIL format name for an output path's suffix; a clear error for anything else."""
    fmt = OUTPUT_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise EdgefillError(
            f"{path}: unsupported output format {Path(path).suffix!r} "
            "(use .png, .jpg, .webp, .bmp or .tif)"
        )
    return fmt


def save_image(path: str | Path, arr: np.ndarray, quality: int = 95) -> Path:
    """Write an array atomically (temp file + rename); the folder is created if missing."""
    path = Path(path)
    fmt = output_format(path)
    # The temp file is opened with open(), not mkstemp, so the result gets the usual umask
    # permissions (mkstemp's are 0600); its .tmp suffix keeps it out of photo folder listings.
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(tmp, "xb")  # closed by the with block below
    except OSError as exc:
        raise EdgefillError(f"{path}: cannot write here ({exc.strerror})") from None
    try:
        with fh:
            kwargs = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
            if fmt == "JPEG" and arr.ndim == 3 and arr.shape[2] == 4:
                arr = arr[..., :3]  # JPEG has no alpha channel
            Image.fromarray(np.ascontiguousarray(arr)).save(fh, format=fmt, **kwargs)
        os.replace(tmp, path)
    except OSError as exc:  # disk full, a mode the format cannot store, ...
        Path(tmp).unlink(missing_ok=True)
        raise EdgefillError(f"{path}: could not write the image ({exc})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
