"""Conversions between files / PIL / numpy and the library's tensors (float32 NCHW RGB in [0, 1]).

Everything else in the package works on tensors or plain arrays; file formats live only here.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import struct
import threading
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
import torch
from PIL import (
    ExifTags,
    Image,
    ImageOps,
    JpegImagePlugin,
    PngImagePlugin,
    UnidentifiedImageError,
)

from edgefill.config import DEFAULT_MAX_PIXELS
from edgefill.errors import EdgefillError

ImageInput = str | Path | bytes | Image.Image | np.ndarray  # bytes: an encoded file (uploads)


def _open(path: Path, max_pixels: int) -> Image.Image:
    """A decoded image from a file; its ``info["edgefill_bits"]`` says the samples' bit depth."""
    if not path.exists():
        raise EdgefillError(f"{path}: file not found")
    if path.is_dir():
        raise EdgefillError(f"{path}: is a directory, expected an image file")
    if path.stat().st_size == 0:
        raise EdgefillError(f"{path}: file is empty")
    return _decode(path, max_pixels, str(path))


# What Pillow raises for a file it cannot read (or one that claims too many pixels).
_UNREADABLE = (
    UnidentifiedImageError,
    OSError,
    SyntaxError,
    ValueError,
    Image.DecompressionBombError,
)


def _decode(src: Path | bytes, max_pixels: int, name: str) -> Image.Image:
    img = None
    try:
        img = _open_unguarded(io.BytesIO(src) if isinstance(src, bytes) else src)
        _check_size(img.size, max_pixels, name)
        load_recorded(img)
    except BaseException as exc:
        if img is not None:
            img.close()  # the file stays open until load() has read it (a folder run's failures)
        if not isinstance(exc, _UNREADABLE):
            raise
        if img is None and name.lower().endswith(HEIF_SUFFIXES) and _heif == [False]:
            raise EdgefillError(f"{name}: {HEIF_MISSING}") from None  # no plugin to load
        raise EdgefillError(f"{name}: not a readable image ({exc})") from None
    if _holds_file(img):  # a copy of the first frame (the one used) lets the file go now
        first = img.copy()
        img.close()
        img = first
    return img


def load_recorded(img: Image.Image) -> None:
    """``img.load()``, keeping in ``img.info`` what the file says and loading forgets
    (``record_source``). Both decoders (``_decode``, the server's) load through here."""
    raw, turned = raw_mode(img), loader_turn(img)  # the tile list and a TIFF's tag go in load()
    img.load()
    record_source(img, raw, turned)


def record_source(img: Image.Image, raw: str, turned: int = 1) -> None:
    """What the file says that turning the decoded image upright would lose, into ``img.info``:
    ``edgefill_orientation`` where loading turned it (``turned``: ``loader_turn``),
    ``edgefill_bits`` (``sample_bits`` of ``raw``, the file's ``raw_mode``), ``edgefill_grey``,
    ``edgefill_format`` (a JPEG mask's threshold), a PNG's ``edgefill_text`` chunks, a JPEG's
    ``edgefill_subsampling`` and ``edgefill_qtables`` (which results of the same format keep),
    ``edgefill_iptc`` (``_iptc_resources``) and ``edgefill_exif``."""
    if turned != 1:
        img.info["edgefill_orientation"] = turned
    img.info["edgefill_bits"] = sample_bits(img, raw)
    img.info["edgefill_format"] = img.format
    # Pillow opens 16-bit grey + alpha as RGBA: the file's raw mode says it is grey.
    img.info["edgefill_grey"] = raw.startswith("LA;16")
    if img.format == "PNG":  # text chunks, minus XMP (ImageMeta.xmp keeps that)
        text = getattr(img, "text", None) or {}
        img.info["edgefill_text"] = tuple((k, str(v)) for k, v in text.items() if k != XMP_KEYWORD)
    if img.format == "JPEG":
        img.info["edgefill_subsampling"] = JpegImagePlugin.get_sampling(img)
        tables = getattr(img, "quantization", None) or {}
        img.info["edgefill_qtables"] = tuple(tuple(tables[k]) for k in sorted(tables))
    img.info["edgefill_iptc"] = _iptc_resources(img)
    # EXIF as the file has it: turning the photo upright re-encodes "exif" (Pillow's way, which
    # loses text that is not ASCII); a TIFF's, not as "exif", which Pillow would turn it by.
    try:
        exif = _tiff_exif(img) if img.format == "TIFF" else img.info.get("exif")
    except Exception:  # tags Pillow cannot parse are dropped, not the photo
        exif = None
    img.info["edgefill_exif"] = exif


def _tiff_exif(img: Image.Image) -> bytes | None:
    """A TIFF's descriptive tags (``TIFF_TEXT_TAGS``) and EXIF / GPS directories as an EXIF
    block, the form JPEG, PNG and WebP results keep them in (without the image layout tags)."""
    found, kept = img.getexif(), Image.Exif()
    for key in TIFF_TEXT_TAGS:
        if isinstance(found.get(key), str):
            kept[key] = _as_stored(found[key])
    for key in EXIF_SUB_IFDS:
        if key in found and found.get_ifd(key):
            kept[key] = {k: _as_stored(v) for k, v in found.get_ifd(key).items()}
    return kept.tobytes() if len(kept) else None


