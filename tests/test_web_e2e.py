"""The real page in headless Chromium (Debian's, via Playwright): paint, inpaint, edit edges.

Needs ``pip install playwright`` and ``apt-get install chromium`` (never ``playwright install``);
skips with the reason when either is missing. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the web extra is not installed: pip install -e .[web]")
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright for Python is not installed: pip install playwright"
)
CHROMIUM = os.environ.get("EDGEFILL_CHROMIUM", "/usr/bin/chromium")
if not shutil.which(CHROMIUM):
    pytest.skip(
        f"Debian's chromium is not installed at {CHROMIUM}: apt-get install -y chromium "
        "(do not use `playwright install`)",
        allow_module_level=True,
    )

import torch  # noqa: E402
import uvicorn  # noqa: E402
from PIL import Image  # noqa: E402

from edgefill.config import ModelConfig  # noqa: E402
from edgefill.networks import EdgeGenerator, InpaintGenerator  # noqa: E402
from edgefill.pipeline import Inpainter  # noqa: E402
from edgefill.server import LOOPBACK_HOSTS, create_app  # noqa: E402

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
W, H = 160, 120


def make_photo() -> np.ndarray:
    """A small photo with structure: sky gradient, a dark hill, a bright disc, texture."""
    y, x = np.mgrid[:H, :W].astype(np.float32)
    img = np.zeros((H, W, 3), np.float32)
    img[..., 0] = 90 + 60 * y / H
    img[..., 1] = 140 + 50 * y / H
    img[..., 2] = 220 - 40 * y / H
    hill = y > 70 + 15 * np.sin(x / 18)
    img[hill] = [60, 110, 50]
    disc = (x - 120) ** 2 + (y - 30) ** 2 < 14**2
    img[disc] = [250, 220, 120]
    img += np.random.default_rng(0).normal(0, 6, img.shape)
    return img.clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    torch.manual_seed(0)
    g1, g2 = EdgeGenerator(width=8, blocks=1), InpaintGenerator(width=8, blocks=1)
    inp = Inpainter.from_modules(g1, g2, ModelConfig(width=8, edge_blocks=1, inpaint_blocks=1))
    app = create_app(inp, allowed_hosts=LOOPBACK_HOSTS)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def photo_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "garden.png"
    Image.fromarray(make_photo()).save(path)
    return path


class Page:
    """A page on the app with every request off 127.0.0.1 blocked and errors collected."""

    def __init__(self, browser, base: str, width: int, height: int, scale: float = 1):
        self.context = browser.new_context(
            viewport={"width": width, "height": height},
            device_scale_factor=scale,
            accept_downloads=True,
        )
        self.page = self.context.new_page()
        self.blocked: list[str] = []
        self.errors: list[str] = []

        def route(r) -> None:
            url = r.request.url
            if urlsplit(url).hostname == "127.0.0.1" or url.startswith(("blob:", "data:")):
                r.continue_()
            else:
                self.blocked.append(url)
                r.abort()

        self.page.route("**/*", route)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.goto(base + "/")
        self.page.wait_for_load_state("networkidle")

    def close(self) -> None:
        self.context.close()

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / name))

    def client(self, x: float, y: float) -> tuple[float, float]:
        return tuple(self.page.evaluate("([x, y]) => window.edgefill.imageToClient(x, y)", [x, y]))

    def stroke(self, points: list[tuple[float, float]]) -> None:
        """Drag the mouse through image-space points, as a person would."""
        mouse = self.page.mouse
        mouse.move(*self.client(*points[0]))
        mouse.down()
        for p in points[1:]:
            mouse.move(*self.client(*p), steps=8)
        mouse.up()

    def open_photo(self, path: Path) -> None:
        self.page.set_input_files("#photo-input", str(path))
        self.page.wait_for_function("() => window.edgefill.size[0] > 0")
        self.page.wait_for_timeout(100)

    def wait_idle(self) -> None:
        self.page.wait_for_function("() => !window.edgefill.busy", timeout=60_000)

    def download(self, button: str) -> np.ndarray:
        with self.page.expect_download() as info:
            self.page.click(button)
        return np.asarray(Image.open(io.BytesIO(Path(info.value.path()).read_bytes())))


@pytest.fixture()
def laptop(browser, server) -> Iterator[Page]:
    p = Page(browser, server, 1280, 800)
    yield p
    p.close()
    assert not p.blocked, f"the page tried to reach outside 127.0.0.1: {p.blocked}"
    assert not p.errors, f"errors in the page: {p.errors}"


def test_paint_inpaint_and_edit_edges(laptop: Page, photo_path: Path) -> None:
    page = laptop.page
    photo = make_photo()
    laptop.shot("01-empty-laptop.png")
    # The start card is on screen: the stage once collapsed to 0 px (the card clipped away)
    # while the photo bar was hidden. What is drawn at the card's centre must be the card.
    assert page.evaluate("document.getElementById('stage').getBoundingClientRect().height") > 300
    assert page.evaluate(
        """() => { const r = document.querySelector('.drop-card').getBoundingClientRect();
                   const hit = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
                   return !!hit && !!hit.closest('.drop-card'); }"""
    )
    assert page.is_disabled("#inpaint")
    assert page.is_visible("#detect-damage") and page.is_disabled("#detect-damage")

    laptop.open_photo(photo_path)
    assert page.evaluate("window.edgefill.size") == [W, H]
    assert page.evaluate("window.edgefill.view") == "mask"

    # Paint a horizontal stroke across the hill line.
    laptop.stroke([(40, 75), (80, 72), (120, 78)])
    page.wait_for_function("() => !document.getElementById('inpaint').disabled")
    laptop.shot("02-mask-laptop.png")

    # Undo / redo from the keyboard.
    page.keyboard.press("Control+z")
    page.wait_for_function("() => document.getElementById('inpaint').disabled")
    page.keyboard.press("Control+Shift+z")
    page.wait_for_function("() => !document.getElementById('inpaint').disabled")

    page.click("#inpaint")
    laptop.wait_idle()
    page.wait_for_function("() => window.edgefill.view === 'result'")
    laptop.shot("03-result-laptop.png")

    result = laptop.download("#download-result")
    mask = laptop.download("#download-mask")
    assert result.shape == (H, W, 3) and mask.shape[:2] == (H, W)
    hole = (mask[..., 0] if mask.ndim == 3 else mask) > 0
    for x, y in [(40, 75), (60, 74), (80, 72), (100, 75), (120, 78)]:
        assert hole[y, x], f"the stroke at {(x, y)} is not in the mask"
    assert 0.03 < hole.mean() < 0.3
    np.testing.assert_array_equal(result[~hole], photo[~hole])  # outside: bit-identical
    changed = (result[hole] != photo[hole]).any(axis=1).mean()
    assert changed > 0.5, f"only {changed:.0%} of the hole changed"

    # Edges view: the prediction over the photo; draw a vertical edge through the hole.
    page.click("#tab-edges")
    laptop.wait_idle()
    page.wait_for_function("() => window.edgefill.edgesReady")
    laptop.shot("04-edges-laptop.png")
    laptop.stroke([(80, 55), (80, 95)])
    laptop.stroke([(60, 60), (62, 90)])
    page.keyboard.press("e")  # eraser: wipe predicted edges along a short stretch
    laptop.stroke([(100, 70), (110, 80)])
    page.keyboard.press("b")
    laptop.shot("05-edges-edited-laptop.png")
    page.click("#inpaint")
    laptop.wait_idle()
    page.wait_for_function("() => window.edgefill.view === 'result'")
    edited = laptop.download("#download-result")
    np.testing.assert_array_equal(edited[~hole], photo[~hole])
    assert (edited[hole] != result[hole]).any(), "edited edges did not change the result"

    # The before/after slider moves with the mouse.
    x0, y0 = laptop.client(20, 60)
    page.mouse.click(x0, y0)
    page.wait_for_function(
        "() => Number(document.getElementById('compare-handle').getAttribute('aria-valuenow')) < 20"
    )
    laptop.shot("06-compare-laptop.png")


def test_keyboard_shortcuts_and_errors(laptop: Page, photo_path: Path, tmp_path: Path) -> None:
    page = laptop.page
    laptop.open_photo(photo_path)
    size = int(page.input_value("#brush-size"))
    page.keyboard.press("]")
    assert int(page.input_value("#brush-size")) > size
    page.keyboard.press("[")
    page.keyboard.press("[")
    assert int(page.input_value("#brush-size")) < size
    page.keyboard.press("e")
    assert page.get_attribute("#tool-eraser", "aria-pressed") == "true"
    page.keyboard.press("b")
    assert page.get_attribute("#tool-brush", "aria-pressed") == "true"

    # A mask file of the wrong size is refused with both sizes named.
    bad = tmp_path / "bad_mask.png"
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(bad)
    page.set_input_files("#mask-input", str(bad))
    page.wait_for_selector("#toast.error")
    assert "10×10" in page.inner_text("#toast") and f"{W}×{H}" in page.inner_text("#toast")

    # A mask file of the right size becomes the mask (one undoable step).
    good = tmp_path / "good_mask.png"
    m = np.zeros((H, W), np.uint8)
    m[20:40, 20:60] = 255
    Image.fromarray(m).save(good)
    page.set_input_files("#mask-input", str(good))
    page.wait_for_function("() => !document.getElementById('inpaint').disabled")
    got = laptop.download("#download-mask")
    np.testing.assert_array_equal((got[..., 0] if got.ndim == 3 else got) > 0, m > 0)
    page.keyboard.press("Control+z")
    page.wait_for_function("() => document.getElementById('inpaint').disabled")


def test_a_mask_file_is_read_as_the_library_reads_it(
    laptop: Page, photo_path: Path, tmp_path: Path
) -> None:
    """The app and ``load_mask`` take the same hole from a mask file: a JPEG's compression
    noise is not the hole, nor are transparent pixels; a colour image is refused."""
    import cv2

    from edgefill.masks import load_mask

    page = laptop.page
    laptop.open_photo(photo_path)
    drawn = np.zeros((H, W), np.uint8)
    cv2.line(drawn, (10, 10), (150, 100), 255, 4)
    cv2.circle(drawn, (70, 80), 15, 255, -1)
    jpeg = tmp_path / "mask.jpg"
    Image.fromarray(drawn).save(jpeg, quality=90)
    soft = np.zeros((H, W, 4), np.uint8)  # white everywhere, opaque only on the strokes
    soft[...] = 255
    soft[..., 3] = np.where(drawn > 0, 255, 100)
    layered = tmp_path / "layer.png"
    Image.fromarray(soft).save(layered)
    for path in (jpeg, layered):
        expected = load_mask(path)
        assert not ((np.asarray(Image.open(path).convert("L")) > 0) == expected).all()
        page.set_input_files("#mask-input", str(path))
        page.wait_for_function("() => !document.getElementById('inpaint').disabled")
        got = laptop.download("#download-mask")
        np.testing.assert_array_equal((got[..., 0] if got.ndim == 3 else got) > 0, expected)
        page.keyboard.press("Control+z")
        page.wait_for_function("() => document.getElementById('inpaint').disabled")

    colour = np.zeros((H, W, 3), np.uint8)
    colour[20:40, 20:60] = (255, 0, 0)
    Image.fromarray(colour).save(tmp_path / "red.png")
    page.set_input_files("#mask-input", str(tmp_path / "red.png"))
    page.wait_for_selector("#toast.error")
    assert "red.png" in page.inner_text("#toast") and "colour" in page.inner_text("#toast")


def test_a_mask_that_looks_inverted_is_flagged_and_inverts_in_one_step(
    laptop: Page, photo_path: Path, tmp_path: Path
) -> None:
    page = laptop.page
    laptop.open_photo(photo_path)
    hole = np.zeros((H, W), bool)
    hole[30:70, 40:100] = True
    keep = tmp_path / "keep.png"  # white marks what to keep
    Image.fromarray((~hole).astype(np.uint8) * 255).save(keep)
    page.set_input_files("#mask-input", str(keep))
    page.wait_for_function("() => !document.getElementById('inpaint').disabled")
    assert "88 % of the photo" in page.inner_text("#toast")  # 1 - 40 * 60 / (120 * 160)
    assert "invert" in page.inner_text("#toast")

    def mask() -> np.ndarray:
        got = laptop.download("#download-mask")
        return (got[..., 0] if got.ndim == 3 else got) > 0

    page.keyboard.press("i")
    undo_says = "() => /invert mask/.test(document.getElementById('undo').title)"
    page.wait_for_function(undo_says)
    np.testing.assert_array_equal(mask(), hole)
    page.keyboard.press("Control+z")
    page.wait_for_function(f"() => !({undo_says})()")
    np.testing.assert_array_equal(mask(), ~hole)
    page.click("#invert-mask")  # the button does the same
    page.wait_for_function(undo_says)
    np.testing.assert_array_equal(mask(), hole)


def test_grow_widens_a_loaded_mask_by_a_few_pixels_in_one_step(
    laptop: Page, photo_path: Path, tmp_path: Path
) -> None:
    """A mask that stops at an object's edge (from a segmentation tool): Grow (G) widens it by
    2 px on this 160 px photo, about as ``--grow-mask 2`` does, and Ctrl+Z takes it back."""
    page = laptop.page
    laptop.open_photo(photo_path)
    hole = np.zeros((H, W), bool)
    hole[30:70, 40:100] = True
    hole[90, 20:140] = True  # a one-pixel line: grown on both sides
    Image.fromarray(hole.astype(np.uint8) * 255).save(tmp_path / "tight.png")
    page.set_input_files("#mask-input", str(tmp_path / "tight.png"))
    page.wait_for_function("() => !document.getElementById('grow-mask').disabled")

    def mask() -> np.ndarray:
        got = laptop.download("#download-mask")
        return (got[..., 0] if got.ndim == 3 else got) > 0

    def dilated(px: int) -> np.ndarray:
        return cv2.dilate(hole.astype(np.uint8), np.ones((2 * px + 1, 2 * px + 1), np.uint8)) > 0

    grown_says = "() => /grow mask/.test(document.getElementById('undo').title)"
    page.keyboard.press("g")
    page.wait_for_function(grown_says)
    assert "grown by 2 px" in page.inner_text("#toast")
    grown = mask()
    assert (grown >= dilated(1)).all() and (grown <= dilated(2)).all()
    assert grown[88, 60] and grown[92, 60] and not grown[87, 60]  # the line: 2 px each side
    page.keyboard.press("Control+z")
    page.wait_for_function(f"() => !({grown_says})()")
    np.testing.assert_array_equal(mask(), hole)
    page.click("#grow-mask")  # the button does the same
    page.wait_for_function(grown_says)
    np.testing.assert_array_equal(mask(), grown)


def test_a_tiff_scan_opens_through_the_server_and_keeps_its_16_bits(
    laptop: Page, tmp_path: Path
) -> None:
    """Browsers do not show TIFF (nor HEIC): the page shows the server's 8-bit preview and
    still sends the file, so the result keeps its 16 bits outside the hole."""
    import cv2
    import tifffile

    page = laptop.page
    deep = make_photo().astype(np.uint16) * 257 + 3
    tifffile.imwrite(tmp_path / "scan.tif", deep, photometric="rgb", compression="zlib")
    laptop.open_photo(tmp_path / "scan.tif")
    assert page.evaluate("window.edgefill.size") == [W, H]
    hole = np.zeros((H, W), bool)
    hole[40:70, 50:100] = True
    Image.fromarray(hole.astype(np.uint8) * 255).save(tmp_path / "m.png")
    page.set_input_files("#mask-input", str(tmp_path / "m.png"))
    page.wait_for_function("() => !document.getElementById('inpaint').disabled")
    page.click("#inpaint")
    laptop.wait_idle()
    page.wait_for_function("() => window.edgefill.view === 'result'")
    with page.expect_download() as info:
        page.click("#download-result")
    back = cv2.imread(info.value.path(), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(cv2.cvtColor(back, cv2.COLOR_BGR2RGB)[~hole], deep[~hole])

    (tmp_path / "junk.tif").write_bytes(b"not a scan")
    page.set_input_files("#photo-input", str(tmp_path / "junk.tif"))
    page.wait_for_selector("#toast.error")
    assert "junk.tif" in page.inner_text("#toast")
    assert "not an image this server can read" in page.inner_text("#toast")
    assert laptop.errors == [
        "Failed to load resource: the server responded with a status of 400 (Bad Request)"
    ]  # the preview's answer, as expected: the page itself logged nothing
    laptop.errors.clear()


def test_detect_damage_fills_the_mask_layer(laptop: Page, tmp_path: Path) -> None:
    """The button adds the detected scratches and dust to what is painted, as one undo step."""
    import cv2

    page = laptop.page
    photo = make_photo()
    truth = np.zeros((H, W), np.uint8)
    for img, colour in ((photo, (250, 250, 250)), (truth, 1)):
        cv2.line(img, (20, 20), (140, 100), colour, 2)
    for c in [(30, 95), (60, 40), (130, 60)]:
        for img, colour in ((photo, (15, 15, 15)), (truth, 1)):
            cv2.circle(img, c, 2, colour, -1)
    path = tmp_path / "scratched.png"
    Image.fromarray(photo).save(path)
    laptop.open_photo(path)
    laptop.stroke([(140, 20), (150, 30)])  # a hand-painted mark the detection must keep
    page.wait_for_function("() => !document.getElementById('inpaint').disabled")
    painted = laptop.download("#download-mask")[..., 0] > 0

    page.click("#detect-damage")
    laptop.wait_idle()
    page.wait_for_selector("#toast:not(.error)")
    assert "damaged" in page.inner_text("#toast")
    laptop.shot("07-detected-laptop.png")
    mask = laptop.download("#download-mask")
    hole = (mask[..., 0] if mask.ndim == 3 else mask) > 0
    t = truth > 0
    assert (hole & t).sum() / t.sum() > 0.9, "the drawn damage is not in the mask"
    assert hole[painted].all(), "the painted mark was lost"
    assert hole.mean() < 0.15

    # One undo step takes the detection back and leaves the painted mark.
    page.keyboard.press("Control+z")
    page.wait_for_timeout(100)
    back = laptop.download("#download-mask")
    np.testing.assert_array_equal((back[..., 0] if back.ndim == 3 else back) > 0, painted)

    # The D key runs it again; the result can be inpainted like a painted mask.
    page.keyboard.press("d")
    laptop.wait_idle()
    page.click("#inpaint")
    laptop.wait_idle()
    page.wait_for_function("() => window.edgefill.view === 'result'")
    result = laptop.download("#download-result")
    np.testing.assert_array_equal(result[~hole], photo[~hole])


def test_detect_damage_marks_confident_regions_and_only_shows_uncertain(
    laptop: Page, tmp_path: Path
) -> None:
    """Grey levels of /api/detect?confidence are region confidences: regions at or above
    X-Edgefill-Confident-At go into the mask, the others are shown (yellow) but not marked."""
    page = laptop.page
    path = tmp_path / "photo.png"
    Image.fromarray(make_photo()).save(path)
    answer = np.zeros((H, W), np.uint8)
    answer[20:24, 10:90] = 242  # confidence 0.95: marked
    answer[60:66, 120:130] = 140  # confidence 0.55: shown, not marked
    buf = io.BytesIO()
    Image.fromarray(answer).save(buf, format="PNG")
    sent = {}

    def fake(route) -> None:
        sent["body"] = route.request.post_data_buffer or b""
        route.fulfill(
            status=200,
            body=buf.getvalue(),
            content_type="image/png",
            headers={
                "X-Edgefill-Confident-At": "0.75",
                "X-Edgefill-Confident-Fraction": f"{(answer >= 191).mean():.6f}",
                "X-Edgefill-Uncertain-Regions": "1",
            },
        )

    page.route("**/api/detect", fake)
    laptop.open_photo(path)
    page.click("#detect-damage")
    laptop.wait_idle()
    page.wait_for_selector("#toast:not(.error)")
    assert "1 uncertain region(s) are shown in yellow and not marked" in page.inner_text("#toast")
    assert b'name="confidence"' in sent["body"]
    mask = laptop.download("#download-mask")
    hole = (mask[..., 0] if mask.ndim == 3 else mask) > 0
    np.testing.assert_array_equal(hole, answer >= 191)
    assert page.evaluate("window.edgefill.uncertainShown")
    page.click("#undo")  # the yellow overlay goes with the detection it belongs to
    assert not page.evaluate("window.edgefill.uncertainShown")
    page.click("#redo")
    assert page.evaluate("window.edgefill.uncertainShown")
    page.click("#clear")  # starting the mask over takes them too, undoably
    assert not page.evaluate("window.edgefill.uncertainShown")
    page.click("#undo")
    assert page.evaluate("window.edgefill.uncertainShown")
    page.unroute("**/api/detect")


def test_large_photo_is_shown_scaled_and_processed_at_full_size(
    laptop: Page, tmp_path: Path
) -> None:
    page = laptop.page
    big = np.asarray(Image.fromarray(make_photo()).resize((1800, 1200), Image.BILINEAR))
    path = tmp_path / "big.png"
    Image.fromarray(big).save(path)
    laptop.open_photo(path)
    assert page.evaluate("window.edgefill.size") == [1800, 1200]
    box = page.locator("#view").bounding_box()
    left, top = laptop.client(0, 0)
    right, bottom = laptop.client(1800, 1200)
    assert right - left <= box["width"] and bottom - top <= box["height"]  # fitted, scaled down
    # Zoom in around the centre with the wheel; strokes still land where they are drawn.
    page.mouse.move(*laptop.client(900, 600))
    page.mouse.wheel(0, -400)
    page.wait_for_timeout(100)
    assert laptop.client(1800, 0)[0] - laptop.client(0, 0)[0] > right - left
    laptop.stroke([(800, 600), (1000, 620)])
    page.wait_for_function("() => !document.getElementById('inpaint').disabled")
    page.click("#inpaint")
    laptop.wait_idle()
    page.wait_for_function("() => window.edgefill.view === 'result'")
    result = laptop.download("#download-result")
    mask = laptop.download("#download-mask")
    assert result.shape == (1200, 1800, 3)
    hole = (mask[..., 0] if mask.ndim == 3 else mask) > 0
    assert hole[600, 800] and hole[610, 900] and hole[620, 1000] and not hole[300, 300]
    np.testing.assert_array_equal(result[~hole], big[~hole])
    assert (result[hole] != big[hole]).any()


def test_exif_rotated_jpeg_matches_the_server(laptop: Page, tmp_path: Path) -> None:
    """The browser and the server must agree on the orientation, or the mask would not fit."""
    page = laptop.page
    stored = np.ascontiguousarray(np.rot90(make_photo(), 1))  # stored 120 wide, 160 high
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": shown 160 wide, 120 high
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, quality=95, exif=exif)
    laptop.open_photo(path)
    assert page.evaluate("window.edgefill.size") == [W, H]
    laptop.stroke([(30, 30), (90, 40)])
    page.wait_for_function("() => !document.getElementById('inpaint').disabled")
    page.click("#inpaint")
    laptop.wait_idle()
    page.wait_for_function("() => window.edgefill.view === 'result'")
    assert laptop.download("#download-result").shape == (H, W, 3)


def test_a_mask_made_on_a_turned_photos_stored_pixels_is_turned_as_the_library_does(
    laptop: Page, tmp_path: Path
) -> None:
    """A camera JPEG stored on its side (EXIF orientation 5-8) with a mask made on its stored
    pixels (a script that ignores EXIF): the page turns the mask with the photo, as
    ``masks.prepare_inputs`` does, instead of refusing it as the wrong size. So for a TIFF on
    its side, which the browser cannot show: the server's preview says how it was turned."""
    from edgefill.masks import prepare_inputs

    page = laptop.page
    stored = np.ascontiguousarray(np.rot90(make_photo(), 1))  # stored 120 wide, 160 high
    mask = np.zeros(stored.shape[:2], np.uint8)
    mask[10:40, 15:100] = 255  # off-centre: each orientation puts it elsewhere
    Image.fromarray(mask).save(tmp_path / "stored_mask.png")
    for orientation, suffix in ((5, "jpg"), (6, "jpg"), (7, "jpg"), (8, "jpg"), (6, "tif")):
        exif = Image.Exif()
        exif[0x0112] = orientation
        photo = tmp_path / f"side_{orientation}.{suffix}"
        Image.fromarray(stored).save(photo, quality=95, exif=exif)
        expected = prepare_inputs(photo, tmp_path / "stored_mask.png")[1]
        laptop.open_photo(photo)
        assert page.evaluate("window.edgefill.size") == [W, H]
        page.set_input_files("#mask-input", str(tmp_path / "stored_mask.png"))
        page.wait_for_function("() => !document.getElementById('inpaint').disabled")
        got = laptop.download("#download-mask")
        np.testing.assert_array_equal((got[..., 0] if got.ndim == 3 else got) > 0, expected)
        page.click(".doc.active .doc-close")
        if page.is_visible("#confirm"):
            page.click("#confirm-yes")
        page.wait_for_function("() => window.edgefill.docs.length === 0")


