"""The local web app: a FastAPI server for the page in ``web/`` and a small inpainting API.

    app = create_app(Inpainter.from_pretrained())     # or a zero-argument loader
    serve(app, host="127.0.0.1", port=7860)            # what ``edgefill serve`` runs

API (OpenAPI schema at ``/api/openapi.json``):

- ``POST /api/edges``   photo + mask [+ hd_strategy] -> PNG edge map the fill will use
- ``POST /api/inpaint`` photo + mask [+ edges, hd_strategy, refine] -> PNG result, photo size
- ``POST /api/select``  photo + box and/or scribbles -> PNG proposed object mask (GrabCut)
- ``POST /api/preview`` photo -> the photo as an upright 8-bit PNG (formats browsers lack)
- ``POST /api/detect``  photo [+ kind, sensitivity, confidence] -> PNG damage mask (white =
  damaged; with ``confidence=true`` each flagged pixel's grey level is its region's confidence)
- ``GET  /api/health``  model and limits as JSON

The model loads once. Model calls run one at a time (an asyncio lock) on a worker thread, so the
event loop keeps answering while a photo is being filled. Errors the user can cause are 4xx with a
one-line ``detail``; anything else is a 500 with a generic message and the traceback goes only to
the server log.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ctypes
import gc
import io
import ipaddress
import json
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import anyio
import numpy as np
from fastapi import APIRouter, Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image, UnidentifiedImageError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edgefill import __version__
from edgefill.backends import stoppable
from edgefill.config import (
    DAMAGE_KINDS,
    DEFAULT_SENSITIVITY,
    HD_STRATEGIES,
    SERVER_MAX_PIXELS,
    SERVER_MAX_UPLOAD_BYTES,
)
from edgefill.detect import CONFIDENT, analyse_damage, check_detector, detector_available
from edgefill.errors import EdgefillError, Stopped, check_stop
from edgefill.image import (
    Photo,
    encode_image,
    encode_png,
    load_recorded,
    load_rgb,
    open_any,
    photo_from_image,
    upright,
)
from edgefill.masks import made_on_stored_pixels
from edgefill.pipeline import Inpainter, InpaintResult, load_guide, prepare_inputs
from edgefill.selection import parse_box, select_object

log = logging.getLogger("edgefill.server")

WEB_DIR = Path(__file__).parent / "web"
DEFAULT_MAX_QUEUE = 16  # model calls waiting for the lock before new ones get 503
# Decoded pixels all requests in flight may hold together (photo + mask + edges); a request that
# would go over gets 503 + Retry-After instead of pushing the server into swap. Each pixel costs
# about 20-30 bytes across the decoded image, arrays, result and encoded PNG.
DEFAULT_PIXEL_BUDGET_FACTOR = 2  # the budget is this many largest photos (max_pixels)
MAX_ASPECT = 50  # longest side / shortest side; a 10 000 000 x 4 strip is refused
RETRY_AFTER_S = 5
TRIM_AFTER_PIXELS = 4_000_000  # give freed memory back to the OS after requests this big
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]

PNG = "image/png"
_PNG_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {PNG: {}}, "description": "a PNG image"},
    400: {"description": "bad input (not an image, mask of another size, ...)"},
    413: {"description": "upload or image too large"},
    503: {
        "description": "busy (too many requests or pixels in flight; see Retry-After), or the "
        "model failed to load"
    },
}

InpainterOrLoader = Inpainter | Callable[[], Inpainter]

PhotoField = Annotated[UploadFile, File(description="the photo (PNG, JPEG, WebP, BMP, TIFF)")]
MaskField = Annotated[
    UploadFile | None,
    File(
        description="mask of the same size, white = hole (optional for a photo whose "
        "transparent pixels are the hole)"
    ),
]

EdgesField = Annotated[
    UploadFile | None,
    File(
        description="optional edited edge map (white lines on black, photo size); "
        "its values replace the predicted edges inside the hole"
    ),
]


KindField = Annotated[
    str,
    Form(description=f"damage to look for: {', '.join(DAMAGE_KINDS)} (auto = scratches and spots)"),
]
SensitivityField = Annotated[
    float, Form(description="0 to 1; higher flags fainter damage and more pixels")
]
HdStrategyField = Annotated[
    str | None,
    Form(
        description=f"high-resolution strategy: {', '.join(HD_STRATEGIES)} "
        "(default: the server's setting, crop)"
    ),
]
RefineField = Annotated[
    bool, Form(description="blend the fill's seam into the photo (edgefill inpaint --refine)")
]
BoxField = Annotated[
    str | None, Form(description="x0,y0,x1,y1 in photo pixels: a box around the object")
]
ScribblesField = Annotated[
    UploadFile | None,
    File(description="optional gray PNG of the photo's size: 255 = object, 128 = not, 0 = unknown"),
]
GrowMaskField = Annotated[
    int, Form(description="px the hole is widened by first (edgefill inpaint --grow-mask)")
]
GrowField = Annotated[
    int | None,
    Form(description="px added around the proposed mask (default: 0.5 % of the longer side)"),
]


class UploadError(Exception):
    """A bad upload: becomes an HTTP error with ``status`` and a one-line ``detail``."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers


def busy(detail: str) -> UploadError:
    return UploadError(503, detail, {"Retry-After": str(RETRY_AFTER_S)})


# ----------------------------------------------------------------------------- decoding


def decode_upload(data: bytes, field: str, max_pixels: int) -> Image.Image:
    """An uploaded file as a loaded PIL image (EXIF orientation applied), or an UploadError.

    The pixel count is checked from the header before any pixel is decoded (decompression bombs).
    ``img.info`` records what the file says that decoding loses (``image.load_recorded``: bit
    depth, format, JPEG subsampling), so 16-bit photos stay 16-bit.
    """
    img = peek_upload(data, field, max_pixels)
    try:
        load_recorded(img)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise UploadError(400, f"{field}: the image is damaged or truncated ({exc})") from None
    return upright(img)


def peek_upload(data: bytes, field: str, max_pixels: int) -> Image.Image:
    """The upload opened but not decoded: its size is checked (pixels, aspect ratio) first."""
    if not data:
        raise UploadError(400, f"{field}: the file is empty")
    try:
        img = open_any(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise UploadError(413, f"{field}: image has too many pixels") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise UploadError(
            400, f"{field}: not an image this server can read (use PNG, JPEG, WebP, BMP or TIFF)"
        ) from None
    w, h = img.size
    if w < 1 or h < 1:
        raise UploadError(400, f"{field}: image has no pixels ({w}x{h})")
    if w * h > max_pixels:
        raise UploadError(
            413,
            f"{field}: {w}x{h} = {w * h / 1e6:.1f} MP exceeds this server's limit of "
            f"{max_pixels / 1e6:.0f} MP",
        )
    if max(w, h) > MAX_ASPECT * min(w, h):
        # A strip like 10 000 000 x 4 passes the pixel limit but would hold the model for
        # minutes (and runs no faster for being thin): refuse it before decoding.
        raise UploadError(
            413, f"{field}: {w}x{h} is too elongated (this server takes at most {MAX_ASPECT}:1)"
        )
    return img


def check_hd_strategy(value: str | None) -> str | None:
    if value is not None and value not in HD_STRATEGIES:
        raise UploadError(
            400, f"hd_strategy must be one of {', '.join(HD_STRATEGIES)}, got {value!r}"
        )
    return value


def edge_map_u8(
    inp: Inpainter,
    rgb: np.ndarray,
    hole: np.ndarray,
    strategy: str | None,
    stop: threading.Event | None = None,
) -> np.ndarray:
    """The composite edge map inpainting will use, through the same windows (one code path)."""
    comp = inp.edge_map(rgb, hole, hd_strategy=strategy, stop=stop)
    return np.round(np.clip(comp, 0, 1) * 255).astype(np.uint8)


def inpaint_rgb(
    inp: Inpainter,
    rgb: np.ndarray,
    hole: np.ndarray,
    guide: np.ndarray | None,
    strategy: str | None,
    refine_seam: bool,
    stop: threading.Event | None = None,
) -> np.ndarray:
    """The filled photo (RGB uint8), seam-refined if asked; alpha, 16-bit samples and metadata
    are put back by ``InpaintResult.output_array``. ``stop``: as ``Inpainter.inpaint_arrays``'s,
    and checked again before the seam refinement."""
    result, comp = inp.inpaint_arrays(rgb, hole, guide, hd_strategy=strategy, stop=stop)
    check_stop(stop)
    if refine_seam:
        from edgefill.refine import refine

        result = refine(result, hole, comp)
    return result


def selection_u8(
    rgb: np.ndarray, box: str | None, scribbles: Image.Image | None, grow: int | None
) -> np.ndarray:
    """GrabCut's proposed object mask, white on black."""
    h, w = rgb.shape[:2]
    marks = None
    if scribbles is not None:
        if scribbles.size != (w, h):
            raise UploadError(
                400,
                f"scribbles are {scribbles.size[0]}x{scribbles.size[1]} but the photo is "
                f"{w}x{h}; they must be the same size",
            )
        marks = np.asarray(scribbles.convert("L"))
    parsed = None if box is None or not box.strip() else parse_box(box, w, h)
    return select_object(rgb, parsed, marks, grow).astype(np.uint8) * 255


def _png(data: bytes, seconds: float) -> Response:
    return Response(
        data,
        media_type=PNG,
        headers={"Cache-Control": "no-store", "X-Edgefill-Seconds": f"{seconds:.3f}"},
    )


# ----------------------------------------------------------------------------- admission


def give_memory_back() -> None:
    """Return freed heap memory to the OS (glibc keeps it otherwise: RSS stays at its peak)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PixelBudget:
    """Admission by decoded pixels: requests reserve their images' pixel counts (read from the
    headers, before decoding) and give them back when answered. A reservation that would go over
    ``total`` is refused with 503 + Retry-After, except for a request that has the server to
    itself, so a photo up to max_pixels always gets through eventually."""

    def __init__(self, total: int):
        self.total = total
        self.used = 0
        self.peak_request = 0  # pixels of the largest request since memory was last trimmed

    @contextlib.asynccontextmanager
    async def request(self) -> Any:
        ticket = _Ticket(self)
        try:
            yield ticket
        finally:
            self.used -= ticket.pixels
            self.peak_request = max(self.peak_request, ticket.pixels)
            if self.used == 0 and self.peak_request >= TRIM_AFTER_PIXELS:
                self.peak_request = 0
                await anyio.to_thread.run_sync(give_memory_back)


class _Ticket:
    def __init__(self, budget: PixelBudget):
        self.budget = budget
        self.pixels = 0

    def reserve(self, pixels: int) -> None:
        b = self.budget
        others = b.used - self.pixels
        if others > 0 and b.used + pixels > b.total:
            raise busy(
                f"the server is busy ({others / 1e6:.0f} MP of photos in progress); try again shortly"
            )
        b.used += pixels
        self.pixels += pixels


_TICKET: contextvars.ContextVar[_Ticket | None] = contextvars.ContextVar("ticket", default=None)


def current_ticket() -> _Ticket:
    """The admission ticket of the request being handled (a private one outside the app)."""
    ticket = _TICKET.get()
    return ticket if ticket is not None else _Ticket(PixelBudget(2**62))


class Admission:
    """Gives every API request a ticket on the pixel budget, released when it is answered."""

    def __init__(self, app: ASGIApp, budget: PixelBudget):
        self.app = app
        self.budget = budget

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        async with self.budget.request() as ticket:
            token = _TICKET.set(ticket)
            try:
                await self.app(scope, receive, send)
            finally:
                _TICKET.reset(token)


# ----------------------------------------------------------------------------- model access


Gone = Callable[[], Awaitable[bool]]
GONE_POLL_SECONDS = 0.25


async def _set_when_gone(gone: Gone, stop: threading.Event) -> None:
    while not await gone():
        await anyio.sleep(GONE_POLL_SECONDS)
    stop.set()


def client_gone() -> UploadError:
    # 499, nginx's "client closed request": nobody reads it, but the log says what happened.
    return UploadError(499, "the client left before the answer; the work was given up")


class ModelRunner:
    """Holds the one Inpainter; runs model calls one at a time on a worker thread."""

    def __init__(self, inpainter_or_loader: InpainterOrLoader, max_queue: int):
        if isinstance(inpainter_or_loader, Inpainter):
            self._inpainter: Inpainter | None = inpainter_or_loader
            self._loader: Callable[[], Inpainter] | None = None
        else:
            self._inpainter = None
            self._loader = inpainter_or_loader
        self.load_error: str | None = None
        self.max_queue = max_queue
        self.waiting = 0  # requests holding or waiting for the lock
        self.served = 0
        self._locks: dict[str, asyncio.Lock] = {}
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    def _get_lock(self, lane: str) -> asyncio.Lock:
        # One lock per lane and event loop: a server has one loop; test clients may start
        # several. Damage detection has its own lane, so a long detection never holds up an
        # inpainting request (and the reverse).
        loop = asyncio.get_running_loop()
        if self._lock_loop is not loop:
            self._locks, self._lock_loop = {}, loop
        return self._locks.setdefault(lane, asyncio.Lock())

    def _ensure_loaded(self) -> Inpainter:
        """Called with the lock held, on the worker thread."""
        if self._inpainter is None:
            if self.load_error is not None:
                raise UploadError(503, f"the model could not be loaded: {self.load_error}")
            assert self._loader is not None
            try:
                self._inpainter = self._loader()
            except EdgefillError as exc:
                self.load_error = str(exc)
                raise UploadError(503, f"the model could not be loaded: {exc}") from None
        return self._inpainter

    @property
    def inpainter(self) -> Inpainter | None:
        return self._inpainter

    async def run(
        self,
        fn: Callable[[Inpainter | None, threading.Event], Any],
        needs_model: bool = True,
        gone: Gone | None = None,
    ) -> Any:
        """Run ``fn(inpainter, stop)`` on a worker thread once every earlier call has finished.

        ``needs_model=False`` (damage detection) passes None and never loads the model, so it
        works while the model is still loading or failed to load. ``gone`` (the request's
        ``is_disconnected``): a call whose client has left (the page's Cancel) is not started,
        and one running gets its ``stop`` event set, which ``fn`` may pass to the model
        (``Stopped``), so the next request does not wait for work nobody will see."""
        if self.waiting >= self.max_queue:
            raise busy(f"the server is busy ({self.waiting} requests waiting); try again shortly")
        self.waiting += 1
        try:
            async with self._get_lock("model" if needs_model else "detect"):
                if gone is not None and await gone():
                    raise client_gone()
                # Cancellation (client gone) waits for the thread, so the lock is never released
                # while the model is still running.
                stop = threading.Event()
                watcher = (
                    None if gone is None else asyncio.ensure_future(_set_when_gone(gone, stop))
                )
                try:
                    result = await anyio.to_thread.run_sync(
                        lambda: fn(self._ensure_loaded() if needs_model else None, stop)
                    )
                except Stopped:
                    raise client_gone() from None
                finally:
                    if watcher is not None:
                        watcher.cancel()
                self.served += 1
                return result
        finally:
            self.waiting -= 1


# ----------------------------------------------------------------------------- middleware


class _BodyTooLarge(Exception):
    pass


async def send_json_error(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _host_name(value: str) -> str:
    """'Example.com:7860' -> 'example.com'; '[::1]:7860' -> '[::1]'."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[: value.find("]") + 1] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _host_allowed(name: str, allowed: list[str]) -> bool:
    for pattern in allowed:
        pattern = pattern.lower()
        if pattern == "*" or name == pattern:
            return True
        if pattern.startswith("*.") and name.endswith(pattern[1:]):
            return True
    return False