def _as_stored(value: object) -> object:
    """EXIF / TIFF text as the file stored it: Pillow reads text as Latin-1 and writes it as
    ASCII, which turned "José" (UTF-8, as most software writes it) into "Jos??"."""
    return (
        value.encode("latin-1", "replace")
        if isinstance(value, str) and not value.isascii()
        else value
    )


def _exif_block(block: bytes | None) -> bytes | None:
    """An EXIF block without its orientation (the pixels are stored upright), text as stored."""
    if not block:
        return None
    tags = Image.Exif()
    tags.load(block)
    tags.pop(ExifTags.Base.Orientation, None)
    for ifd in (tags, *(tags.get_ifd(k) for k in EXIF_SUB_IFDS if k in tags)):
        for key, value in list(ifd.items()):
            ifd[key] = _as_stored(value)
    return tags.tobytes() if len(tags) else None


def _tiff_tags(meta: ImageMeta) -> dict[int, str | bytes]:
    """The tags a TIFF result carries besides its pixels (both TIFF writers): the descriptive
    ones of ``meta.exif``'s first directory (its EXIF / GPS directories need offsets libtiff
    does not write: left off), XMP and IPTC."""
    found: dict[int, object] = {}
    if meta.exif:
        exif = Image.Exif()
        exif.load(meta.exif)
        found = {k: _as_stored(exif.get(k)) for k in TIFF_TEXT_TAGS}
    tags = {k: v for k, v in found.items() if isinstance(v, (str, bytes)) and v}
    if meta.xmp:
        tags[XMP_TIFF_TAG] = meta.xmp
    if meta.iptc:
        tags[IPTC_TIFF_TAG] = meta.iptc[0][1]
    return tags


def _iptc_resources(img: Image.Image) -> tuple[tuple[int, bytes], ...]:
    """A JPEG's or TIFF's IPTC-IIM (captions, credit, copyright, keywords) as Photoshop
    resources: the records (``IPTC_RESOURCE``) and, from a JPEG, their digest if it has one.
    Not the rest of Photoshop's resources: one of them is a thumbnail of the unrepaired photo."""
    if img.format == "JPEG":
        found = img.info.get("photoshop") or {}
        kept = ((k, found.get(k)) for k in (IPTC_RESOURCE, IPTC_DIGEST_RESOURCE))
        pairs = tuple((k, v) for k, v in kept if isinstance(v, bytes) and v)
        return pairs if pairs and pairs[0][0] == IPTC_RESOURCE else ()
    tags = getattr(img, "tag_v2", None) if img.format == "TIFF" else None
    # The tag's bytes as stored (as Pillow's own getiptcinfo reads them): Photoshop types it
    # as 4-byte integers, of which Pillow's tag lookup keeps only the first.
    records = getattr(tags, "_tagdata", {}).get(IPTC_TIFF_TAG) if tags is not None else None
    return ((IPTC_RESOURCE, records),) if isinstance(records, bytes) and records else ()


def _holds_file(img: Image.Image) -> bool:
    """Whether Pillow keeps the image's file open after load(): formats that can hold several
    frames (GIF, TIFF, APNG, ICO) do, for seek(), until the image is garbage collected."""
    files = (getattr(img, "fp", None), getattr(img, "_fp", None))
    return any(f is not None and not getattr(f, "closed", True) for f in files)


def raw_mode(img: Image.Image) -> str:
    """The raw mode of an opened (not yet loaded) image's first tile ("" when it has none): what
    the file holds, where Pillow decodes 16-bit RGB(A) to 8 bits and 16-bit grey + alpha to
    RGBA. The tile list is gone after load()."""
    for tile in img.tile or []:
        args = tile[3]
        raw = args[0] if isinstance(args, tuple) and args else args
        if isinstance(raw, str):
            return raw
    return ""


def loader_turn(img: Image.Image) -> int:
    """A TIFF's orientation tag (1: none or not a TIFF), read before load(): recent Pillow
    (13 does) turns a TIFF upright while loading it and drops the tag, and ``upright`` must
    still know how the photo was turned (a mask made on its stored pixels is turned too)."""
    tags = getattr(img, "tag_v2", None) if img.format == "TIFF" else None
    if tags is None:
        return 1
    try:
        orientation = tags.get(0x0112, 1)
    except Exception:  # a broken tag must not make the photo unusable
        return 1
    return orientation if orientation in _ORIENT else 1


def sample_bits(img: Image.Image, raw: str) -> int:
    """Bits per sample: 16 for 16-bit PNG/TIFF (``raw``: ``raw_mode`` before loading), else 8."""
    return 16 if img.mode.startswith("I;16") or ";16" in raw else 8


# PIL has its own bomb guard (a warning above ~89 MP, an error above ~179 MP) that would make
# ``max_pixels`` impossible to raise and print warnings below our limit; we check the header size
# ourselves before decoding, so PIL's guard is lifted just for our own Image.open calls.
_PIL_GUARD_LOCK = threading.Lock()


def _open_unguarded(src: Path | io.BytesIO) -> Image.Image:
    with _PIL_GUARD_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            return open_any(src)
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def open_any(src: Path | io.BytesIO) -> Image.Image:
    """``Image.open``, and for a file Pillow does not know, once more after ``register_heif``
    (HEIC photos then open too: the plugin is loaded only when a file needs it)."""
    try:
        return Image.open(src)
    except UnidentifiedImageError:
        if not register_heif():
            raise
    # A second look (cheap for a file no plugin knows): the plugin may have come in just now,
    # or on another thread after this one's first look.
    if isinstance(src, io.BytesIO):
        src.seek(0)
    return Image.open(src)