def test_phone_width(browser, server, photo_path: Path) -> None:
    phone = Page(browser, server, 390, 844, scale=2)
    try:
        page = phone.page
        phone.shot("11-empty-phone.png")
        phone.open_photo(photo_path)
        # Everything needed is on screen without horizontal scrolling.
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        for sel in ("#inpaint", "#tool-brush", "#tool-eraser", "#undo", "#brush-size"):
            box = page.locator(sel).bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390, sel
        for pair in (("#undo", "#redo"), ("#fit", "#zoom-hole"), ("#undo", "#grow-mask")):
            a, b = (page.locator(sel).bounding_box() for sel in pair)
            assert a["y"] == b["y"] and a["x"] < b["x"], pair  # a group stays on one row
        phone.stroke([(30, 60), (130, 60)])
        page.wait_for_function("() => !document.getElementById('inpaint').disabled")
        phone.shot("12-mask-phone.png")
        page.click("#tab-edges")
        phone.wait_idle()
        page.wait_for_function("() => window.edgefill.edgesReady")
        phone.shot("13-edges-phone.png")
        page.click("#inpaint")
        phone.wait_idle()
        page.wait_for_function("() => window.edgefill.view === 'result'")
        phone.shot("14-result-phone.png")
        page.click("#tab-mask")
        page.keyboard.press("i")  # a two-line toast stays above the toolbar's three rows
        page.wait_for_selector("#toast:not([hidden])")
        toast, bar = (page.locator(sel).bounding_box() for sel in ("#toast", ".toolbar"))
        assert toast["height"] > 40 and toast["y"] + toast["height"] <= bar["y"], (toast, bar)
        page.keyboard.press("Control+z")
        page.click("#help-button")  # the help opens at its title, keys above their text
        assert page.evaluate("document.getElementById('help').scrollTop") == 0
        key, text = (page.locator(f"#help dl > {t} >> nth=0").bounding_box() for t in ("dt", "dd"))
        assert text["y"] >= key["y"] + key["height"] and text["width"] > 250
        assert not phone.blocked and not phone.errors, (phone.blocked, phone.errors)
    finally:
        phone.close()
