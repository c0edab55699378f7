"""The web server's API: happy paths, every bad input, limits, static files and serialisation."""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
import torch  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from edgefill.checkpoint import save_release  # noqa: E402
from edgefill.config import ModelConfig  # noqa: E402
from edgefill.errors import EdgefillError  # noqa: E402
from edgefill.masks import grow_hole  # noqa: E402
from edgefill.networks import EdgeGenerator, InpaintGenerator  # noqa: E402
from edgefill.pipeline import Inpainter  # noqa: E402
from edgefill.server import create_app, decode_upload, is_loopback  # noqa: E402


def tiny_inpainter(seed: int = 0) -> Inpainter:
    torch.manual_seed(seed)
    g1, g2 = EdgeGenerator(width=8, blocks=1), InpaintGenerator(width=8, blocks=1)
    return Inpainter.from_modules(g1, g2, ModelConfig(width=8, edge_blocks=1, inpaint_blocks=1))


def png(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, format="PNG")
    return buf.getvalue()


def photo_array(h: int = 40, w: int = 48) -> np.ndarray:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:h, :w]
    base = np.stack([x * 5 % 256, y * 6 % 256, (x + y) * 3 % 256], -1)
    return (base + rng.integers(0, 20, (h, w, 3))).clip(0, 255).astype(np.uint8)


def mask_array(h: int = 40, w: int = 48) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[10:25, 12:30] = 255
    return m


def files(photo: bytes, mask: bytes | None = None, edges: bytes | None = None) -> dict:
    out = {"photo": ("photo.png", photo, "image/png")}
    if mask is not None:
        out["mask"] = ("mask.png", mask, "image/png")
    if edges is not None:
        out["edges"] = ("edges.png", edges, "image/png")
    return out


@pytest.fixture(scope="module")
def inpainter() -> Inpainter:
    return tiny_inpainter()


@pytest.fixture(scope="module")
def client(inpainter: Inpainter) -> TestClient:
    app = create_app(inpainter, max_upload_bytes=200_000, max_pixels=100_000)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def decode(resp) -> np.ndarray:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(resp.content)))


# ----------------------------------------------------------------------------- happy paths