HEIF_SUFFIXES = (".heic", ".heif", ".hif")
HEIF_MISSING = "HEIC / HEIF photos need the optional package pillow-heif: pip install pillow-heif"
_heif: list[bool] = []  # [whether pillow-heif registered] once tried
_HEIF_LOCK = threading.Lock()  # the server opens uploads on several threads


def register_heif() -> bool:
    """Let Pillow open HEIC / HEIF photos (iPhones' own format) when pillow-heif, the ``heif``
    extra, is installed; whether it can."""
    with _HEIF_LOCK:
        if _heif:
            return _heif[0]
        try:
            import pillow_heif

            pillow_heif.register_heif_opener()
            _heif.append(True)
        except Exception:  # not installed, or its library failed to load
            _heif.append(False)
        return _heif[0]


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
    """Open a path or pass through a PIL image, applying the EXIF orientation (``upright``)."""
    return upright(_open_any(src, max_pixels))


def _open_any(src: ImageInput, max_pixels: int) -> Image.Image:
    if isinstance(src, (str, Path)):
        return _open(Path(src), max_pixels)
    if isinstance(src, bytes):
        if not src:
            raise EdgefillError("image: the file is empty")
        return _decode(src, max_pixels, "image")
    if isinstance(src, Image.Image):
        _check_size(src.size, max_pixels, "image")
        return src
    raise EdgefillError(f"expected a file path or PIL image, got {type(src).__name__}")


def upright(img: Image.Image) -> Image.Image:
    """``img`` turned by its EXIF orientation, which ``info["edgefill_orientation"]`` records
    (1: none) for what must be turned the same way: 16-bit samples read again, a mask made on
    the stored pixels (``masks.load_mask``)."""
    loaded_as = img.info.get("edgefill_orientation", 1)  # turned while loading (loader_turn)
    try:
        orientation = img.getexif().get(0x0112, 1)
        turned = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block must not make the photo unusable
        return img
    turned.info["edgefill_orientation"] = orientation if orientation in _ORIENT else loaded_as
    return turned


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
    """RGB uint8 HxWx3 and, when the image carries transparency, alpha uint8 HxW (8-bit modes:
    integer grey ones are read by ``_deep_samples``)."""
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
    photo = load_photo(src, max_pixels)
    return photo.rgb, photo.alpha


# ----------------------------------------------------------------------------- photos with depth and metadata


@dataclass(frozen=True)
class ImageMeta:
    """What a file says about its pixels besides their values; kept on every output that can
    hold it, so colour-managed viewers show the known pixels exactly as before."""

    icc_profile: bytes | None = None
    # EXIF (a TIFF's descriptive tags and EXIF / GPS directories too), without the orientation
    # tag: pixels are stored as displayed.
    exif: bytes | None = None
    dpi: tuple[float, float] | None = None
    # Grey samples (a black-and-white photo): written back grey (the fill is grey already:
    # Inpainter.inpaint_arrays), not as an RGB file three times the size.
    grey: bool = False
    # The EXIF orientation the pixels were turned upright by on reading (1: none); not written
    # back (the result is stored upright), but a mask made on the stored pixels is turned too.
    orientation: int = 1
    # A JPEG photo's chroma subsampling (Pillow's 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0) and
    # quantization tables, which a JPEG result is written with unless given a quality: the
    # known pixels then come back almost as they were (a JPEG re-encoded with its own tables
    # changes little; 4:4:4 photos written 4:2:0 came back twice as far from them).
    subsampling: int | None = None
    qtables: tuple[tuple[int, ...], ...] = ()
    progressive: bool = False  # a JPEG in progressive scans (as web pages serve them) stays so
    # A TIFF photo's compression (Pillow's name), kept on a TIFF result when it is lossless.
    tiff_compression: str | None = None
    # XMP packet (captions, credit, copyright, keywords: what archives and photographers keep
    # with a photo), kept on PNG, JPEG, WebP and TIFF results; Pillow's exif_transpose has
    # already taken the orientation out of it.
    xmp: bytes | None = None
    # Notes the file carries as text: a PNG's text chunks ((keyword, text) pairs: Copyright,
    # Description, ...) and a JPEG's comment, kept on results of the same format.
    png_text: tuple[tuple[str, str], ...] = ()
    jpeg_comment: bytes | None = None
    # IPTC-IIM (what news and archive software reads: caption, credit, copyright, keywords)
    # as (Photoshop resource id, bytes) pairs, records first; kept on JPEG and TIFF results.
    iptc: tuple[tuple[int, bytes], ...] = ()


@dataclass
class Photo:
    """A photo as the model sees it (8-bit RGB) plus what is needed to write it back losslessly."""

    rgb: np.ndarray  # uint8 HxWx3
    alpha: np.ndarray | None = None  # uint8 HxW
    deep: np.ndarray | None = None  # uint16 HxW, HxWx3 or HxWx4: the file's own samples (> 8 bit)
    meta: ImageMeta = field(default_factory=ImageMeta)


def shrink_short_side(img: np.ndarray, limit: int) -> np.ndarray:
    """``img`` (HxW or HxWxC) resized (area filter) so its short side is at most ``limit``;
    smaller images come back as they are."""
    h, w = img.shape[:2]
    s = limit / min(h, w)
    if s >= 1:
        return img
    return cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)


