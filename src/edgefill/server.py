"""The local web app: a FastAPI server for the page in ``web/`` and a small inpainting API.

    app = create_app(Inpainter.from_pretrained())     # or a zero-argument loader
    serve(app, host="127.0.0.1", port=7860)            # what ``edgefill serve`` runs

API (OpenAPI schema at ``/api/openapi.json``):

- ``POST /api/edges``   photo + mask [+ hd_strategy] -> PNG edge map the fill will use
- ``POST /api/inpaint`` photo + mask [+ edges, hd_strategy, refine] -> PNG result, photo size
- ``POST /api/select``  photo + box and/or scribbles -> PNG proposed object mask (GrabCut)
- ``POST /api/detect``  photo [+ kind, sensitivity] -> PNG damage mask (white = damaged)
- ``GET  /api/health``  model and limits as JSON

The model loads once. Model calls run one at a time (an asyncio lock) on a worker thread, so the
event loop keeps answering while a photo is being filled. Errors the user can cause are 4xx with a
one-line ``detail``; anything else is a 500 with a generic message and the traceback goes only to
the server log.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import anyio
import numpy as np
from fastapi import APIRouter, Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image, ImageOps, UnidentifiedImageError
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edgefill import __version__
from edgefill.config import (
    DAMAGE_KINDS,
    DEFAULT_SENSITIVITY,
    HD_STRATEGIES,
    SERVER_MAX_PIXELS,
    SERVER_MAX_UPLOAD_BYTES,
)
from edgefill.detect import detect_damage, detector_available
from edgefill.errors import EdgefillError
from edgefill.image import encode_png, load_rgb
from edgefill.masks import load_photo_and_mask
from edgefill.pipeline import Inpainter, load_guide
from edgefill.selection import parse_box, select_object

log = logging.getLogger("edgefill.server")

WEB_DIR = Path(__file__).parent / "web"
DEFAULT_MAX_QUEUE = 16  # model calls waiting for the lock before new ones get 503
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]

PNG = "image/png"
_PNG_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {PNG: {}}, "description": "a PNG image"},
    400: {"description": "bad input (not an image, mask of another size, ...)"},
    413: {"description": "upload or image too large"},
    503: {"description": "too many requests waiting for the model, or the model failed to load"},
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
GrowField = Annotated[
    int | None,
    Form(description="px added around the proposed mask (default: 0.5 % of the longer side)"),
]


class UploadError(Exception):
    """A bad upload: becomes an HTTP error with ``status`` and a one-line ``detail``."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


# ----------------------------------------------------------------------------- decoding


def decode_upload(data: bytes, field: str, max_pixels: int) -> Image.Image:
    """An uploaded file as a loaded PIL image (EXIF orientation applied), or an UploadError.

    The pixel count is checked from the header before any pixel is decoded (decompression bombs).
    """
    if not data:
        raise UploadError(400, f"{field}: the file is empty")
    try:
        img = Image.open(io.BytesIO(data))
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
    try:
        img.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise UploadError(400, f"{field}: the image is damaged or truncated ({exc})") from None
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block must not make the photo unusable
        return img


def check_hd_strategy(value: str | None) -> str | None:
    if value is not None and value not in HD_STRATEGIES:
        raise UploadError(
            400, f"hd_strategy must be one of {', '.join(HD_STRATEGIES)}, got {value!r}"
        )
    return value


def edge_map_u8(
    inp: Inpainter, rgb: np.ndarray, hole: np.ndarray, strategy: str | None
) -> np.ndarray:
    """The composite edge map inpainting will use, through the same windows (one code path)."""
    comp = inp.edge_map(rgb, hole, hd_strategy=strategy)
    return np.round(np.clip(comp, 0, 1) * 255).astype(np.uint8)


def inpaint_rgb(
    inp: Inpainter,
    rgb: np.ndarray,
    hole: np.ndarray,
    alpha: np.ndarray | None,
    guide: np.ndarray | None,
    strategy: str | None,
    refine_seam: bool,
) -> np.ndarray:
    """The filled photo (with its alpha channel when it had one), seam-refined if asked."""
    result, comp = inp.inpaint_arrays(rgb, hole, guide, hd_strategy=strategy)
    if refine_seam:
        from edgefill.refine import refine

        result = refine(result, hole, comp)
    return result if alpha is None else np.dstack([result, alpha])


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


