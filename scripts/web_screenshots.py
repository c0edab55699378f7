"""Regenerate the web app screenshots in docs/figures/web/ (used by docs/web.md).

Starts the app with the shipped default model on a free loopback port, drives the real page in
Debian's headless Chromium (Playwright for Python; never `playwright install`) at laptop
(1440x900) and phone (390x844) size through a whole repair of the bundled example: two photos
open, the example mask loaded, the predicted edges, two results with the before/after slider,
an object selection on the result, and the settings.

    .venv/bin/python scripts/web_screenshots.py [--out docs/figures/web] [--weights DIR]
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import uvicorn
from PIL import Image
from playwright.sync_api import sync_playwright

from edgefill.pipeline import Inpainter
from edgefill.server import LOOPBACK_HOSTS, create_app

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "examples" / "astronaut.jpg"
MASK = ROOT / "examples" / "astronaut_mask.png"
CHROMIUM = os.environ.get("EDGEFILL_CHROMIUM", "/usr/bin/chromium")
SIZES = {"laptop": (1440, 900), "phone": (390, 844)}
SHUTTLE_BOX = ((350, 0), (476, 292))  # the model shuttle on the right of the example photo
BOOSTER = ((452, 50), (452, 250))  # its right booster, white on a light wall: an object scribble


def start_server(inpainter: Inpainter) -> tuple[uvicorn.Server, str]:
    app = create_app(inpainter, allowed_hosts=LOOPBACK_HOSTS)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True).start()
    deadline = time.monotonic() + 60
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    if not srv.started:
        raise SystemExit("uvicorn did not start")
    return srv, f"http://127.0.0.1:{sock.getsockname()[1]}"


def second_photo(folder: Path) -> Path:
    """A sepia print of the example: the album's second photo."""
    gray = np.asarray(Image.open(PHOTO).convert("L"), np.float32) / 255
    sepia = np.stack([gray * 240 + 15, gray * 200 + 20, gray * 150 + 25], -1)
    path = folder / "album_page_2.png"
    Image.fromarray(sepia.clip(0, 255).astype(np.uint8)).save(path)
    return path


def drive(browser, base: str, name: str, out: Path, extra: Path) -> list[Path]:
    w, h = SIZES[name]
    context = browser.new_context(viewport={"width": w, "height": h}, device_scale_factor=1)
    page = context.new_page()
    page.goto(base + "/")
    page.wait_for_load_state("networkidle")
    shots: list[Path] = []

    def wait_idle() -> None:
        page.wait_for_function("() => !window.edgefill.busy", timeout=300_000)

    def shot(step: str) -> None:
        page.evaluate("document.getElementById('toast').hidden = true")
        page.evaluate("document.getElementById('view-hint').hidden = true")
        page.mouse.move(4, 4)  # no brush cursor in the picture
        page.evaluate("document.activeElement && document.activeElement.blur()")
        page.wait_for_timeout(300)
        shots.append(out / f"web-{step}-{name}.png")
        page.screenshot(path=str(shots[-1]))

    def client(x: float, y: float) -> tuple[float, float]:
        return tuple(page.evaluate("([x, y]) => window.edgefill.imageToClient(x, y)", [x, y]))

    page.set_input_files("#photo-input", [str(extra), str(PHOTO)])
    page.wait_for_function("() => window.edgefill.docs.length === 2")
    page.set_input_files("#mask-input", str(MASK))
    page.wait_for_function("() => !document.getElementById('inpaint').disabled")
    shot("mask")

    page.click("#tab-edges")
    wait_idle()
    page.wait_for_function("() => window.edgefill.edgesReady")
    shot("edges")

    page.click("#tab-mask")
    page.click("#inpaint")
    wait_idle()
    page.click("#tab-edges")
    wait_idle()
    page.click("#inpaint")
    wait_idle()
    page.wait_for_function("() => window.edgefill.view === 'result'")
    page.focus("#compare-handle")
    for _ in range(10):
        page.keyboard.press("ArrowLeft")
    shot("result")

    page.click("#keep-result")
    page.click("#tool-select")
    (x0, y0), (x1, y1) = (client(*p) for p in SHUTTLE_BOX)
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=10)
    page.mouse.up()
    wait_idle()
    page.click("#select-object")
    (x0, y0), (x1, y1) = (client(*p) for p in BOOSTER)
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=10)
    page.mouse.up()
    wait_idle()
    shot("select")

    if name == "laptop":
        page.click("#settings-button")
        shot("settings")
    context.close()
    return shots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "figures" / "web"))
    parser.add_argument("--weights", default=None)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    srv, base = start_server(Inpainter.from_pretrained(args.weights))
    try:
        with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
            extra = second_photo(Path(tmp))
            browser = p.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"], headless=True
            )
            for name in SIZES:
                for path in drive(browser, base, name, out, extra):
                    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
            browser.close()
    finally:
        srv.should_exit = True


if __name__ == "__main__":
    main()