def load_photo(src: ImageInput, max_pixels: int = DEFAULT_MAX_PIXELS) -> Photo:
    """The one loader for photos: a path, encoded bytes, a PIL image or an array.

    16-bit files keep their samples in ``deep`` (the model sees 8 bits: ``split_deep``); the
    ICC profile, EXIF (minus orientation) and DPI are kept in ``meta``."""
    if isinstance(src, np.ndarray):
        return _photo_from_array(src, max_pixels)
    img = open_image(src, max_pixels)
    return photo_from_image(img, src if isinstance(src, (str, Path, bytes)) else None)


def photo_from_image(img: Image.Image, raw: str | Path | bytes | None = None) -> Photo:
    """A Photo from a decoded, upright PIL image; ``raw`` (its file or bytes) lets 16-bit RGB
    samples be read again at full depth when ``img.info["edgefill_bits"]`` says 16."""
    if img.mode == "F":  # Pillow would clip the samples to 0-255 integers: a black photo
        name = raw if isinstance(raw, (str, Path)) else "image"
        raise EdgefillError(
            f"{name}: 32-bit floating-point samples; edgefill reads 8- and 16-bit photos and "
            "writes them back at their depth: convert it to a 16-bit TIFF or PNG first"
        )
    meta = read_meta(img)
    deep = _deep_samples(img, raw)
    if deep is None:
        rgb, alpha = pil_to_rgb_alpha(img)
        return Photo(rgb, alpha, None, meta)
    rgb, alpha = split_deep(deep)
    return Photo(rgb, alpha, deep, meta)


def _photo_from_array(src: np.ndarray, max_pixels: int) -> Photo:
    arr = src[..., None] if src.ndim == 2 else src
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise EdgefillError(
            f"image array must be HxW, HxWx1, HxWx3 or HxWx4, got shape {src.shape}"
        )
    _check_size((arr.shape[1], arr.shape[0]), max_pixels, "image array")
    if arr.dtype == np.uint16 and arr.shape[2] != 1 or src.ndim == 2 and src.dtype == np.uint16:
        deep = np.ascontiguousarray(src)
        rgb, alpha = split_deep(deep)
        return Photo(rgb, alpha, deep)
    arr = _to_uint8(arr, "image array")
    alpha = arr[..., 3].copy() if arr.shape[2] == 4 else None
    rgb = np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr[..., :3]
    return Photo(np.ascontiguousarray(rgb), alpha, meta=ImageMeta(grey=arr.shape[2] == 1))


def read_meta(img: Image.Image) -> ImageMeta:
    """An opened, upright image's ``ImageMeta``: ICC profile, EXIF (``_exif_block``), DPI,
    XMP, and what ``record_source`` and ``upright`` noted in its info."""
    icc = img.info.get("icc_profile") or None
    try:
        exif = _exif_block(img.info.get("edgefill_exif", img.info.get("exif")))
    except Exception:  # an unreadable EXIF block is dropped, not fatal
        exif = None
    dpi = img.info.get("dpi")
    try:
        dpi = (float(dpi[0]), float(dpi[1])) if dpi else None
    except (TypeError, ValueError, IndexError):
        dpi = None
    if dpi is not None and not all(0 < d < 1e6 for d in dpi):
        dpi = None
    sampling = img.info.get("edgefill_subsampling")
    fmt = img.info.get("edgefill_format")
    tiff = img.info.get("compression") if fmt == "TIFF" else None
    comment = img.info.get("comment") if fmt == "JPEG" else None
    xmp = img.info.get("xmp") or None
    return ImageMeta(
        icc_profile=icc if isinstance(icc, bytes) else None,
        exif=exif,
        dpi=dpi,
        grey=img.mode in GREY_MODES or bool(img.info.get("edgefill_grey")),
        orientation=img.info.get("edgefill_orientation", 1),
        subsampling=sampling if sampling in (0, 1, 2) else None,  # -1: Pillow could not tell
        qtables=img.info.get("edgefill_qtables", ()),
        progressive=fmt == "JPEG" and bool(img.info.get("progressive")),
        tiff_compression=tiff,
        xmp=xmp.encode() if isinstance(xmp, str) else xmp if isinstance(xmp, bytes) else None,
        png_text=img.info.get("edgefill_text", ()),
        jpeg_comment=comment if isinstance(comment, bytes) and comment else None,
        iptc=img.info.get("edgefill_iptc", ()),
    )


GREY_MODES = ("1", "L", "LA", "La", "I;16", "I;16B", "I;16L", "I")  # Pillow's one-colour modes