# ----------------------------------------------------------------------------- model access


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
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    def _get_lock(self) -> asyncio.Lock:
        # One lock per event loop: a server has one loop; test clients may start several.
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

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

    async def run(self, fn: Callable[[Inpainter | None], Any], needs_model: bool = True) -> Any:
        """Run ``fn(inpainter)`` on a worker thread once every earlier call has finished.

        ``needs_model=False`` (damage detection) passes None and never loads the model, so it
        works while the model is still loading or failed to load."""
        if self.waiting >= self.max_queue:
            raise UploadError(
                503, f"the server is busy ({self.waiting} requests waiting); try again shortly"
            )
        self.waiting += 1
        try:
            async with self._get_lock():
                # Cancellation (client gone) waits for the thread, so the lock is never released
                # while the model is still running.
                result = await anyio.to_thread.run_sync(
                    lambda: fn(self._ensure_loaded() if needs_model else None)
                )
                self.served += 1
                return result
        finally:
            self.waiting -= 1


# ----------------------------------------------------------------------------- middleware


class _BodyTooLarge(Exception):
    pass


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


RunnerDep = Annotated[ModelRunner, Depends(_runner)]
LimitsDep = Annotated[Limits, Depends(_limits)]


async def read_upload(upload: UploadFile | None, field: str, max_pixels: int) -> Image.Image | None:
    """An optional upload decoded on a worker thread (``decode_upload``)."""
    if upload is None:
        return None
    data = await upload.read()
    return await anyio.to_thread.run_sync(decode_upload, data, field, max_pixels)


async def read_inputs(
    photo: UploadFile, mask: UploadFile | None, max_pixels: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(RGB, hole, alpha) of an upload, by the library's one input path (no model needed)."""
    photo_img = await read_upload(photo, "photo", max_pixels)
    mask_img = await read_upload(mask, "mask", max_pixels)
    return await anyio.to_thread.run_sync(
        lambda: load_photo_and_mask(photo_img, mask_img, max_pixels=max_pixels)
    )


async def run_to_png(
    runner: ModelRunner,
    fn: Callable[[Inpainter | None], np.ndarray],
    compress_level: int = 1,
    needs_model: bool = True,
) -> tuple[Response, np.ndarray]:
    """``fn`` on the model thread (``ModelRunner.run``), its uint8 array answered as a PNG with
    the model time in ``X-Edgefill-Seconds``; also returns the array."""
    t0 = time.perf_counter()
    arr = await runner.run(fn, needs_model)
    seconds = time.perf_counter() - t0
    data = await anyio.to_thread.run_sync(encode_png, arr, compress_level)
    return _png(data, seconds), arr


api = APIRouter(prefix="/api", tags=["api"])


@api.get("/health")
async def health(runner: RunnerDep, limits: LimitsDep) -> dict[str, Any]:
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
        "detect_method": "net" if detector_available() else "classical",
        "busy": runner.waiting,
        "served": runner.served,
        "max_upload_bytes": limits.max_upload_bytes,
        "max_pixels": limits.max_pixels,
    }


@api.post("/edges", response_class=Response, responses=_PNG_RESPONSE)
async def edges(
    photo: PhotoField,
    runner: RunnerDep,
    limits: LimitsDep,
    mask: MaskField = None,
    hd_strategy: HdStrategyField = None,
) -> Response:
    """The edge map the fill will use: Canny edges of the known pixels, predicted edges
    inside the hole, computed on the same windows as ``/api/inpaint`` (zero outside them
    with the crop strategy). White lines on black, photo size."""
    strategy = check_hd_strategy(hd_strategy)
    rgb, hole, _ = await read_inputs(photo, mask, limits.max_pixels)
    resp, _ = await run_to_png(runner, lambda inp: edge_map_u8(inp, rgb, hole, strategy))
    return resp