class HostOriginGuard:
    """Answers only requests addressed to this server by one of its own names (Host, 400) and,
    when a browser says which page sent them, only from this server's own pages (Origin, 403).

    A DNS-rebinding page sends ``Host: evil.com`` and ``Origin: http://evil.com`` to whatever
    address evil.com now resolves to; both are refused whatever address the server listens on.
    """

    def __init__(self, app: ASGIApp, allowed_hosts: list[str]):
        self.app = app
        self.allowed = list(allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if not _host_allowed(_host_name(headers.get("host", "")), self.allowed):
            await send_json_error(send, 400, "invalid host header")
            return
        origin = headers.get("origin")
        if origin is not None and origin != "null":
            netloc = urlsplit(origin).netloc
            if not _host_allowed(_host_name(netloc), self.allowed):
                await send_json_error(send, 403, "requests from other sites are not allowed")
                return
        await self.app(scope, receive, send)


class RequestGuard:
    """Limits request bodies (413) and refuses cross-origin POSTs to the API (403).

    A page on another site can send a multipart POST to a local server without any CORS
    preflight; browsers always add an ``Origin`` header to such requests, so a POST whose Origin
    is not this server's own address is refused before its body is read.
    """

    def __init__(self, app: ASGIApp, max_body: int):
        self.app = app
        self.max_body = max_body

    async def _error(self, send: Send, status: int, detail: str) -> None:
        await send_json_error(send, status, detail)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        origin = headers.get("origin")
        if (
            origin is not None
            and urlsplit(origin).netloc.lower() != headers.get("host", "").lower()
        ):
            await self._error(send, 403, "cross-origin requests to this server are not allowed")
            return
        limit_mb = f"{self.max_body / 2**20:.0f} MB"
        try:
            declared = int(headers.get("content-length", "0"))
        except ValueError:
            declared = 0
        if declared > self.max_body:
            await self._error(send, 413, f"upload too large (limit {limit_mb})")
            return

        state = {"received": 0, "too_large": False, "started": False}

        async def counted_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.max_body:
                    state["too_large"] = True
                    raise _BodyTooLarge()
            return message

        async def guarded_send(message: Message) -> None:
            if state["too_large"]:
                return  # the app's answer to the aborted body is replaced by a 413 below
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except _BodyTooLarge:
            pass
        if state["too_large"] and not state["started"]:
            await self._error(send, 413, f"upload too large (limit {limit_mb})")


class SecurityHeaders:
    """No outside resources, no framing, no MIME sniffing for everything this server sends."""

    CSP = (
        "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
        "form-action 'none'"
    )

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", self.CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


# ----------------------------------------------------------------------------- routes


@dataclass(frozen=True)
class Limits:
    max_pixels: int  # per image
    max_upload_bytes: int  # per request


def _runner(request: Request) -> ModelRunner:
    return request.app.state.runner


def _limits(request: Request) -> Limits:
    return request.app.state.limits


def _budget(request: Request) -> PixelBudget:
    return request.app.state.budget


def _detector(request: Request) -> str | None:
    return request.app.state.detector


RunnerDep = Annotated[ModelRunner, Depends(_runner)]
DetectorDep = Annotated[str | None, Depends(_detector)]
LimitsDep = Annotated[Limits, Depends(_limits)]
BudgetDep = Annotated[PixelBudget, Depends(_budget)]


async def read_image(
    upload: UploadFile | None, field: str, max_pixels: int
) -> tuple[Image.Image, bytes] | None:
    """An optional upload decoded on a worker thread (``decode_upload``) and its bytes; its
    pixels are reserved from the request's pixel budget first."""
    if upload is None:
        return None
    data = await upload.read()
    w, h = peek_upload(data, field, max_pixels).size
    current_ticket().reserve(w * h)
    return await anyio.to_thread.run_sync(decode_upload, data, field, max_pixels), data


async def read_upload(upload: UploadFile | None, field: str, max_pixels: int) -> Image.Image | None:
    got = await read_image(upload, field, max_pixels)
    return None if got is None else got[0]


async def photo_inputs(
    photo: UploadFile, mask: UploadFile | None, max_pixels: int, grow_mask: int = 0
) -> tuple[Photo, np.ndarray, bool]:
    """(photo with its 16-bit samples and metadata, hole, keep the photo's alpha) of an upload,
    by the library's one input path (``masks.prepare_inputs``; no model needed)."""
    got = await read_image(photo, "photo", max_pixels)
    mask_img = await read_upload(mask, "mask", max_pixels)
    assert got is not None
    photo_img, data = got
    turned = photo_img.info.get("edgefill_orientation", 1)
    shape = None if mask_img is None else (mask_img.height, mask_img.width)
    fits = shape is None or shape == (photo_img.height, photo_img.width)
    # A mask made on a turned photo's stored pixels fits too: prepare_inputs turns it.
    if not fits and not made_on_stored_pixels(shape, photo_img.size, turned):
        raise UploadError(
            400,
            f"mask is {mask_img.size[0]}x{mask_img.size[1]} but the photo is "
            f"{photo_img.size[0]}x{photo_img.size[1]}; they must be the same size",
        )

    def prepare() -> tuple[Photo, np.ndarray, bool]:
        source = photo_from_image(photo_img, data)
        if mask_img is None and source.alpha is None:
            raise UploadError(
                400, "mask: no mask given and the photo has no transparency to use as one"
            )
        return prepare_inputs(source, mask_img, max_pixels=max_pixels, grow_mask=grow_mask)

    return await anyio.to_thread.run_sync(prepare)


async def read_inputs(
    photo: UploadFile, mask: UploadFile | None, max_pixels: int, grow_mask: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(RGB, hole, alpha to keep or None): ``photo_inputs`` for the 8-bit-only endpoints."""
    source, hole, keep_alpha = await photo_inputs(photo, mask, max_pixels, grow_mask)
    return source.rgb, hole, source.alpha if keep_alpha else None


async def run_model(
    runner: ModelRunner,
    fn: Callable[[Inpainter | None, threading.Event], Any],
    request: Request,
    needs_model: bool = True,
) -> tuple[Any, float]:
    """``fn`` on the model thread (``ModelRunner.run``, given up when ``request``'s client
    leaves) and the seconds it took."""
    t0 = time.perf_counter()
    out = await runner.run(fn, needs_model, request.is_disconnected)
    return out, time.perf_counter() - t0


async def run_to_png(
    runner: ModelRunner,
    fn: Callable[[Inpainter | None, threading.Event], np.ndarray],
    request: Request,
    needs_model: bool = True,
) -> tuple[Response, np.ndarray]:
    """``fn`` on the model thread (``run_model``), its uint8 array answered as a PNG with
    the model time in ``X-Edgefill-Seconds``; also returns the array."""
    arr, seconds = await run_model(runner, fn, request, needs_model)
    data = await anyio.to_thread.run_sync(encode_png, arr)
    return _png(data, seconds), arr


api = APIRouter(prefix="/api", tags=["api"])


@api.get("/health")
async def health(
    runner: RunnerDep, limits: LimitsDep, budget: BudgetDep, detector: DetectorDep
) -> dict[str, Any]:
    """Whether the model is loaded, which one, and the upload limits the page should respect."""
    inp = runner.inpainter
    return {
        "status": "error" if runner.load_error else "ok",
        "detail": runner.load_error,
        "version": __version__,
        "model_loaded": inp is not None,
        "model": None
        if inp is None
        else {
            "device": str(inp.device),
            "width": inp.config.width,
            "edge_blocks": inp.config.edge_blocks,
            "inpaint_blocks": inp.config.inpaint_blocks,
            "info": {k: v for k, v in inp.info.items() if isinstance(v, (str, int, float))},
        },
        # The page shows its "Detect damage" button when this is true; "net" or "classical"
        # says which detector method="auto" picks (the network needs its installed weights).
        "detect": True,
        "detect_method": "net" if detector or detector_available() else "classical",
        "busy": runner.waiting,
        "pixels_in_progress": budget.used,
        "pixel_budget": budget.total,
        "served": runner.served,
        "max_upload_bytes": limits.max_upload_bytes,
        "max_pixels": limits.max_pixels,
    }


@api.post("/edges", response_class=Response, responses=_PNG_RESPONSE)
async def edges(
    request: Request,
    photo: PhotoField,
    runner: RunnerDep,
    limits: LimitsDep,
    mask: MaskField = None,
    hd_strategy: HdStrategyField = None,
    grow_mask: GrowMaskField = 0,
) -> Response:
    """The edge map the fill will use: Canny edges of the known pixels, predicted edges
    inside the hole, computed on the same windows as ``/api/inpaint`` (zero outside them
    with the crop strategy). White lines on black, photo size."""
    strategy = check_hd_strategy(hd_strategy)
    rgb, hole, _ = await read_inputs(photo, mask, limits.max_pixels, grow_mask)
    resp, _ = await run_to_png(
        runner, lambda inp, stop: edge_map_u8(inp, rgb, hole, strategy, stop), request
    )
    return resp


@api.post("/inpaint", response_class=Response, responses=_PNG_RESPONSE)
async def inpaint(
    request: Request,
    photo: PhotoField,
    runner: RunnerDep,
    limits: LimitsDep,
    mask: MaskField = None,
    edges: EdgesField = None,
    hd_strategy: HdStrategyField = None,
    refine: RefineField = False,
    grow_mask: GrowMaskField = 0,
) -> Response:
    """Fill the hole. Pixels outside it come back unchanged, 16-bit photos as 16-bit PNGs;
    an alpha channel and the ICC profile, EXIF, XMP and DPI are kept."""
    strategy = check_hd_strategy(hd_strategy)
    source, hole, keep_alpha = await photo_inputs(photo, mask, limits.max_pixels, grow_mask)
    rgb = source.rgb
    guide = None
    if edges is not None:
        edge_img = await read_upload(edges, "edges", limits.max_pixels)
        h, w = hole.shape
        turned = source.meta.orientation  # an edge map of the stored pixels is turned too
        guide = await anyio.to_thread.run_sync(
            load_guide, edge_img, w, h, limits.max_pixels, turned
        )
    result, seconds = await run_model(
        runner,
        lambda inp, stop: inpaint_rgb(inp, rgb, hole, guide, strategy, refine, stop),
        request,
    )
    alpha = source.alpha if keep_alpha else None
    done = InpaintResult(result, np.zeros(0), hole, alpha, source.deep, source.meta)
    data = await anyio.to_thread.run_sync(
        lambda: encode_image(done.output_array(), "PNG", done.meta)
    )
    return _png(data, seconds)


@api.post("/preview", response_class=Response, responses=_PNG_RESPONSE)
async def preview(photo: PhotoField, limits: LimitsDep) -> Response:
    """The photo upright in 8 bits (RGBA where it has transparency), for a page whose browser
    cannot show its format (TIFF scans, HEIC): the page shows this and still sends the original
    file, which the other routes read at full depth. Needs no model. The header
    ``X-Edgefill-Orientation`` is the EXIF orientation the photo was turned by."""
    got = await read_image(photo, "photo", limits.max_pixels)
    assert got is not None
    img, data = got

    def encode() -> bytes:
        source = photo_from_image(img, data)
        rgb, alpha = source.rgb, source.alpha
        return encode_png(rgb if alpha is None else np.dstack([rgb, alpha]))

    resp = _png(await anyio.to_thread.run_sync(encode), 0.0)
    # What the photo was turned by: a mask file made on its stored pixels is turned the same
    # way by the page (masks.made_on_stored_pixels).
    resp.headers["X-Edgefill-Orientation"] = str(img.info.get("edgefill_orientation", 1))
    return resp


@api.post("/select", response_class=Response, responses=_PNG_RESPONSE)
async def select(
    request: Request,
    photo: PhotoField,
    runner: RunnerDep,
    limits: LimitsDep,
    box: BoxField = None,
    scribbles: ScribblesField = None,
    grow: GrowField = None,
) -> Response:
    """Propose a mask for the object in ``box`` and/or marked by ``scribbles`` (OpenCV
    GrabCut, no model): white = object, photo size. Needs no inpainting model."""
    photo_img = await read_upload(photo, "photo", limits.max_pixels)
    marks = await read_upload(scribbles, "scribbles", limits.max_pixels)
    rgb, _ = await anyio.to_thread.run_sync(load_rgb, photo_img, limits.max_pixels)
    resp, _ = await run_to_png(
        runner, lambda _, __: selection_u8(rgb, box, marks, grow), request, needs_model=False
    )
    return resp


ConfidenceField = Annotated[
    bool,
    Form(
        description="true: each flagged pixel's grey level is its region's confidence "
        "(1-255 = 0-1; confident from X-Edgefill-Confident-At x 255); false: white = damaged"
    ),
]


@api.post("/detect", response_class=Response, responses=_PNG_RESPONSE)
async def detect(
    request: Request,
    photo: PhotoField,
    runner: RunnerDep,
    limits: LimitsDep,
    detector: DetectorDep,
    kind: KindField = "auto",
    sensitivity: SensitivityField = DEFAULT_SENSITIVITY,
    confidence: ConfidenceField = False,
) -> Response:
    """Find scratches, folds, dust and spots: a mask of the photo's size, white = damaged.

    Headers: ``X-Edgefill-Damage-Fraction`` (the flagged share of the photo),
    ``X-Edgefill-Confident-Fraction`` (the share in confident regions), ``X-Edgefill-Regions`` and
    ``X-Edgefill-Uncertain-Regions`` (counts), ``X-Edgefill-Confident-At`` (the threshold)."""
    photo_img = await read_upload(photo, "photo", limits.max_pixels)
    rgb, _ = await anyio.to_thread.run_sync(load_rgb, photo_img, limits.max_pixels)
    found: dict[str, Any] = {}

    def run(_: Inpainter | None, stop: threading.Event) -> np.ndarray:
        with stoppable(stop):  # its network stops at the next layer; the rest runs to its end
            dm = analyse_damage(rgb, kind, sensitivity, detector=detector)
        found.update(dm.summary())
        if not confidence:
            return dm.mask.astype(np.uint8) * 255
        return dm.confidence_levels()

    resp, mask = await run_to_png(runner, run, request, needs_model=False)
    resp.headers["X-Edgefill-Damage-Fraction"] = f"{float((mask > 0).mean()):.6f}"
    resp.headers["X-Edgefill-Confident-Fraction"] = f"{found['confident_fraction']:.6f}"
    resp.headers["X-Edgefill-Regions"] = str(found["regions"])
    resp.headers["X-Edgefill-Uncertain-Regions"] = str(found["uncertain_regions"])
    resp.headers["X-Edgefill-Confident-At"] = f"{CONFIDENT:g}"
    return resp


# ----------------------------------------------------------------------------- app


def add_error_handlers(app: FastAPI) -> None:
    """User errors -> 4xx with a one-line detail; anything else -> a generic 500 (log only)."""

    @app.exception_handler(UploadError)
    async def _upload_error(request: Request, exc: UploadError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(EdgefillError)
    async def _user_error(request: Request, exc: EdgefillError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(Exception)
    async def _server_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("error handling %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse(
            {"detail": "internal server error; the details are in the server's log"},
            status_code=500,
        )


def create_app(
    inpainter_or_loader: InpainterOrLoader,
    max_upload_bytes: int = SERVER_MAX_UPLOAD_BYTES,
    max_pixels: int = SERVER_MAX_PIXELS,
    max_queue: int = DEFAULT_MAX_QUEUE,
    allowed_hosts: list[str] | None = None,
    static_dir: str | Path = WEB_DIR,
    pixel_budget: int | None = None,
    detector: str | Path | None = None,
) -> FastAPI:
    """The web app around an Inpainter (or a zero-argument function that loads one once).

    ``allowed_hosts``: Host (and Origin) names to accept (None = any); ``serve`` always passes
    a list (``allowed_hosts_for``), which stops DNS-rebinding pages from reaching the API.
    ``pixel_budget``: decoded pixels all requests may hold at once (default 2 x max_pixels).
    ``detector``: a released damage detector folder for *Detect damage* (default: the shipped one).
    """
    check_detector("auto", detector)  # a folder without a release fails now, not per request
    budget = PixelBudget(pixel_budget or DEFAULT_PIXEL_BUDGET_FACTOR * max_pixels)
    app = FastAPI(
        title="edgefill",
        version=__version__,
        description="Edge-guided photo inpainting (EdgeConnect). Masks: white = hole.",
        # FastAPI's /docs and /redoc pages load their scripts from a CDN; this server makes no
        # outside request of any kind, so only the schema itself is served.
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.runner = ModelRunner(inpainter_or_loader, max_queue)
    app.state.limits = Limits(max_pixels, max_upload_bytes)
    app.state.budget = budget
    app.state.detector = None if detector is None else str(detector)
    add_error_handlers(app)
    app.include_router(api)
    # The page. StaticFiles resolves every path inside ``static_dir`` and refuses anything that
    # would leave it (../, %2e%2e, symlinks), answering 404.
    app.mount("/", StaticFiles(directory=str(static_dir), html=True), name="web")

    app.add_middleware(Admission, budget=budget)
    app.add_middleware(RequestGuard, max_body=max_upload_bytes)
    app.add_middleware(SecurityHeaders)
    if allowed_hosts is not None:
        app.add_middleware(HostOriginGuard, allowed_hosts=allowed_hosts)
    return app


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    return host.strip("[]") in ("", "0.0.0.0", "::")


def local_addresses() -> list[str]:
    """This machine's host names and non-loopback IP addresses (best effort, no traffic sent)."""
    names: list[str] = []
    with contextlib.suppress(OSError):
        names += [socket.gethostname().lower(), socket.getfqdn().lower()]
    with contextlib.suppress(OSError):
        for info in socket.getaddrinfo(socket.gethostname(), None):
            names.append(str(info[4][0]))
    for family, probe in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        # "Connecting" a UDP socket only picks the outgoing interface; nothing is sent.
        with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((probe, 9))
            names.append(str(sock.getsockname()[0]))
    out = []
    for name in names:
        if name and not is_loopback(name) and name not in out:
            out.append(name)
    return out


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def allowed_hosts_for(host: str, extra: list[str] | None = None) -> list[str]:
    """Host names the server answers to: the loopback names, the address it listens on (all of
    this machine's names and addresses for 0.0.0.0 / ::), and ``extra`` (--allowed-host)."""
    names = list(LOOPBACK_HOSTS)
    if is_wildcard(host):
        names += [_bracket(a) for a in local_addresses()]
    elif not is_loopback(host):
        names.append(_bracket(host.lower()))
    for name in extra or []:
        name = name.strip().lower()
        if not name or "/" in name:
            raise EdgefillError(
                f"--allowed-host expects a host name like photos.example, got {name!r}"
            )
        names.append(_host_name(name))
    return list(dict.fromkeys(names))


def urls_to_open(host: str, port: int) -> list[str]:
    """The addresses a browser can really use (never http://0.0.0.0/)."""
    if is_wildcard(host):
        hosts = ["127.0.0.1"] + [_bracket(a) for a in local_addresses() if ":" not in a]
    else:
        hosts = [_bracket(host)]
    return [f"http://{h}:{port}/" for h in hosts]


def check_port_free(host: str, port: int) -> None:
    """A clear error now if another program listens on the port (uvicorn's would come later)."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            sock.bind((host.strip("[]") or "0.0.0.0", port))
        except OSError as exc:
            if exc.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
                raise EdgefillError(
                    f"port {port} on {host} is already in use (another edgefill serve?); "
                    "stop it or choose another --port"
                ) from None
            raise EdgefillError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def serve(
    inpainter_or_loader: InpainterOrLoader,
    host: str = "127.0.0.1",
    port: int = 7860,
    max_upload_bytes: int = SERVER_MAX_UPLOAD_BYTES,
    max_pixels: int = SERVER_MAX_PIXELS,
    log_level: str = "info",
    allowed_hosts: list[str] | None = None,
    pixel_budget: int | None = None,
    detector: str | Path | None = None,
) -> None:
    """Run the app with uvicorn until interrupted (what ``edgefill serve`` does).

    Host and Origin headers are checked in every mode (``allowed_hosts``, default
    ``allowed_hosts_for(host)``), also when listening on all interfaces."""
    import uvicorn

    hosts = allowed_hosts if allowed_hosts is not None else allowed_hosts_for(host)
    app = create_app(
        inpainter_or_loader,
        max_upload_bytes,
        max_pixels,
        allowed_hosts=hosts,
        pixel_budget=pixel_budget,
        detector=detector,
    )
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    urls = urls_to_open(host, port)
    print(f"edgefill: open {' or '.join(urls)} in your browser (Ctrl+C stops the server)")
    uvicorn.run(app, host=host, port=port, log_level=log_level, server_header=False)