_ORIENT = {  # EXIF orientation -> the numpy version of what ImageOps.exif_transpose does
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: np.swapaxes(a, 0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.swapaxes(np.rot90(a, 2), 0, 1),
    8: lambda a: np.rot90(a, 1),
}
TURNING = (5, 6, 7, 8)  # the orientations that swap width and height


def turn_upright(arr: np.ndarray, orientation: int) -> np.ndarray:
    """An array of a file's stored pixels turned as ``upright`` turns the file (HxW[xC])."""
    turn = _ORIENT.get(orientation)
    return arr if turn is None else np.ascontiguousarray(turn(arr))


def _deep_samples(img: Image.Image, raw: str | Path | bytes | None) -> np.ndarray | None:
    """The file's 16-bit samples, upright, or None for 8-bit files.

    Pillow keeps 16-bit greyscale but reduces 16-bit RGB(A) to 8 bits, so those are decoded
    again with OpenCV (which keeps 16 bits) and turned upright with the EXIF orientation."""
    if img.mode.startswith("I;16"):
        return np.asarray(img).astype(np.uint16)
    if img.mode == "I":  # 32-bit integer grey: kept at 16 bits where its samples fit them
        arr = np.asarray(img)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            name = raw if isinstance(raw, (str, Path)) else "image"
            raise EdgefillError(
                f"{name}: 32-bit integer samples beyond 0-65535; edgefill writes photos back at "
                "16 bits at most: scale it into 16 bits first"
            )
        return arr.astype(np.uint16)
    if img.info.get("edgefill_bits", 8) <= 8 or raw is None:
        return None
    buf = np.frombuffer(raw, np.uint8) if isinstance(raw, bytes) else np.fromfile(raw, np.uint8)
    arr = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint16 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
        return None  # a layout OpenCV reads differently: fall back to Pillow's 8 bits
    arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB if arr.shape[2] == 3 else cv2.COLOR_BGRA2RGBA)
    return _as_upright(arr, img)


def _as_upright(deep: np.ndarray, img: Image.Image) -> np.ndarray | None:
    """OpenCV's 16-bit samples turned as Pillow's 8-bit upright ``img`` is, or None where
    neither way matches. OpenCV turns a TIFF by its orientation tag itself but not a PNG's
    eXIf, so the samples are compared, not the format's habits trusted."""
    orientation = img.info.get("edgefill_orientation", 1)
    shown = np.asarray(img)[::8, ::8, :3].astype(np.int16)
    for arr in (turn_upright(deep, orientation), deep) if orientation != 1 else (deep,):
        if arr.shape[:2] != (img.height, img.width):
            continue
        if np.abs((arr[::8, ::8, :3] >> 8).astype(np.int16) - shown).mean() < 1.0:
            return arr
    return None


def deep_white(deep: np.ndarray) -> int:
    """The sample value a 16-bit photo's 8-bit view maps to 255: all ones in the bits its colour
    channels use (4095 for 12-bit data in a 16-bit file, 65535 for a photo that uses all 16).
    So 12-bit camera or microscope data, or a dark scan, is filled with the 256 levels an 8-bit
    copy of it would have, not the few of 0-65535 it occupies; other photos are seen as before."""
    colour = deep if deep.ndim == 2 else deep[..., :3]
    top = int(colour.max()) if colour.size else 65535
    return (1 << max(top.bit_length(), 1)) - 1