@api.post("/inpaint", response_class=Response, responses=_PNG_RESPONSE)
async def inpaint(
    photo: PhotoField,
    runner: RunnerDep,
    limits: LimitsDep,
    mask: MaskField = None,
    edges: EdgesField = None,
    hd_strategy: HdStrategyField = None,
    refine: RefineField = False,
) -> Response:
    """Fill the hole. Pixels outside it come back unchanged; an alpha channel is kept."""
    strategy = check_hd_strategy(hd_strategy)
    rgb, hole, alpha = await read_inputs(photo, mask, limits.max_pixels)
    guide = None
    if edges is not None:
        edge_img = await read_upload(edges, "edges", limits.max_pixels)
        h, w = hole.shape
        guide = await anyio.to_thread.run_sync(load_guide, edge_img, w, h, limits.max_pixels)
    resp, _ = await run_to_png(
        runner, lambda inp: inpaint_rgb(inp, rgb, hole, alpha, guide, strategy, refine), 3
    )
    return resp


@api.post("/select", response_class=Response, responses=_PNG_RESPONSE)
async def select(
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
        runner, lambda _: selection_u8(rgb, box, marks, grow), needs_model=False
    )
    return resp


@api.post("/detect", response_class=Response, responses=_PNG_RESPONSE)
async def detect(
    photo: PhotoField,
    runner: RunnerDep,
    limits: LimitsDep,
    kind: KindField = "auto",
    sensitivity: SensitivityField = DEFAULT_SENSITIVITY,
) -> Response:
    """Find scratches, folds, dust and spots: a mask of the photo's size, white = damaged.

    The header ``X-Edgefill-Damage-Fraction`` gives the flagged share of the photo."""
    photo_img = await read_upload(photo, "photo", limits.max_pixels)
    rgb, _ = await anyio.to_thread.run_sync(load_rgb, photo_img, limits.max_pixels)
    resp, mask = await run_to_png(
        runner,
        lambda _: detect_damage(rgb, kind, sensitivity).astype(np.uint8) * 255,
        needs_model=False,
    )
    resp.headers["X-Edgefill-Damage-Fraction"] = f"{float((mask > 0).mean()):.6f}"
    return resp


# ----------------------------------------------------------------------------- app


def add_error_handlers(app: FastAPI) -> None:
    """User errors -> 4xx with a one-line detail; anything else -> a generic 500 (log only)."""

    @app.exception_handler(UploadError)
    async def _upload_error(request: Request, exc: UploadError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

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
) -> FastAPI:
    """The web app around an Inpainter (or a zero-argument function that loads one once).

    ``allowed_hosts``: Host header names to accept (None = any); ``serve`` on a loopback address
    passes the loopback names, which stops DNS-rebinding pages from reaching the API.
    """
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
    add_error_handlers(app)
    app.include_router(api)
    # The page. StaticFiles resolves every path inside ``static_dir`` and refuses anything that
    # would leave it (../, %2e%2e, symlinks), answering 404.
    app.mount("/", StaticFiles(directory=str(static_dir), html=True), name="web")

    app.add_middleware(RequestGuard, max_body=max_upload_bytes)
    app.add_middleware(SecurityHeaders)
    if allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    return app


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(
    inpainter_or_loader: InpainterOrLoader,
    host: str = "127.0.0.1",
    port: int = 7860,
    max_upload_bytes: int = SERVER_MAX_UPLOAD_BYTES,
    max_pixels: int = SERVER_MAX_PIXELS,
    log_level: str = "info",
) -> None:
    """Run the app with uvicorn until interrupted (what ``edgefill serve`` does)."""
    import uvicorn

    hosts = None
    if is_loopback(host):
        hosts = LOOPBACK_HOSTS  # refuse DNS-rebinding requests that name another host
    app = create_app(inpainter_or_loader, max_upload_bytes, max_pixels, allowed_hosts=hosts)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    shown = f"[{host}]" if ":" in host else host
    print(f"edgefill: open http://{shown}:{port}/ in your browser (Ctrl+C stops the server)")
    uvicorn.run(app, host=host, port=port, log_level=log_level, server_header=False)