def test_health(client: TestClient) -> None:
    r = client.get("/api/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["model_loaded"]
    assert body["model"]["width"] == 8 and body["model"]["device"] == "cpu"
    assert body["max_upload_bytes"] == 200_000 and body["max_pixels"] == 100_000


def test_inpaint_changes_only_the_hole(client: TestClient) -> None:
    photo, mask = photo_array(), mask_array()
    out = decode(client.post("/api/inpaint", files=files(png(photo), png(mask))))
    assert out.shape == photo.shape and out.dtype == np.uint8
    hole = mask > 0
    np.testing.assert_array_equal(out[~hole], photo[~hole])
    assert (out[hole] != photo[hole]).any()


def test_inpaint_matches_the_library(client: TestClient, inpainter: Inpainter) -> None:
    photo, mask = photo_array(), mask_array()
    out = decode(client.post("/api/inpaint", files=files(png(photo), png(mask))))
    np.testing.assert_array_equal(out, inpainter(photo, mask).image)


def test_edges_endpoint(client: TestClient, inpainter: Inpainter) -> None:
    photo, mask = photo_array(), mask_array()
    edges = decode(client.post("/api/edges", files=files(png(photo), png(mask))))
    assert edges.shape == mask.shape and edges.dtype == np.uint8
    expected = np.round(inpainter.edge_map(photo, mask > 0) * 255).astype(np.uint8)
    np.testing.assert_array_equal(edges, expected)


def test_edited_edges_change_the_result(client: TestClient, inpainter: Inpainter) -> None:
    photo, mask = photo_array(), mask_array()
    edges = decode(client.post("/api/edges", files=files(png(photo), png(mask))))
    plain = decode(client.post("/api/inpaint", files=files(png(photo), png(mask))))
    # The map sent back fills the hole as drawn edges do in the library (``flip_average``
    # included), up to the PNG's 8 bits.
    same = decode(client.post("/api/inpaint", files=files(png(photo), png(mask), png(edges))))
    drawn, _ = inpainter.inpaint_arrays(photo, mask > 0, edges / 255)
    assert np.abs(same.astype(int) - drawn.astype(int)).max() <= 2
    edited = edges.copy()
    edited[10:25, 20] = 255  # a vertical edge through the hole
    edited[17, 12:30] = 0
    out = decode(client.post("/api/inpaint", files=files(png(photo), png(mask), png(edited))))
    hole = mask > 0
    np.testing.assert_array_equal(out[~hole], photo[~hole])
    assert (out[hole] != plain[hole]).any()


def test_rgba_photo_without_mask_uses_transparency(client: TestClient) -> None:
    photo = photo_array()
    alpha = np.full(photo.shape[:2], 255, np.uint8)
    alpha[5:15, 5:15] = 0
    out = decode(client.post("/api/inpaint", files=files(png(np.dstack([photo, alpha])))))
    assert out.shape == photo.shape  # the transparent hole is filled: an opaque RGB result
    np.testing.assert_array_equal(out[alpha > 0], photo[alpha > 0])


def test_rgba_photo_with_mask_keeps_alpha(client: TestClient) -> None:
    photo, mask = photo_array(), mask_array()
    alpha = np.full(photo.shape[:2], 200, np.uint8)
    out = decode(
        client.post("/api/inpaint", files=files(png(np.dstack([photo, alpha])), png(mask)))
    )
    assert out.shape == (*photo.shape[:2], 4)
    np.testing.assert_array_equal(out[..., 3], alpha)


def test_empty_mask_returns_the_photo(client: TestClient) -> None:
    photo = photo_array()
    out = decode(client.post("/api/inpaint", files=files(png(photo), png(mask_array() * 0))))
    np.testing.assert_array_equal(out, photo)


def test_odd_sizes_and_jpeg_exif_rotation(client: TestClient) -> None:
    photo = photo_array(13, 7)  # stored 7 wide, 13 high; EXIF says rotate: shown 13 wide, 7 high
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    Image.fromarray(photo).save(buf, format="JPEG", exif=exif, quality=95)
    mask = np.zeros((7, 13), np.uint8)
    mask[2:5, 3:9] = 255
    out = decode(client.post("/api/inpaint", files=files(buf.getvalue(), png(mask))))
    assert out.shape == (7, 13, 3)
    # A mask made on the stored pixels (13 high, 7 wide) is turned as the photo is.
    stored = np.rot90(mask, 1)  # orientation 6 turns it back by a quarter clockwise
    again = decode(client.post("/api/inpaint", files=files(buf.getvalue(), png(stored))))
    np.testing.assert_array_equal(again, out)


def test_a_heic_upload_is_read_with_the_heif_extra(client: TestClient) -> None:
    heif = pytest.importorskip("pillow_heif", reason="the heif extra is not installed")
    buf = io.BytesIO()
    heif.from_pillow(Image.fromarray(photo_array())).save(buf, quality=95)
    out = decode(client.post("/api/inpaint", files=files(buf.getvalue(), png(mask_array()))))
    assert out.shape == (40, 48, 3)


def test_preview_shows_what_a_browser_cannot_as_an_upright_8_bit_png(client: TestClient) -> None:
    import tifffile

    deep = photo_array().astype(np.uint16) * 257
    buf = io.BytesIO()
    tifffile.imwrite(buf, deep, photometric="rgb")
    r = client.post("/api/preview", files={"photo": ("scan.tif", buf.getvalue(), "image/tiff")})
    np.testing.assert_array_equal(decode(r), photo_array())  # 8 bits: 257 v -> v
    rgba = np.dstack([photo_array(), np.full((40, 48), 200, np.uint8)])
    np.testing.assert_array_equal(decode(client.post("/api/preview", files=files(png(rgba)))), rgba)
    turned = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(photo_array(13, 7)).save(turned, format="PNG", exif=exif)
    assert decode(client.post("/api/preview", files=files(turned.getvalue()))).shape == (7, 13, 3)
    r = client.post("/api/preview", files=files(b"not a scan"))
    assert "not an image" in detail(r, 400)


def test_grayscale_and_palette_inputs(client: TestClient) -> None:
    gray = photo_array()[..., 0]
    out = decode(client.post("/api/inpaint", files=files(png(gray), png(mask_array()))))
    assert out.shape == (40, 48)  # a grey photo comes back grey
    keep = mask_array() == 0
    np.testing.assert_array_equal(out[keep], gray[keep])
    pal = Image.fromarray(photo_array()).convert("P")
    buf = io.BytesIO()
    pal.save(buf, format="PNG")
    out = decode(client.post("/api/inpaint", files=files(buf.getvalue(), png(mask_array()))))
    assert out.shape == (40, 48, 3)


# ----------------------------------------------------------------------------- bad inputs


def detail(resp, status: int) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert "Traceback" not in resp.text
    return str(body["detail"])


@pytest.mark.parametrize("route", ["/api/inpaint", "/api/edges", "/api/detect"])
def test_not_an_image(client: TestClient, route: str) -> None:
    r = client.post(route, files=files(b"hello, I am text", png(mask_array())))
    assert "photo: not an image" in detail(r, 400)


def test_empty_file(client: TestClient) -> None:
    r = client.post("/api/inpaint", files=files(b"", png(mask_array())))
    assert "photo: the file is empty" in detail(r, 400)


def test_truncated_png(client: TestClient) -> None:
    data = png(photo_array())
    r = client.post("/api/inpaint", files=files(data[: len(data) // 2], png(mask_array())))
    msg = detail(r, 400)
    assert msg.startswith("photo:") and ("truncated" in msg or "not an image" in msg)


def test_mask_not_an_image(client: TestClient) -> None:
    r = client.post("/api/inpaint", files=files(png(photo_array()), b"\x89PNG garbage"))
    assert "mask: not an image" in detail(r, 400)


def test_wrong_mask_size_names_both_sizes(client: TestClient) -> None:
    r = client.post("/api/inpaint", files=files(png(photo_array()), png(mask_array(20, 20))))
    msg = detail(r, 400)
    assert "20x20" in msg and "48x40" in msg


def test_colour_mask_is_refused(client: TestClient) -> None:
    mask = np.zeros((40, 48, 3), np.uint8)
    mask[5:10, 5:10, 0] = 255
    r = client.post("/api/inpaint", files=files(png(photo_array()), png(mask)))
    assert "colour" in detail(r, 400)


def test_wrong_edges_size(client: TestClient) -> None:
    r = client.post(
        "/api/inpaint",
        files=files(png(photo_array()), png(mask_array()), png(np.zeros((8, 8), np.uint8))),
    )
    msg = detail(r, 400)
    assert "edge map is 8x8" in msg and "48x40" in msg


def test_no_mask_and_no_transparency(client: TestClient) -> None:
    r = client.post("/api/inpaint", files=files(png(photo_array())))
    assert "no mask" in detail(r, 400)


def test_missing_photo_field(client: TestClient) -> None:
    r = client.post("/api/inpaint", files={"mask": ("m.png", png(mask_array()), "image/png")})
    assert r.status_code == 422
    assert "photo" in r.text


def test_too_many_pixels_is_413_before_decoding(client: TestClient) -> None:
    big = np.zeros((400, 400), np.uint8)  # 160k pixels > 100k limit; compresses to ~1 kB
    r = client.post("/api/inpaint", files=files(png(big), png(big)))
    msg = detail(r, 413)
    assert "400x400" in msg and "limit" in msg


def test_decompression_bomb_header(client: TestClient) -> None:
    # A PNG whose header claims 30000 x 30000 pixels: refused from the header alone.
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")
    r = client.post("/api/inpaint", files=files(bomb, png(mask_array())))
    assert detail(r, 413)


def test_upload_too_large_is_413(client: TestClient) -> None:
    noise = np.random.default_rng(1).integers(0, 256, (300, 300, 3), dtype=np.uint8)
    data = png(noise)  # ~270 kB of incompressible noise > 200 kB limit
    assert len(data) > 200_000
    r = client.post("/api/inpaint", files=files(data, png(mask_array())))
    assert "too large" in detail(r, 413)


def test_upload_too_large_without_content_length(client: TestClient) -> None:
    # A chunked body declares no length: the limit is enforced while it is read.
    boundary = "xyz"
    part = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="photo"; filename="p.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + b"\0" * 300_000
        + f"\r\n--{boundary}--\r\n".encode()
    )

    def body():
        for i in range(0, len(part), 65536):
            yield part[i : i + 65536]

    r = client.post(
        "/api/inpaint",
        content=body(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert "too large" in detail(r, 413)


def test_cross_origin_post_is_refused(client: TestClient) -> None:
    r = client.post(
        "/api/inpaint",
        files=files(png(photo_array()), png(mask_array())),
        headers={"origin": "https://evil.example"},
    )
    assert detail(r, 403)
    same = client.post(
        "/api/inpaint",
        files=files(png(photo_array()), png(mask_array())),
        headers={"origin": "http://testserver"},
    )
    assert same.status_code == 200


def test_internal_error_is_500_without_traceback(inpainter: Inpainter) -> None:
    class Broken(Inpainter):
        def inpaint_arrays(self, *args, **kwargs):
            raise RuntimeError("secret internal detail /home/user/model.py line 42")

    broken = Broken(inpainter.g1, inpainter.g2, inpainter.config)
    with TestClient(create_app(broken), raise_server_exceptions=False) as c:
        r = c.post("/api/inpaint", files=files(png(photo_array()), png(mask_array())))
    assert r.status_code == 500
    assert "secret" not in r.text and "Traceback" not in r.text and "line 42" not in r.text
    assert r.json()["detail"].startswith("internal server error")


def test_loader_error_is_503_with_the_reason() -> None:
    def loader() -> Inpainter:
        raise EdgefillError("the default model weights are missing (somewhere)")

    with TestClient(create_app(loader), raise_server_exceptions=False) as c:
        r = c.post("/api/inpaint", files=files(png(photo_array()), png(mask_array())))
        assert "weights are missing" in detail(r, 503)
        h = c.get("/api/health").json()
    assert h["status"] == "error" and "weights are missing" in h["detail"]


# ----------------------------------------------------------------------------- damage detection


def damaged_photo() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(clean photo, the same with a bright scratch and three dark specks, where the damage is)."""
    import cv2

    y, x = np.mgrid[:120, :160].astype(np.float32)
    clean = np.stack([90 + 60 * y / 120, 140 + 50 * y / 120, 220 - 40 * x / 160], -1)
    clean = clean.round().astype(np.uint8)
    damaged, truth = clean.copy(), np.zeros((120, 160), np.uint8)
    for img, colour in ((damaged, (250, 250, 250)), (truth, 1)):
        cv2.line(img, (20, 20), (140, 100), colour, 2)
    for c in [(30, 90), (60, 40), (130, 70)]:
        for img, colour in ((damaged, (15, 15, 15)), (truth, 1)):
            cv2.circle(img, c, 2, colour, -1)
    return clean, damaged, truth > 0


def test_health_announces_the_detector(client: TestClient) -> None:
    from edgefill.detect import detector_available

    body = client.get("/api/health").json()
    assert body["detect"] is True
    assert body["detect_method"] == ("net" if detector_available() else "classical")


def test_detect_finds_scratches_and_spots_and_matches_the_library(client: TestClient) -> None:
    from edgefill.detect import detect_damage

    clean, damaged, truth = damaged_photo()
    r = client.post("/api/detect", files=files(png(damaged)))
    mask = decode(r)
    assert mask.shape == truth.shape and set(np.unique(mask)) <= {0, 255}
    found = mask > 0
    np.testing.assert_array_equal(found, detect_damage(damaged))
    assert (found & truth).sum() / truth.sum() > 0.9  # recall on the drawn damage
    assert float(r.headers["X-Edgefill-Damage-Fraction"]) == pytest.approx(found.mean(), abs=1e-6)
    assert not decode(client.post("/api/detect", files=files(png(clean)))).any()
    # kind and sensitivity are form fields passed through to the detector.
    data = {"kind": "scratches", "sensitivity": "0.8"}
    lines = decode(client.post("/api/detect", files=files(png(damaged)), data=data)) > 0
    np.testing.assert_array_equal(lines, detect_damage(damaged, "scratches", 0.8))


def test_detect_uses_the_detector_the_server_was_started_with(
    inpainter: Inpainter, tmp_path
) -> None:
    from edgefill.detect import DamageNet, save_detector

    net = DamageNet(4, 2)  # flags nothing, whatever the photo
    torch.nn.init.zeros_(net.head.weight)
    torch.nn.init.constant_(net.head.bias, -8.0)
    save_detector(net, tmp_path / "quiet", {"width": 4, "depth": 2})
    app = create_app(inpainter, detector=tmp_path / "quiet")
    with TestClient(app, raise_server_exceptions=False) as c:
        assert c.get("/api/health").json()["detect_method"] == "net"
        assert not decode(c.post("/api/detect", files=files(png(damaged_photo()[1])))).any()
    with pytest.raises(EdgefillError, match="not found"):
        create_app(inpainter, detector=tmp_path / "missing")


@pytest.mark.parametrize(
    "data,status,words",
    [
        ({"kind": "mould"}, 400, "scratches, spots, auto"),
        ({"sensitivity": "1.5"}, 400, "sensitivity"),
        ({"sensitivity": "high"}, 422, "sensitivity"),
    ],
)
def test_detect_bad_options(client: TestClient, data: dict, status: int, words: str) -> None:
    r = client.post("/api/detect", files=files(png(damaged_photo()[1])), data=data)
    assert words in str(detail(r, status))


def test_detect_needs_no_model() -> None:
    def loader() -> Inpainter:
        raise EdgefillError("the default model weights are missing (somewhere)")

    with TestClient(create_app(loader), raise_server_exceptions=False) as c:
        r = c.post("/api/detect", files=files(png(damaged_photo()[1])))
        assert r.status_code == 200 and decode(r).any()
        assert c.get("/api/health").json()["model_loaded"] is False


def test_loader_is_called_once(inpainter: Inpainter) -> None:
    calls = []

    def loader() -> Inpainter:
        calls.append(1)
        return inpainter

    with TestClient(create_app(loader)) as c:
        for _ in range(3):
            r = c.post("/api/edges", files=files(png(photo_array()), png(mask_array())))
            assert r.status_code == 200
    assert calls == [1]


def test_decode_upload_unit() -> None:
    img = decode_upload(png(photo_array()), "photo", 10_000)
    assert img.size == (48, 40)


# ----------------------------------------------------------------------------- static files


def test_index_and_assets(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert 'id="detect-damage"' in r.text
    for asset in ("app.js", "style.css", "favicon.svg"):
        assert client.get("/" + asset).status_code == 200
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "connect-src 'self'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"


def test_page_makes_no_outside_requests(client: TestClient) -> None:
    for asset in ("/", "/app.js", "/style.css"):
        text = client.get(asset).text
        assert "http://" not in text and "https://" not in text and "//cdn" not in text


def test_openapi_schema_documents_the_api(client: TestClient) -> None:
    schema = client.get("/api/openapi.json").json()
    assert {"/api/edges", "/api/inpaint", "/api/health"} <= set(schema["paths"])
    assert client.get("/docs").status_code == 404  # its page would load scripts from a CDN


@pytest.mark.parametrize(
    "path",
    [
        "/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/..%2f..%2fetc%2fpasswd",
        "/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/static/../../../../etc/passwd",
        "/....//....//etc/passwd",
        "/%252e%252e/etc/passwd",
        "/../server.py",
        "/%2e%2e/server.py",
    ],
)
def test_path_traversal_is_refused(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code in (400, 404), (path, r.status_code)
    assert "root:" not in r.text and "create_app" not in r.text


# ----------------------------------------------------------------------------- concurrency


def test_model_calls_are_serialised_and_do_not_block_the_loop(inpainter: Inpainter) -> None:
    entered = threading.Event()
    release = threading.Event()
    active = []
    peak = []

    class Slow(Inpainter):
        def inpaint_arrays(self, rgb, hole, guide=None, **options):
            active.append(1)
            peak.append(len(active))
            entered.set()
            release.wait(10)
            try:
                return super().inpaint_arrays(rgb, hole, guide, **options)
            finally:
                active.pop()

    slow = Slow(inpainter.g1, inpainter.g2, inpainter.config)
    data = files(png(photo_array()), png(mask_array()))
    with TestClient(create_app(slow)) as c, ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(c.post, "/api/inpaint", files=data) for _ in range(3)]
        assert entered.wait(10)
        # The event loop still answers while the model is busy (it runs on a worker thread);
        # poll, since the other two requests may still be uploading on a loaded machine.
        deadline = time.monotonic() + 20
        while (busy := c.get("/api/health").json()["busy"]) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert busy == 3 and not release.is_set()
        release.set()
        assert all(f.result(30).status_code == 200 for f in futures)
    assert max(peak) == 1


def test_queue_limit_gives_503(inpainter: Inpainter) -> None:
    release = threading.Event()
    entered = threading.Event()

    class Slow(Inpainter):
        def inpaint_arrays(self, rgb, hole, guide=None, **options):
            entered.set()
            release.wait(10)
            return super().inpaint_arrays(rgb, hole, guide, **options)

    slow = Slow(inpainter.g1, inpainter.g2, inpainter.config)
    data = files(png(photo_array()), png(mask_array()))
    with TestClient(create_app(slow, max_queue=1)) as c, ThreadPoolExecutor(2) as pool:
        first = pool.submit(c.post, "/api/inpaint", files=data)
        assert entered.wait(10)
        r = c.post("/api/inpaint", files=data)
        assert r.status_code == 503 and "busy" in r.json()["detail"]
        release.set()
        assert first.result(30).status_code == 200


# ----------------------------------------------------------------------------- real HTTP server


@contextlib.contextmanager
def serving(inp: Inpainter) -> Iterator[int]:
    """uvicorn on a free loopback port, as ``edgefill serve`` runs it (host check on)."""
    import uvicorn

    from edgefill.server import LOOPBACK_HOSTS

    app = create_app(inp, allowed_hosts=LOOPBACK_HOSTS)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture(scope="module")
def live_server(inpainter: Inpainter) -> Iterator[int]:
    with serving(inpainter) as port:
        yield port


def post_and_leave(port: int, path: str, data: dict) -> socket.socket:
    """A multipart POST sent whole over a socket left open: close it to leave, as a browser's
    aborted fetch does."""
    import httpx

    req = httpx.Request("POST", f"http://127.0.0.1:{port}{path}", files=data)
    head = "".join(f"{k}: {v}\r\n" for k, v in req.headers.items())
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"POST {path} HTTP/1.1\r\n{head}\r\n".encode() + req.read())
    return s


def test_work_whose_client_left_is_given_up(inpainter: Inpainter) -> None:
    """The page's Cancel closes its request: the model call running for it stops at its next
    network pass (``stop``), one still queued is never started, and the next request does not
    wait for either."""
    import httpx

    entered, stopped = threading.Event(), threading.Event()
    calls = []

    class Patient(Inpainter):  # runs until its client leaves
        def inpaint_arrays(self, rgb, hole, guide=None, stop=None, **options):
            calls.append(1)
            entered.set()
            if stop is not None and stop.wait(20):
                stopped.set()
            return super().inpaint_arrays(rgb, hole, guide, stop=stop, **options)

    patient = Patient(inpainter.g1, inpainter.g2, inpainter.config)
    data = files(png(photo_array()), png(mask_array()))
    with serving(patient) as port:
        running = post_and_leave(port, "/api/inpaint", data)
        assert entered.wait(20)
        queued = post_and_leave(port, "/api/inpaint", data)
        time.sleep(0.5)  # the second request is read and waits for the model
        queued.close()
        running.close()
        assert stopped.wait(20), "the model call went on after its client left"
        r = httpx.post(f"http://127.0.0.1:{port}/api/edges", files=data, timeout=30)
        assert r.status_code == 200
    assert len(calls) == 1, "a request whose client had left was started"


def test_a_detection_whose_client_left_stops_at_its_next_layer(
    inpainter: Inpainter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancel during *Detect damage*: the detector's network stops at its next layer instead
    of running over the whole scan (``backends.stoppable`` around the detection)."""
    import edgefill.server as server_mod
    from edgefill.detect import load_detector
    from edgefill.errors import Stopped

    net, _ = load_detector()  # the shipped detector, as the server loads it
    entered, stopped = threading.Event(), threading.Event()

    def endless_detection(rgb, *args, **kwargs):  # a scan that takes a long time
        entered.set()
        x = torch.zeros(1, 3, 32, 32)
        t0 = time.monotonic()
        try:
            while time.monotonic() - t0 < 20:
                net(x)
        except Stopped:
            stopped.set()
            raise
        raise AssertionError("the detection was not stopped")

    monkeypatch.setattr(server_mod, "analyse_damage", endless_detection)
    with serving(inpainter) as port:
        leaving = post_and_leave(port, "/api/detect", {"photo": ("p.png", png(photo_array()))})
        assert entered.wait(20)
        leaving.close()
        assert stopped.wait(10), "the detector went on after its client left"


def raw_get(port: int, path: str, host: str = "127.0.0.1") -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data


@pytest.mark.parametrize(
    "path",
    [
        "/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/..%2f..%2f..%2fetc%2fpasswd",
        "/%2E%2E/%2E%2E/%2E%2E/etc/passwd",
        "/..\\..\\etc\\passwd",
        "/../server.py",
        "//etc/passwd",
    ],
)
def test_raw_path_traversal_over_http(live_server: int, path: str) -> None:
    # Sent byte for byte over a socket: no client-side URL normalisation.
    status, data = raw_get(live_server, path)
    assert status in (400, 404), (path, status)
    assert b"root:" not in data and b"create_app" not in data


def test_dns_rebinding_host_is_refused(live_server: int) -> None:
    assert raw_get(live_server, "/api/health")[0] == 200
    assert raw_get(live_server, "/api/health", host="localhost:1234")[0] == 200
    assert raw_get(live_server, "/api/health", host="evil.example")[0] == 400


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10")


def test_cli_serve_refuses_missing_weights(tmp_path, capsys) -> None:
    from edgefill.cli import main

    assert main(["serve", "--weights", str(tmp_path / "nope"), "--port", "7861"]) == 2
    assert "weights" in capsys.readouterr().err


def test_cli_serve_loads_the_release_and_binds_loopback(tmp_path, monkeypatch) -> None:
    """`edgefill serve --weights DIR` loads the model before serving, on 127.0.0.1 by default."""
    import edgefill.server
    from edgefill.cli import main

    g1, g2 = EdgeGenerator(width=8, blocks=1), InpaintGenerator(width=8, blocks=1)
    cfg = ModelConfig(width=8, edge_blocks=1, inpaint_blocks=1)
    save_release(tmp_path / "w", g1.state_dict(), g2.state_dict(), cfg)
    seen = {}
    monkeypatch.setattr(edgefill.server, "serve", lambda inp, **kw: seen.update(inp=inp, **kw))
    argv = ["serve", "--weights", str(tmp_path / "w"), "--max-upload-mb", "2"]
    assert main([*argv, "--flip-average", "always"]) == 0
    assert isinstance(seen["inp"], Inpainter) and seen["inp"].config.width == 8
    assert seen["inp"].flip_average == "always"
    assert seen["host"] == "127.0.0.1" and seen["port"] == 7860
    assert seen["max_upload_bytes"] == 2 * 2**20


# ----------------------------------------------------------------------------- web app v2


def disc_photo(h: int = 120, w: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """A red disc (the object) on a textured green and blue background; and the disc's mask."""
    rng = np.random.default_rng(1)
    y, x = np.mgrid[:h, :w]
    img = np.stack([40 + 0 * x, 110 + 40 * (y / h), 60 + 80 * (x / w)], -1).astype(float)
    img += rng.normal(0, 8, img.shape)
    disc = (x - 70) ** 2 + (y - 60) ** 2 < 30**2
    img[disc] = [200, 40, 40] + rng.normal(0, 8, (disc.sum(), 3))
    return img.clip(0, 255).astype(np.uint8), disc


@pytest.fixture(scope="module")
def big_client(inpainter: Inpainter) -> TestClient:
    with TestClient(create_app(inpainter), raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize("strategy", [None, "crop", "resize", "original"])
def test_edges_go_through_the_same_windows_as_inpaint(
    big_client: TestClient, inpainter: Inpainter, strategy: str | None
) -> None:
    """A 640x400 photo with a small hole: the crop strategy works on a window around it."""
    photo, mask = photo_array(400, 640), np.zeros((400, 640), np.uint8)
    mask[180:210, 300:340] = 255
    data = {} if strategy is None else {"hd_strategy": strategy}
    r = big_client.post("/api/edges", files=files(png(photo), png(mask)), data=data)
    edges = decode(r)
    _, used = inpainter.inpaint_arrays(photo, mask > 0, hd_strategy=strategy)
    np.testing.assert_array_equal(edges, np.round(used * 255).astype(np.uint8))
    if strategy in (None, "crop"):  # nothing is computed far from the hole
        assert edges[:20].max() == 0 and edges[:, :100].max() == 0
    else:
        assert edges[:20].max() > 0


def test_inpaint_hd_strategy_and_refine(big_client: TestClient, inpainter: Inpainter) -> None:
    from edgefill.refine import refine

    photo, mask = photo_array(400, 640), np.zeros((400, 640), np.uint8)
    mask[180:210, 300:340] = 255
    hole = mask > 0
    for strategy in ("crop", "resize"):
        data = {"hd_strategy": strategy}
        out = decode(big_client.post("/api/inpaint", files=files(png(photo), png(mask)), data=data))
        expected, _ = inpainter.inpaint_arrays(photo, hole, hd_strategy=strategy)
        np.testing.assert_array_equal(out, expected)
    data = {"refine": "true"}
    out = decode(big_client.post("/api/inpaint", files=files(png(photo), png(mask)), data=data))
    plain, comp = inpainter.inpaint_arrays(photo, hole)
    np.testing.assert_array_equal(out, refine(plain, hole, comp))
    np.testing.assert_array_equal(out[~hole], photo[~hole])
    assert (out[hole] != plain[hole]).any()


@pytest.mark.parametrize("route", ["/api/edges", "/api/inpaint"])
def test_unknown_hd_strategy_is_400(client: TestClient, route: str) -> None:
    data = {"hd_strategy": "tiles"}
    r = client.post(route, files=files(png(photo_array()), png(mask_array())), data=data)
    assert r.status_code == 400
    assert "crop, resize, original" in r.json()["detail"] and "tiles" in r.json()["detail"]


def test_select_box_proposes_the_object(client: TestClient) -> None:
    photo, disc = disc_photo()
    r = client.post("/api/select", files=files(png(photo)), data={"box": "35,25,105,95"})
    got = decode(r) > 0
    assert got.shape == disc.shape
    assert got[disc].mean() > 0.97, "the proposal misses part of the object"
    y, x = np.mgrid[: disc.shape[0], : disc.shape[1]]
    near = (x - 70) ** 2 + (y - 60) ** 2 < (30 + 3) ** 2  # the disc grown by the default 2 px
    assert not (got & ~near).any(), "the proposal spills beyond the object"
    assert not got[:, 115:].any() and not got[:15].any()


def test_select_scribbles_without_a_box(client: TestClient) -> None:
    photo, disc = disc_photo()
    marks = np.zeros(disc.shape, np.uint8)
    marks[55:65, 60:80] = 255  # a stroke across the middle of the disc
    marks[5:10, 5:150] = 128  # and one over the background
    got = (
        decode(
            client.post(
                "/api/select",
                files={"photo": ("p.png", png(photo)), "scribbles": ("s.png", png(marks))},
            )
        )
        > 0
    )
    assert got[disc].mean() > 0.9
    assert not got[5:10, 5:150].any()


@pytest.mark.parametrize(
    "data, extra, message",
    [
        ({}, None, "draw a box"),
        ({"box": "1,2,3"}, None, "four numbers"),
        ({"box": "10,10,11,11"}, None, "too small"),
        ({"box": "10,10,60,60"}, np.zeros((5, 5), np.uint8), "scribbles are 5x5"),
        ({"box": "10,10,60,60", "grow": "-1"}, None, "grow"),
    ],
)
def test_select_bad_input_is_400(client: TestClient, data, extra, message) -> None:
    photo, _ = disc_photo()
    up = files(png(photo))
    if extra is not None:
        up["scribbles"] = ("s.png", png(extra), "image/png")
    r = client.post("/api/select", files=up, data=data)
    assert r.status_code == 400 and message in r.json()["detail"], r.text


def test_select_needs_no_model() -> None:
    def broken() -> Inpainter:
        raise EdgefillError("no weights here")

    photo, disc = disc_photo()
    with TestClient(create_app(broken)) as c:
        r = c.post("/api/select", files=files(png(photo)), data={"box": "35,25,105,95"})
        assert decode(r)[disc].mean() > 0


# ----------------------------------------------------------------------------- issue 18


def test_transparent_mask_pixels_are_not_the_hole(client: TestClient) -> None:
    photo = photo_array()
    strokes = mask_array() > 0
    rgba = np.full((*strokes.shape, 4), 255, np.uint8)  # white everywhere ...
    rgba[..., 3] = np.where(strokes, 255, 0)  # ... but transparent outside the strokes
    out = decode(client.post("/api/inpaint", files=files(png(photo), png(rgba))))
    np.testing.assert_array_equal(out[~strokes], photo[~strokes])
    assert (out[strokes] != photo[strokes]).any()


def test_a_jpeg_mask_upload_is_read_as_the_library_reads_the_file(client: TestClient) -> None:
    """Compression noise around a JPEG mask's strokes is not the hole (``load_mask``), with or
    without an EXIF orientation (the upright copy ``decode_upload`` makes lost the format)."""
    import cv2

    photo = photo_array()
    drawn = np.zeros((40, 48), np.uint8)
    cv2.line(drawn, (4, 4), (44, 30), 255, 3)
    cv2.circle(drawn, (30, 12), 6, 255, -1)
    upright = Image.Exif()
    upright[0x0112] = 1  # an upload that states its orientation
    for exif in (Image.Exif(), upright):
        buf = io.BytesIO()
        Image.fromarray(drawn).save(buf, format="JPEG", quality=90, exif=exif)
        noisy = np.asarray(Image.open(buf))
        assert ((noisy > 0) & (drawn == 0)).any()  # the noise the upload must not take as hole
        out = decode(client.post("/api/inpaint", files=files(png(photo), buf.getvalue())))
        np.testing.assert_array_equal(out[drawn == 0], photo[drawn == 0])
        assert (out[drawn > 0] != photo[drawn > 0]).any()


def test_16_bit_and_icc_photos_keep_their_samples_and_profile(client: TestClient) -> None:
    import cv2
    from PIL import ImageCms

    deep = np.random.default_rng(1).integers(0, 65536, (40, 48, 3)).astype(np.uint16)
    ok, enc = cv2.imencode(".png", cv2.cvtColor(deep, cv2.COLOR_RGB2BGR))
    r = client.post("/api/inpaint", files=files(enc.tobytes(), png(mask_array())))
    assert r.status_code == 200, r.text
    back = cv2.cvtColor(cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_UNCHANGED),
                        cv2.COLOR_BGR2RGB)  # fmt: skip
    hole = mask_array() > 0
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back[~hole], deep[~hole])

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buf = io.BytesIO()
    Image.fromarray(photo_array()).save(buf, format="JPEG", icc_profile=icc, dpi=(240, 240))
    r = client.post("/api/inpaint", files=files(buf.getvalue(), png(mask_array())))
    img = Image.open(io.BytesIO(r.content))
    assert img.info.get("icc_profile") == icc and round(img.info["dpi"][0]) == 240


def test_extreme_aspect_ratio_is_refused_before_decoding(client: TestClient) -> None:
    strip = np.zeros((2, 5000), np.uint8)  # 10 000 pixels: under the pixel limit
    for route in ("/api/detect", "/api/inpaint"):
        r = client.post(route, files=files(png(strip), png(strip)))
        assert "elongated" in detail(r, 413)


def test_pixel_budget_gives_503_with_retry_after(inpainter: Inpainter) -> None:
    release, entered = threading.Event(), threading.Event()

    class Slow(Inpainter):
        def inpaint_arrays(self, rgb, hole, guide=None, **options):
            entered.set()
            release.wait(10)
            return super().inpaint_arrays(rgb, hole, guide, **options)

    slow = Slow(inpainter.g1, inpainter.g2, inpainter.config)
    data = files(png(photo_array()), png(mask_array()))  # 2 x 1920 pixels reserved
    app = create_app(slow, pixel_budget=5000)
    with TestClient(app) as c, ThreadPoolExecutor(2) as pool:
        first = pool.submit(c.post, "/api/inpaint", files=data)
        assert entered.wait(10)
        assert c.get("/api/health").json()["pixels_in_progress"] == 2 * 40 * 48
        r = c.post("/api/inpaint", files=data)
        assert r.status_code == 503 and "busy" in r.json()["detail"]
        assert int(r.headers["retry-after"]) > 0
        release.set()
        assert first.result(30).status_code == 200
        assert c.get("/api/health").json()["pixels_in_progress"] == 0  # given back
        # Alone, a request larger than the whole budget still gets through.
        big = files(png(photo_array(60, 60)), png(mask_array(60, 60)))  # 7200 > 5000 pixels
        assert c.post("/api/inpaint", files=big).status_code == 200


def test_memory_is_given_back_after_a_large_request(inpainter: Inpainter, monkeypatch) -> None:
    import edgefill.server as server

    calls = []
    monkeypatch.setattr(server, "TRIM_AFTER_PIXELS", 1000)
    monkeypatch.setattr(server, "give_memory_back", lambda: calls.append(1))
    with TestClient(create_app(inpainter)) as c:
        r = c.post("/api/inpaint", files=files(png(photo_array()), png(mask_array())))
        assert r.status_code == 200
    assert calls == [1]


def test_give_memory_back_runs() -> None:
    from edgefill.server import give_memory_back

    give_memory_back()  # glibc's malloc_trim where present; a no-op elsewhere


def test_detection_is_not_held_up_by_a_long_inpaint(inpainter: Inpainter) -> None:
    release, entered = threading.Event(), threading.Event()

    class Slow(Inpainter):
        def inpaint_arrays(self, rgb, hole, guide=None, **options):
            entered.set()
            release.wait(20)
            return super().inpaint_arrays(rgb, hole, guide, **options)

    slow = Slow(inpainter.g1, inpainter.g2, inpainter.config)
    with TestClient(create_app(slow)) as c, ThreadPoolExecutor(2) as pool:
        first = pool.submit(
            c.post, "/api/inpaint", files=files(png(photo_array()), png(mask_array()))
        )
        assert entered.wait(10)
        r = c.post("/api/detect", files={"photo": ("p.png", png(photo_array()), "image/png")})
        assert r.status_code == 200 and not release.is_set()  # answered while inpaint waits
        release.set()
        assert first.result(30).status_code == 200


def test_host_and_origin_are_checked_on_all_interfaces(inpainter: Inpainter) -> None:
    from edgefill.server import allowed_hosts_for, urls_to_open

    hosts = allowed_hosts_for("0.0.0.0", ["photos.example"])
    assert "127.0.0.1" in hosts and "photos.example" in hosts and "evil.com" not in hosts
    app = create_app(inpainter, allowed_hosts=hosts)
    data = files(png(photo_array()), png(mask_array()))
    with TestClient(app, base_url="http://127.0.0.1:7860") as c:
        assert c.get("/api/health").status_code == 200
        # What a DNS-rebinding page sends: its own name as Host and as Origin.
        evil = {"host": "evil.com:7860", "origin": "http://evil.com:7860"}
        assert c.get("/api/health", headers=evil).status_code == 400
        assert c.post("/api/inpaint", files=data, headers=evil).status_code == 400
        r = c.post("/api/inpaint", files=data, headers={"origin": "http://evil.com:7860"})
        assert r.status_code == 403
        ok = {"host": "photos.example", "origin": "http://photos.example"}
        assert c.post("/api/inpaint", files=data, headers=ok).status_code == 200
    urls = urls_to_open("0.0.0.0", 7860)
    assert urls[0] == "http://127.0.0.1:7860/" and not any("0.0.0.0" in u for u in urls)
    assert urls_to_open("::1", 80) == ["http://[::1]:80/"]
    with pytest.raises(EdgefillError, match="allowed-host"):
        allowed_hosts_for("127.0.0.1", ["http://x/y"])


def test_cli_serve_on_all_interfaces_keeps_the_host_check(tmp_path, monkeypatch) -> None:
    import edgefill.server
    from edgefill.cli import main

    g1, g2 = EdgeGenerator(width=8, blocks=1), InpaintGenerator(width=8, blocks=1)
    cfg = ModelConfig(width=8, edge_blocks=1, inpaint_blocks=1)
    save_release(tmp_path / "w", g1.state_dict(), g2.state_dict(), cfg)
    seen = {}
    monkeypatch.setattr(edgefill.server, "serve", lambda inp, **kw: seen.update(kw))
    argv = ["serve", "--weights", str(tmp_path / "w"), "--host", "0.0.0.0", "--port", "0",
            "--allowed-host", "nas.local"]  # fmt: skip
    assert main(argv) == 2  # port 0 is refused by the range check
    argv[argv.index("0")] = "7899"
    assert main(argv) == 0
    hosts = seen["allowed_hosts"]
    assert "localhost" in hosts and "nas.local" in hosts and "evil.com" not in hosts


def test_detect_reports_region_confidence(client: TestClient) -> None:
    """confidence=true: each flagged pixel's grey level is its region's confidence (x 255); the
    headers count confident and uncertain regions; the default answer stays 0 / 255."""
    from edgefill.detect import CONFIDENT, analyse_damage

    damaged = damaged_photo()[1]
    dm = analyse_damage(damaged)
    r = client.post("/api/detect", files=files(png(damaged)), data={"confidence": "true"})
    grey = decode(r)
    expected = np.where(dm.mask, np.clip(np.round(dm.confidence * 255), 1, 255), 0)
    assert not any(g.stain for g in dm.regions)  # (a stain's level is capped: test_damage.py)
    np.testing.assert_array_equal(grey, expected.astype(np.uint8))
    assert int(r.headers["X-Edgefill-Regions"]) == len(dm.regions)
    unsure = sum(not g.confident for g in dm.regions)
    assert int(r.headers["X-Edgefill-Uncertain-Regions"]) == unsure
    assert float(r.headers["X-Edgefill-Confident-At"]) == CONFIDENT
    assert float(r.headers["X-Edgefill-Confident-Fraction"]) == pytest.approx(
        dm.confident.mean(), abs=1e-6
    )
    plain = decode(client.post("/api/detect", files=files(png(damaged))))
    assert set(np.unique(plain)) <= {0, 255} and np.array_equal(plain > 0, grey > 0)


def test_grow_mask_widens_the_hole_as_the_library_does(
    client: TestClient, inpainter: Inpainter
) -> None:
    photo, mask = photo_array(), mask_array()
    resp = client.post("/api/inpaint", files=files(png(photo), png(mask)), data={"grow_mask": 3})
    np.testing.assert_array_equal(decode(resp), inpainter(photo, mask, grow_mask=3).image)
    resp = client.post("/api/edges", files=files(png(photo), png(mask)), data={"grow_mask": 3})
    grown = grow_hole(mask > 0, 3)
    expected = np.round(inpainter.edge_map(photo, grown) * 255).astype(np.uint8)
    np.testing.assert_array_equal(decode(resp), expected)
    bad = client.post("/api/inpaint", files=files(png(photo), png(mask)), data={"grow_mask": -1})
    assert bad.status_code == 400 and "grow_mask must be" in bad.json()["detail"]