def _to8(deep: np.ndarray, white: int = 65535) -> np.ndarray:
    """16-bit samples to the nearest 8-bit value (``white`` -> 255)."""
    return ((deep.astype(np.uint32) * 255 + white // 2) // white).astype(np.uint8)


def split_deep(deep: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(RGB uint8, alpha uint8 or None) that the model sees for 16-bit samples: the colour
    channels up to ``deep_white``, alpha over 0-65535."""
    if deep.ndim == 2:
        return np.repeat(_to8(deep, deep_white(deep))[..., None], 3, axis=2), None
    rgb = _to8(deep[..., :3], deep_white(deep))
    alpha = _to8(deep[..., 3]) if deep.shape[2] == 4 else None
    return rgb, alpha


def _from8(fill: np.ndarray, white: int) -> np.ndarray:
    """8-bit values back to 16-bit samples (``_to8``'s inverse: 255 -> ``white``)."""
    return ((fill.astype(np.uint32) * white + 127) // 255).astype(np.uint16)


def compose_deep(
    deep: np.ndarray, fill: np.ndarray, hole: np.ndarray, keep_alpha: bool = True
) -> np.ndarray:
    """The 16-bit original with only the hole replaced by the 8-bit fill, scaled back as the
    photo's 8-bit view was made (``deep_white``).

    Greyscale originals take the fill's luma; ``keep_alpha=False`` drops an alpha channel (when
    the transparency was the hole, the result is opaque)."""
    white = deep_white(deep)
    out = deep if keep_alpha or deep.ndim == 2 or deep.shape[2] == 3 else deep[..., :3]
    out = out.copy()
    if out.ndim == 2:
        out[hole] = _from8(grey_of(fill)[hole], white)
    else:
        out[..., :3][hole] = _from8(fill[hole], white)
    return out


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


# zlib level of the PNG files and downloads written (8- and 16-bit): on 4000x3000 photos Pillow's
# default 6 took 1.9-3.8 s, 3 takes 0.9-1.4 s for 5-21 % more bytes (docs/performance.md).
PNG_COMPRESS_LEVEL = 3


def encode_png(arr: np.ndarray) -> bytes:
    """PNG bytes of a uint8 array for the web app's previews (edge maps, masks, fills): zlib
    level 1, the fastest, as they are shown at once and never kept."""
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=1)
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


LOSSY_FORMATS = ("JPEG",)  # WebP is written lossless unless a quality is asked for
DEFAULT_JPEG_QUALITY = 95
# TIFF compressions a result keeps from its photo (others, e.g. JPEG-in-TIFF, would lose
# pixels outside the hole: those photos get deflate, as 16-bit TIFFs always do).
LOSSLESS_TIFF = ("raw", "tiff_lzw", "tiff_adobe_deflate", "tiff_deflate", "packbits")
XMP_KEYWORD = "XML:com.adobe.xmp"  # the PNG iTXt chunk that holds XMP
XMP_TIFF_TAG = 700
# TIFF's descriptive text tags (DocumentName, ImageDescription, Make, Model, Software,
# DateTime, Artist, HostComputer, Copyright), which EXIF's first directory shares.
TIFF_TEXT_TAGS = (269, 270, 271, 272, 305, 306, 315, 316, 33432)
EXIF_SUB_IFDS = (ExifTags.IFD.Exif, ExifTags.IFD.GPSInfo)
IPTC_TIFF_TAG = 33723  # IPTC-IIM records in a TIFF
# Photoshop image resources (a JPEG's APP13) that hold IPTC-IIM and its MD5 digest, which
# readers compare with the records to tell whether IPTC or XMP is the newer.
IPTC_RESOURCE, IPTC_DIGEST_RESOURCE = 0x0404, 0x0425


def check_quality(quality: int | None) -> None:
    if quality is not None and not 1 <= quality <= 100:
        raise EdgefillError(f"quality must be between 1 and 100, got {quality}")


def encode_image(
    arr: np.ndarray, fmt: str, meta: ImageMeta | None = None, quality: int | None = None
) -> bytes:
    """An array (uint8, or uint16 for PNG/TIFF) as file bytes, with the photo's metadata.

    JPEG uses ``quality`` (default 95); WebP is lossless unless ``quality`` is given."""
    buf = io.BytesIO()
    write_image(buf, arr, fmt, meta, quality)
    return buf.getvalue()


def write_image(
    fh: BinaryIO,
    arr: np.ndarray,
    fmt: str,
    meta: ImageMeta | None = None,
    quality: int | None = None,
) -> None:
    """``encode_image`` into an open binary file."""
    check_quality(quality)
    meta = meta or ImageMeta()
    arr = np.ascontiguousarray(arr)
    channels = arr.shape[2] if arr.ndim == 3 else 1
    # Grey with alpha has no BMP form: such a photo stays RGBA there.
    if meta.grey and arr.dtype == np.uint8 and (channels == 3 or channels == 4 and fmt != "BMP"):
        arr = grey_of(arr)
    meta = _fitting_profile(meta, arr)
    if arr.dtype == np.uint16:
        if meta.grey and channels == 4:  # grey + alpha (OpenCV reads it as four channels)
            arr = np.ascontiguousarray(arr[..., [0, 3]])
        fh.write(_encode_deep(arr, fmt, meta))
        return
    if fmt == "JPEG" and arr.ndim == 3 and arr.shape[2] in (2, 4):
        arr = arr[..., 0] if arr.shape[2] == 2 else arr[..., :3]  # JPEG has no alpha channel
    kwargs: dict = {}
    if fmt == "JPEG":
        if quality is None and meta.qtables:
            kwargs["qtables"] = [list(t) for t in meta.qtables]
        else:
            kwargs["quality"] = DEFAULT_JPEG_QUALITY if quality is None else quality
        if meta.subsampling is not None:
            kwargs["subsampling"] = meta.subsampling
        kwargs["progressive"] = meta.progressive
    if fmt == "WEBP":
        kwargs.update({"lossless": True} if quality is None else {"quality": quality})
    if fmt == "PNG":
        kwargs["compress_level"] = PNG_COMPRESS_LEVEL
    if fmt == "TIFF":  # Pillow writes TIFF uncompressed unless told: 2.5x a deflated photo
        kept = meta.tiff_compression in LOSSLESS_TIFF
        kwargs["compression"] = meta.tiff_compression if kept else "tiff_adobe_deflate"
    if meta.icc_profile and fmt in ("PNG", "JPEG", "WEBP", "TIFF"):
        kwargs["icc_profile"] = meta.icc_profile
    if meta.exif and fmt in ("PNG", "JPEG", "WEBP"):
        kwargs["exif"] = meta.exif
    if meta.dpi and fmt in ("PNG", "JPEG", "TIFF", "BMP"):
        kwargs["dpi"] = meta.dpi
    if meta.xmp and fmt in ("JPEG", "WEBP"):
        kwargs["xmp"] = meta.xmp
    if fmt == "TIFF":
        kwargs["tiffinfo"] = _tiff_tags(meta)
    if fmt == "PNG" and (meta.xmp or meta.png_text):
        kwargs["pnginfo"] = PngImagePlugin.PngInfo()
        for key, text in meta.png_text:
            kwargs["pnginfo"].add_text(key, text)  # iTXt where Latin-1 cannot hold it
        if meta.xmp:
            kwargs["pnginfo"].add_itxt(XMP_KEYWORD, meta.xmp.decode("utf-8", "replace"))
    if fmt == "JPEG" and meta.jpeg_comment:
        kwargs["comment"] = meta.jpeg_comment
    if fmt == "JPEG" and meta.iptc:
        kwargs["extra"] = _photoshop_segment(meta.iptc)
    Image.fromarray(arr).save(fh, format=fmt, **kwargs)


def _fitting_profile(meta: ImageMeta, arr: np.ndarray) -> ImageMeta:
    """``meta`` without its ICC profile where the profile describes another colour space than
    ``arr`` holds (its header's bytes 16-19): a CMYK photo's profile on its RGB result would be
    misread by every colour-managed viewer; without one they assume sRGB."""
    icc = meta.icc_profile
    if not icc or len(icc) < 20:
        return meta
    grey = arr.ndim == 2 or arr.shape[2] <= 2
    if icc[16:20] == (b"GRAY" if grey else b"RGB "):
        return meta
    return replace(meta, icc_profile=None)


def resize_hole(hole: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``hole`` (bool HxW) at ``size`` (width, height): nearest neighbour along an axis that
    grows; along one that shrinks a pixel is hole when any hole pixel falls in it, so strokes
    thinner than the scale (scratches, hairs) are not dropped (nearest neighbour kept one row in
    two of a mask at twice the size). Shared by every shrinking of a hole: masks, the reduced
    PatchMatch copy, the restore report's sheet."""
    h, w = hole.shape
    big = (max(size[0], w), max(size[1], h))
    m = hole.astype(np.uint8)
    if big != (w, h):
        m = cv2.resize(m, big, interpolation=cv2.INTER_NEAREST)
    if big != tuple(size):
        return cv2.resize(m.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0
    return m > 0


def grey_of(arr: np.ndarray) -> np.ndarray:
    """RGB (HxWx3) or RGBA (HxWx4) uint8 as grey (HxW) or grey + alpha (HxWx2): the luma,
    which keeps a neutral pixel's value exactly."""
    luma = cv2.cvtColor(np.ascontiguousarray(arr[..., :3]), cv2.COLOR_RGB2GRAY)
    return luma if arr.shape[2] == 3 else np.dstack([luma, arr[..., 3]])


def known_is_neutral(rgb: np.ndarray, hole: np.ndarray) -> bool:
    """Whether every pixel outside ``hole`` is grey (R = G = B): a black-and-white photo, also
    one stored as RGB, as scans often are. Colour photos are told apart on a sparse grid first."""

    def neutral(img: np.ndarray, known: np.ndarray) -> bool:
        colour = (img[..., 0] != img[..., 1]) | (img[..., 1] != img[..., 2])
        return not (colour & known).any()

    if hole.all():
        return False
    return neutral(rgb[::7, ::7], ~hole[::7, ::7]) and neutral(rgb, ~hole)


def grey_fill(result: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """``result`` with its hole pixels replaced by the mean of their three channels (for a grey
    truth never further from it, in squared error, than the three channels were)."""
    out = result.copy()
    mean = (result[hole].astype(np.uint16).sum(axis=1) + 1) // 3
    out[hole] = mean.astype(np.uint8)[:, None]
    return out


def _encode_deep(arr: np.ndarray, fmt: str, meta: ImageMeta) -> bytes:
    """16-bit samples: PNG via OpenCV plus our own metadata chunks, TIFF via tifffile."""
    if fmt not in ("PNG", "TIFF"):
        raise EdgefillError(
            f"this photo has 16 bits per channel and {fmt} stores 8: write .png or .tif to "
            "keep every pixel outside the hole exactly"
        )
    if fmt == "TIFF":
        import tifffile

        buf = io.BytesIO()
        extratags = []
        if meta.icc_profile:
            extratags.append((34675, 7, len(meta.icc_profile), meta.icc_profile, True))
        tags = _tiff_tags(meta)  # tifffile writes its own description and software unless given
        description, software = tags.pop(270, None), tags.pop(305, False)
        for tag, value in tags.items():  # XMP as bytes, IPTC undefined, the rest ASCII text
            kind = {XMP_TIFF_TAG: 1, IPTC_TIFF_TAG: 7}.get(tag, 2)
            extratags.append((tag, kind, None if kind == 2 else len(value), value, True))
        tifffile.imwrite(
            buf,
            arr,
            description=description,
            metadata=None,
            software=software,
            photometric="minisblack" if arr.ndim == 2 or arr.shape[2] == 2 else "rgb",
            extrasamples=("unassalpha",) if arr.ndim == 3 and arr.shape[2] in (2, 4) else None,
            resolution=meta.dpi,
            resolutionunit="INCH" if meta.dpi else None,
            extratags=extratags,
            compression="zlib",
        )
        return buf.getvalue()
    if arr.ndim == 3 and arr.shape[2] == 2:
        return _png_with_meta(_png_grey_alpha16(arr), meta)
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR if arr.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    ok, data = cv2.imencode(".png", arr, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESS_LEVEL])
    if not ok:
        raise EdgefillError("could not encode the 16-bit PNG")
    return _png_with_meta(data.tobytes(), meta)


def _png_grey_alpha16(arr: np.ndarray) -> bytes:
    """A 16-bit grey + alpha PNG (HxWx2 uint16), which neither OpenCV nor Pillow writes: each
    row big-endian after filter byte 0 (none)."""
    h, w = arr.shape[:2]
    rows = arr.astype(">u2").reshape(h, w * 2).view(np.uint8)
    raw = np.hstack([np.zeros((h, 1), np.uint8), rows]).tobytes()
    header = struct.pack(">IIBBBBB", w, h, 16, 4, 0, 0, 0)  # 16 bits, colour type 4: grey+alpha
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(raw, PNG_COMPRESS_LEVEL))
        + _png_chunk(b"IEND", b"")
    )


def _photoshop_segment(resources: tuple[tuple[int, bytes], ...]) -> bytes:
    """Photoshop resources as a JPEG APP13 segment (nothing where one segment cannot hold
    them: a JPEG segment is at most 64 KiB)."""
    body = b"Photoshop 3.0\0"
    for key, data in resources:  # 8BIM, id, an empty name padded to even, size, even data
        body += b"8BIM" + struct.pack(">HHI", key, 0, len(data)) + data + b"\0" * (len(data) % 2)
    return b"\xff\xed" + struct.pack(">H", len(body) + 2) + body if len(body) + 2 < 65536 else b""


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _png_with_meta(png: bytes, meta: ImageMeta) -> bytes:
    """Insert iCCP, pHYs, eXIf and text chunks (XMP's included) right after IHDR (iCCP and
    pHYs must precede the pixel data; all are put there)."""
    chunks = b""
    if meta.icc_profile:
        chunks += _png_chunk(b"iCCP", b"ICC profile\0\0" + zlib.compress(meta.icc_profile))
    if meta.dpi:
        x, y = (round(d / 0.0254) for d in meta.dpi)  # pixels per metre
        chunks += _png_chunk(b"pHYs", struct.pack(">IIB", x, y, 1))
    if meta.exif:
        exif = meta.exif[6:] if meta.exif.startswith(b"Exif\0\0") else meta.exif
        chunks += _png_chunk(b"eXIf", exif)
    texts = list(meta.png_text)
    if meta.xmp:
        texts.append((XMP_KEYWORD, meta.xmp.decode("utf-8", "replace")))
    for key, text in texts:  # iTXt: keyword, no compression, no language or translation, UTF-8
        head = key.encode("latin-1", "replace") + b"\0\0\0\0\0"
        chunks += _png_chunk(b"iTXt", head + text.encode())
    end_of_ihdr = 8 + 8 + 13 + 4  # signature, IHDR length+type, IHDR data, CRC
    return png[:end_of_ihdr] + chunks + png[end_of_ihdr:]


# ----------------------------------------------------------------------------- atomic writes

TEMP_SUFFIX = ".tmp"
_TEMP_TAG = re.compile(r"(\d+)-[0-9a-f]{12}")  # pid-random, as temp_path writes it
_OLD_TEMP_TAG = re.compile(r"[0-9a-f]{12}")  # names from edgefill versions before the pid


def temp_path(path: Path) -> Path:
    """A hidden temp name next to ``path`` that says which process writes it (for cleanup)."""
    return path.parent / f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:12]}{TEMP_SUFFIX}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to someone else
        return True
    try:  # a zombie has exited, only its parent has not reaped it yet (a killed Ray worker)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):  # no /proc (macOS), or it just went away
        return True


def _abandoned(tmp: Path, tag: str) -> bool:
    """True for a temp file whose writing process is gone (or an old-style one over an hour old)."""
    ours = _TEMP_TAG.fullmatch(tag)
    if ours is not None:
        return not _pid_alive(int(ours.group(1)))  # a live one is being written right now
    return _OLD_TEMP_TAG.fullmatch(tag) is not None and _age_seconds(tmp) > 3600


def remove_stale_temps(path: Path) -> list[Path]:
    """Delete temp files of earlier writes to ``path`` whose process is gone (kill -9, power cut).

    Temp files of a live process (another edgefill writing the same file) are left alone."""
    return remove_stale_temps_in(path.parent, {path.name})


def remove_stale_temps_in(folder: Path, names: set[str]) -> list[Path]:
    """``remove_stale_temps`` for every file of ``names`` in ``folder``, with one listing."""
    removed: list[Path] = []
    pattern = f".{glob_escape(next(iter(names)))}.*" if len(names) == 1 else ".*"
    try:
        candidates = list(folder.glob(pattern + TEMP_SUFFIX))
    except OSError:
        return removed
    for tmp in candidates:
        target, _, tag = tmp.name[1 : -len(TEMP_SUFFIX)].rpartition(".")
        if target in names and _abandoned(tmp, tag):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed.append(tmp)
    return removed


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]" else c for c in name)


def _age_seconds(path: Path) -> float:
    import time

    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def write_atomic(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Write a file via a temp file + rename: a reader sees the old file or the new one, never
    half of one. Stale temp files from killed earlier runs are removed first."""
    path = Path(path)
    # The temp file is opened with open(), not mkstemp, so the result gets the usual umask
    # permissions (mkstemp's are 0600); its hidden .tmp name keeps it out of photo listings.
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path)
    except OSError as exc:
        raise EdgefillError(f"{path}: cannot write here ({exc.strerror})") from None
    tmp = temp_path(path)
    opened = False
    # One try from open() on: a SIGTERM that lands just after open() created the file (before
    # any later try block was entered) must remove it too.
    try:
        with open(tmp, "xb") as fh:
            opened = True
            write(fh)
        os.replace(tmp, path)
    except OSError as exc:  # cannot create here; disk full, a mode the format cannot store, ...
        tmp.unlink(missing_ok=True)
        if not opened:
            raise EdgefillError(f"{path}: cannot write here ({exc.strerror})") from None
        raise EdgefillError(f"{path}: could not write the image ({exc})") from None
    except BaseException:  # KeyboardInterrupt, SIGTERM (the CLI turns it into SystemExit)
        tmp.unlink(missing_ok=True)
        raise
    return path


def save_image(
    path: str | Path,
    arr: np.ndarray,
    quality: int | None = None,
    meta: ImageMeta | None = None,
) -> Path:
    """Write an array atomically (temp file + rename); the folder is created if missing."""
    path = Path(path)
    fmt = output_format(path)
    check_quality(quality)
    return write_atomic(path, lambda fh: write_image(fh, arr, fmt, meta, quality))


def readable_suffixes() -> set[str]:
    """File name suffixes of every format Pillow can open here (the set single-photo mode reads)."""
    Image.init()
    register_heif()
    return {ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
