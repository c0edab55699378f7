"""The page's safety net and workflow in headless Chromium: history with runs, stale results,
the leave guard, one job at a time, settings, readable edges, object selection, several photos
and the small things. Shares the server, browser and page helpers of test_web_e2e.py."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_web_e2e import (  # noqa: F401  (browser and server are fixtures)
    H,
    Page,
    W,
    browser,
    make_photo,
    server,
)


@pytest.fixture()
def laptop(browser, server):  # noqa: F811
    p = Page(browser, server, 1280, 800)
    inpaints: list = []
    p.page.on("request", lambda r: inpaints.append(r) if r.url.endswith("/api/inpaint") else None)
    p.inpaints = inpaints
    yield p
    p.close()
    assert not p.blocked, f"the page tried to reach outside 127.0.0.1: {p.blocked}"
    assert not p.errors, f"errors in the page: {p.errors}"


@pytest.fixture(scope="module")
def photo_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "garden.png"
    Image.fromarray(make_photo()).save(path)
    return path


def hole_of(mask: np.ndarray) -> np.ndarray:
    return (mask[..., 0] if mask.ndim == 3 else mask) > 0


def js(page, expr: str):
    return page.evaluate(f"() => window.edgefill.{expr}")


def paint_and_run(p: Page, points: list[tuple[float, float]]) -> np.ndarray:
    p.stroke(points)
    p.page.wait_for_function("() => !document.getElementById('inpaint').disabled")
    p.page.click("#inpaint")
    p.wait_idle()
    p.page.wait_for_function("() => window.edgefill.view === 'result'")
    return p.download("#download-result")


def toast_text(page) -> str:
    page.wait_for_selector("#toast:not([hidden])")
    return page.inner_text("#toast")


# ----------------------------------------------------------------------------- history


def test_runs_and_keep_are_undoable_steps(laptop: Page, photo_path: Path) -> None:
    page = laptop.page
    laptop.open_photo(photo_path)
    first = paint_and_run(laptop, [(40, 75), (80, 72), (120, 78)])
    assert js(page, "history.undo") == ["mask brush stroke", "inpaint"]

    # Undo the run: the result goes, the mask stays; redo brings the same result back.
    page.keyboard.press("Control+z")
    assert js(page, "view") == "mask" and page.is_disabled("#tab-result")
    assert not page.is_disabled("#inpaint"), "undoing the run must keep the mask"
    page.keyboard.press("Control+Shift+z")
    assert js(page, "view") == "result"
    np.testing.assert_array_equal(laptop.download("#download-result"), first)

    # A second run with another stroke; the strip holds both and goes back to the first.
    page.click("#tab-mask")
    second = paint_and_run(laptop, [(30, 30), (60, 35)])
    assert page.locator("#results-strip .result-thumb").count() == 2
    page.click("#results-strip .result-thumb >> nth=0")
    assert js(page, "resultIndex") == 0
    np.testing.assert_array_equal(laptop.download("#download-result"), first)
    page.keyboard.press("Control+z")  # back to the second result
    assert js(page, "resultIndex") == 1
    np.testing.assert_array_equal(laptop.download("#download-result"), second)

    # Keep & continue swaps the photo and clears the mask; one undo restores both.
    version = js(page, "photoVersion")
    page.click("#keep-result")
    assert js(page, "view") == "mask" and js(page, "photoVersion") != version
    assert page.is_disabled("#inpaint") and page.is_disabled("#tab-result")
    page.keyboard.press("Control+z")
    assert js(page, "photoVersion") == version
    assert not page.is_disabled("#inpaint") and not page.is_disabled("#tab-result")
    page.keyboard.press("Control+y")
    assert js(page, "photoVersion") != version


def test_a_result_goes_stale_when_the_mask_or_edges_change(laptop: Page, photo_path) -> None:
    page = laptop.page
    laptop.open_photo(photo_path)
    paint_and_run(laptop, [(40, 75), (120, 78)])
    assert not js(page, "resultStale") and page.is_hidden("#stale-note")
    assert page.get_attribute("#download-result", "aria-label") == "Download result as PNG"

    page.click("#tab-mask")
    laptop.stroke([(30, 30), (60, 35)])
    assert js(page, "resultStale")
    assert page.get_attribute("#tab-result", "data-stale") == "true"
    assert "outdated" in page.get_attribute("#download-result", "aria-label")
    page.click("#tab-result")
    assert page.is_visible("#stale-note")
    assert "the mask changed" in page.inner_text("#stale-note")
    laptop.shot("21-stale-laptop.png")

    # Undoing the stroke makes the result current again.
    page.keyboard.press("Control+z")
    assert not js(page, "resultStale")
    page.click("#tab-result")
    assert page.is_hidden("#stale-note")

    # An edited edge line also makes it stale; inpainting again clears it.
    page.click("#tab-edges")
    laptop.wait_idle()
    page.wait_for_function("() => window.edgefill.edgesReady")
    laptop.stroke([(80, 60), (80, 90)])
    assert js(page, "resultStale")
    page.click("#inpaint")
    laptop.wait_idle()
    assert not js(page, "resultStale")


def sends_edges(request) -> bool:
    return b'name="edges"' in (request.post_data_buffer or b"")


def test_only_edited_edges_are_sent(laptop: Page, photo_path) -> None:
    """Unedited edges are the server's own prediction: sending them would make the fill treat
    them as drawn (the release's G2 for drawn edges), so the page sends edges only after an edit."""
    page = laptop.page
    laptop.open_photo(photo_path)
    laptop.stroke([(40, 75), (120, 78)])
    page.click("#tab-edges")
    laptop.wait_idle()
    page.wait_for_function("() => window.edgefill.edgesReady")
    page.click("#inpaint")
    laptop.wait_idle()
    assert not sends_edges(laptop.inpaints[-1])

    page.click("#tab-edges")
    laptop.stroke([(80, 60), (80, 90)])
    page.click("#inpaint")
    laptop.wait_idle()
    assert sends_edges(laptop.inpaints[-1])
    page.click("#inpaint")  # again from the result of the edited edges: they stay in use
    laptop.wait_idle()
    assert sends_edges(laptop.inpaints[-1])

    page.click("#tab-edges")
    page.click("#clear")  # Reset: back to the prediction
    page.click("#inpaint")
    laptop.wait_idle()
    assert not sends_edges(laptop.inpaints[-1])
    assert len(laptop.inpaints) == 4


def test_leaving_with_unsaved_work_asks_first(browser, server, photo_path) -> None:  # noqa: F811
    p = Page(browser, server, 1280, 800)
    dialogs: list[str] = []

    def on_dialog(d) -> None:
        dialogs.append(d.type)
        d.dismiss()  # stay on the page

    p.page.on("dialog", on_dialog)
    try:
        p.open_photo(photo_path)
        p.page.close(run_before_unload=True)  # nothing done yet: no question
        assert dialogs == []
        p.page = p.context.new_page()
        p.page.on("dialog", on_dialog)
        p.page.goto(server + "/")
        p.page.wait_for_load_state("networkidle")
        p.open_photo(photo_path)
        p.stroke([(40, 75), (120, 78)])  # unsaved work
        p.page.close(run_before_unload=True)
        p.page.wait_for_timeout(300)
        assert dialogs == ["beforeunload"]
        assert not p.page.is_closed(), "dismissing the question must keep the page"
        # A downloaded result is saved work: leaving no longer asks.
        p.page.click("#inpaint")
        p.wait_idle()
        p.download("#download-result")
        with p.page.expect_event("close", timeout=10_000):
            p.page.close(run_before_unload=True)
        assert dialogs == ["beforeunload"] and p.page.is_closed()
    finally:
        p.close()


# ----------------------------------------------------------------------------- one job


def test_one_request_for_a_double_click_or_repeated_shortcut(laptop: Page, photo_path) -> None:
    page = laptop.page
    held: list = []
    page.route("**/api/inpaint", lambda route: held.append(route))
    laptop.open_photo(photo_path)
    laptop.stroke([(40, 75), (120, 78)])
    page.wait_for_function("() => !document.getElementById('inpaint').disabled")

    # The same tick as the click: the button is disabled and the overlay shows.
    state = page.evaluate(
        """() => { const b = document.getElementById('inpaint'); b.click();
                   return [b.disabled, !document.getElementById('busy').hidden]; }"""
    )
    assert state == [True, True]
    page.dblclick("#inpaint", force=True)
    for _ in range(3):
        page.keyboard.press("Control+Enter")
    page.wait_for_timeout(400)
    assert len(held) == 1, f"{len(held)} requests were sent"
    assert js(page, "busy")
    # The default settings go with it.
    assert multipart_field(held[0].request, "hd_strategy") == "crop"
    assert multipart_field(held[0].request, "refine") == "false"
    held[0].continue_()
    laptop.wait_idle()
    assert js(page, "view") == "result"

    # The same after the first job: a double click sends one more request, not two.
    page.click("#tab-mask")
    page.dblclick("#inpaint")
    page.wait_for_timeout(400)
    assert len(held) == 2
    held[1].continue_()
    laptop.wait_idle()
    assert len(laptop.inpaints) == 2


# ----------------------------------------------------------------------------- settings


def multipart_field(request, name: str) -> str | None:
    body = request.post_data_buffer or b""
    key = f'name="{name}"\r\n\r\n'.encode()
    if key not in body:
        return None
    return body.split(key, 1)[1].split(b"\r\n", 1)[0].decode()


def test_settings_are_saved_and_sent(laptop: Page, photo_path) -> None:
    page = laptop.page
    page.keyboard.press(",")
    assert page.is_visible("#settings")
    assert js(page, "settings") == {
        "hdStrategy": "crop",
        "refine": False,
        "detectKind": "auto",
        "sensitivity": 0.5,
        "autoRun": False,
    }
    page.select_option("#set-hd", "resize")
    page.check("#set-refine")
    page.select_option("#set-kind", "spots")
    page.eval_on_selector(
        "#set-sensitivity",
        "e => { e.value = '0.8'; e.dispatchEvent(new Event('input', {bubbles: true})); }",
    )
    laptop.shot("22-settings-laptop.png")
    page.click("#settings-close")

    page.reload()
    page.wait_for_load_state("networkidle")
    assert js(page, "settings") == {
        "hdStrategy": "resize",
        "refine": True,
        "detectKind": "spots",
        "sensitivity": 0.8,
        "autoRun": False,
    }
    laptop.open_photo(photo_path)
    laptop.stroke([(40, 75), (120, 78)])
    with page.expect_request("**/api/detect") as detect:
        page.click("#detect-damage")
    laptop.wait_idle()
    assert multipart_field(detect.value, "kind") == "spots"
    assert multipart_field(detect.value, "sensitivity") == "0.8"
    page.click("#inpaint")
    laptop.wait_idle()
    assert multipart_field(laptop.inpaints[-1], "hd_strategy") == "resize"
    assert multipart_field(laptop.inpaints[-1], "refine") == "true"
    with page.expect_request("**/api/edges") as edges:
        page.click("#tab-edges")
    laptop.wait_idle()
    assert multipart_field(edges.value, "hd_strategy") == "resize"


def test_auto_run_fills_after_each_stroke(laptop: Page, photo_path) -> None:
    page = laptop.page
    page.click("#settings-button")
    page.check("#set-run-auto")
    page.click("#settings-close")
    assert page.is_visible("#auto-badge")
    laptop.open_photo(photo_path)
    laptop.stroke([(40, 75), (120, 78)])
    laptop.wait_idle()
    page.wait_for_function("() => window.edgefill.history.undo.length === 2")
    assert len(laptop.inpaints) == 1
    assert js(page, "history.undo") == ["mask brush stroke", "auto fill"]
    # The fill is kept: the mask is empty again and painting goes on over the result.
    assert js(page, "view") == "mask" and page.is_disabled("#inpaint")
    page.keyboard.press("Control+z")
    assert not page.is_disabled("#inpaint")
    mask = hole_of(laptop.download("#download-mask"))
    assert mask[75, 40] and mask[78, 120]
    page.keyboard.press("Control+z")
    assert page.is_disabled("#inpaint")


# ----------------------------------------------------------------------------- edges


def test_edges_are_readable_at_fit_and_zoom_to_hole(laptop: Page, tmp_path) -> None:
    """A 2400x1600 photo at fit (about a third of its size): a 1-px Canny edge must still be
    drawn as a solid line a few screen pixels wide, not a faint one-pixel trace."""
    page = laptop.page
    big = np.asarray(Image.fromarray(make_photo()).resize((2400, 1800), Image.NEAREST))
    path = tmp_path / "big.png"
    Image.fromarray(big).save(path)
    laptop.open_photo(path)
    assert js(page, "scale") < 0.4
    laptop.stroke([(900, 1150), (1300, 1150)])
    page.click("#tab-edges")
    laptop.wait_idle()
    page.wait_for_function("() => window.edgefill.edgesReady")
    laptop.shot("23-edges-fit-laptop.png")
    # A screen column through the hill line just left of the hole, inside the crop window
    # (the edges are computed there only) and outside the hole (known Canny edges, white).
    x0, y0 = laptop.client(820, 1000)
    x1, y1 = laptop.client(820, 1300)
    shot = np.asarray(
        Image.open(
            io.BytesIO(page.screenshot(clip={"x": x0 - 1, "y": y0, "width": 3, "height": y1 - y0}))
        ).convert("L")
    )[:, 1]
    bright = shot > 150
    runs = np.diff(np.flatnonzero(np.diff(np.r_[0, bright.astype(int), 0])))[::2]
    assert runs.size and runs.max() >= 2, f"no solid edge line: column max {shot.max()}"

    s_fit = js(page, "scale")
    page.keyboard.press("h")
    s_hole = js(page, "scale")
    assert s_hole > 2 * s_fit
    cx, cy = laptop.client(1100, 1150)
    box = page.locator("#view").bounding_box()
    assert abs(cx - (box["x"] + box["width"] / 2)) < 20
    assert abs(cy - (box["y"] + box["height"] / 2)) < 20
    laptop.shot("24-edges-zoomed-laptop.png")


# ----------------------------------------------------------------------------- selection


def test_box_selection_proposes_the_object(laptop: Page, photo_path) -> None:
    page = laptop.page
    laptop.open_photo(photo_path)
    page.keyboard.press("s")
    assert page.get_attribute("#tool-select", "aria-pressed") == "true"
    assert page.is_visible("#select-box")
    # The bright disc: centre (120, 30), radius 14.
    laptop.stroke([(100, 10), (140, 50)])
    laptop.wait_idle()
    page.wait_for_function("() => !document.getElementById('inpaint').disabled")
    laptop.shot("25-selected-laptop.png")
    hole = hole_of(laptop.download("#download-mask"))
    y, x = np.mgrid[:H, :W]
    disc = (x - 120) ** 2 + (y - 30) ** 2 < 13**2
    assert hole[disc].mean() > 0.95, "the proposal misses the object"
    assert not hole[:, :95].any() and not hole[60:].any(), "the proposal leaks outside the box"
    assert js(page, "history.undo") == ["object selection"]

    # A "not object" scribble refines the same selection (one more step, not a second object).
    page.click("#select-background")
    laptop.stroke([(104, 14), (110, 20)])
    laptop.wait_idle()
    assert js(page, "history.undo") == ["object selection", "object selection"]

    # Done: the brush touches it up.
    page.keyboard.press("Enter")
    assert page.get_attribute("#tool-brush", "aria-pressed") == "true"
    laptop.stroke([(20, 100), (40, 100)])
    hole = hole_of(laptop.download("#download-mask"))
    assert hole[100, 30] and hole[disc].mean() > 0.9
    page.keyboard.press("Control+z")
    page.keyboard.press("Control+z")
    page.keyboard.press("Control+z")
    assert page.is_disabled("#inpaint")


# ----------------------------------------------------------------------------- photos


def test_several_photos_each_with_its_own_mask_and_download_all(laptop: Page, tmp_path) -> None:
    page = laptop.page
    photos = [make_photo(), np.ascontiguousarray(make_photo()[:, ::-1])]
    paths = []
    for i, arr in enumerate(photos):
        paths.append(tmp_path / f"album_{i}.png")
        Image.fromarray(arr).save(paths[-1])
    page.set_input_files("#photo-input", [str(p) for p in paths])
    page.wait_for_function("() => window.edgefill.docs.length === 2")
    assert js(page, "active") == 1
    second = paint_and_run(laptop, [(20, 20), (60, 20)])
    page.click(".doc >> nth=0 >> .doc-pick")
    assert js(page, "active") == 0 and js(page, "view") == "mask"
    assert page.is_disabled("#inpaint"), "the first photo's mask must still be empty"
    first = paint_and_run(laptop, [(20, 100), (60, 100)])
    assert not (hole_of(laptop.download("#download-mask"))[20, 40])
    laptop.shot("26-two-photos-laptop.png")

    page.click(".doc >> nth=1 >> .doc-pick")
    assert page.is_hidden("#toast"), "the first photo's 'Filled' stayed up over the second"
    assert js(page, "history.undo") == ["mask brush stroke", "inpaint"]
    assert hole_of(laptop.download("#download-mask"))[20, 40]

    assert page.is_visible("#download-all")
    with page.expect_download() as info:
        page.click("#download-all")
    assert info.value.suggested_filename == "edgefill_results.zip"
    with zipfile.ZipFile(info.value.path()) as z:
        assert z.testzip() is None
        names = z.namelist()
        assert names == ["album_0_inpainted.png", "album_1_inpainted.png"]
        got = [np.asarray(Image.open(io.BytesIO(z.read(n)))) for n in names]
    np.testing.assert_array_equal(got[0], first)
    np.testing.assert_array_equal(got[1], second)

    # Everything is downloaded: closing a photo asks nothing. Unsaved work asks first.
    page.click(".doc >> nth=0 >> .doc-close")
    page.wait_for_function("() => window.edgefill.docs.length === 1")
    page.click("#tab-mask")
    laptop.stroke([(100, 100), (120, 100)])
    page.click(".doc >> nth=0 >> .doc-close")
    assert page.is_visible("#confirm")
    page.click("#confirm-no")
    assert js(page, "docs.length") == 1
    page.click(".doc >> nth=0 >> .doc-close")
    page.click("#confirm-yes")
    page.wait_for_function("() => window.edgefill.docs.length === 0")
    assert page.is_visible("#dropzone")


def test_what_a_ux_audit_found(laptop: Page, photo_path, tmp_path) -> None:
    """One item each: invert says what it made; the outdated note's button needs a hole and
    the note covers neither the before/after labels nor the hint; Download all names outdated
    results; closing the last photo shows the start page (Clear and a detection's yellow
    marks: test_web_e2e's detection test)."""
    page = laptop.page
    laptop.open_photo(photo_path)
    page.keyboard.press("i")  # on an empty mask: the whole photo becomes the hole
    assert "100 % of the photo is now the hole" in toast_text(page)
    assert page.get_attribute("#toast", "class") == "error"
    page.keyboard.press("Control+z")
    page.wait_for_function("() => document.getElementById('inpaint').disabled")

    paint_and_run(laptop, [(40, 75), (120, 78)])
    page.click("#tab-mask")
    page.click("#clear")
    page.click("#tab-result")
    assert page.is_visible("#stale-note") and page.is_disabled("#stale-rerun")
    note = page.locator("#stale-note").bounding_box()
    for label in page.locator("#compare-labels span").all():
        box = label.bounding_box()
        assert box["y"] >= note["y"] + note["height"], "a before/after label is under the note"
    assert page.is_hidden("#view-hint")
    Image.fromarray(make_photo()).save(tmp_path / "second.png")  # Download all needs two
    laptop.open_photo(tmp_path / "second.png")
    with page.expect_download():
        page.click("#download-all")
    assert "outdated" in toast_text(page) and "garden.png" in page.inner_text("#toast")
    page.click(".doc >> nth=1 >> .doc-close")
    page.wait_for_function("() => window.edgefill.docs.length === 1")

    page.click(".doc >> nth=0 >> .doc-close")
    page.click("#confirm-yes")
    page.wait_for_function("() => window.edgefill.docs.length === 0")
    assert page.get_attribute("body", "data-view") == "mask"
    assert page.get_attribute("#tab-result", "aria-selected") == "false"
    assert page.is_hidden("#toast")


def test_after_a_cancel_the_busy_text_says_the_server_finishes_that_job_first(
    laptop: Page, photo_path
) -> None:
    """Cancel stops the page's wait, not the server's work, which the next job waits for."""
    page = laptop.page
    laptop.open_photo(photo_path)
    laptop.stroke([(40, 75), (120, 78)])
    held: list = []
    page.route("**/api/inpaint", lambda route: held.append(route))  # held: the server "works"
    page.click("#inpaint")
    while not held:
        page.wait_for_timeout(20)
    assert "cancelled" not in page.inner_text("#busy-text")
    page.keyboard.press("Escape")
    page.wait_for_function("() => !window.edgefill.busy")
    page.click("#inpaint")
    while len(held) < 2:
        page.wait_for_timeout(20)
    assert "the server first ends the job you cancelled" in page.inner_text("#busy-text")
    held[1].continue_()
    laptop.wait_idle()
    page.wait_for_function("() => window.edgefill.view === 'result'")
    page.click("#tab-mask")
    laptop.stroke([(30, 30), (60, 35)])
    page.click("#inpaint")  # an answer came since: no note
    while len(held) < 3:
        page.wait_for_timeout(20)
    assert "cancelled" not in page.inner_text("#busy-text")
    held[2].continue_()
    laptop.wait_idle()
    page.unroute("**/api/inpaint")


def test_at_twelve_photos_open_says_so_before_the_file_picker(laptop: Page, tmp_path) -> None:
    page = laptop.page
    paths = []
    for i in range(12):
        paths.append(tmp_path / f"p{i}.png")
        Image.fromarray(make_photo()[: 20 + i, :30]).save(paths[-1])
    page.set_input_files("#photo-input", [str(p) for p in paths])
    page.wait_for_function("() => window.edgefill.docs.length === 12")
    pickers: list = []
    page.on("filechooser", lambda chooser: pickers.append(chooser))
    for open_it in (lambda: page.keyboard.press("o"), lambda: page.click("#open-photo")):
        page.evaluate("document.getElementById('toast').hidden = true")
        open_it()
        assert "At most 12 photos" in toast_text(page)
    assert pickers == [] and page.is_disabled("#add-photo")


# ----------------------------------------------------------------------------- small things


def contrast(fg: str, bg: str) -> float:
    def lum(css: str) -> float:
        r, g, b = (int(v) / 255 for v in css[css.index("(") + 1 : -1].split(",")[:3])
        lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    hi, lo = sorted((lum(fg), lum(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_small_things(laptop: Page, photo_path, tmp_path) -> None:
    page = laptop.page
    # A zero-byte file says it is empty; a good photo then clears the error.
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    page.set_input_files("#photo-input", str(empty))
    page.wait_for_selector("#toast.error")
    assert "empty.jpg is empty" in page.inner_text("#toast")
    laptop.open_photo(photo_path)
    assert page.is_hidden("#toast")
    page.set_input_files("#mask-input", str(empty))  # an empty mask file says so too
    assert "empty.jpg is empty (0 bytes)" in toast_text(page)
    page.evaluate("document.getElementById('toast').hidden = true")
    page.keyboard.press("?")  # the help lists Esc
    assert "Cancel a running job" in page.inner_text("#help")
    page.keyboard.press("Escape")

    # Shortcuts that cannot work on an empty mask say why.
    for key in ("Control+Enter", "2", "h"):
        page.evaluate("document.getElementById('toast').hidden = true")
        page.keyboard.press(key)
        assert "mask is empty" in toast_text(page), key
    page.keyboard.press("3")
    assert "No result yet" in toast_text(page)

    # The primary button's white text on blue reaches 4.5:1.
    laptop.stroke([(40, 75), (120, 78)])
    colours = page.evaluate(
        """() => { const s = getComputedStyle(document.getElementById('inpaint'));
                   return [s.color, s.backgroundColor]; }"""
    )
    assert contrast(*colours) >= 4.5, colours

    # Tabs move with the arrow keys.
    page.focus("#tab-mask")
    page.keyboard.press("ArrowRight")
    laptop.wait_idle()
    assert js(page, "view") == "edges"
    assert page.evaluate("document.activeElement.id") == "tab-edges"
    page.keyboard.press("ArrowLeft")
    assert js(page, "view") == "mask"
    assert page.evaluate("document.activeElement.id") == "tab-mask"
    assert page.get_attribute("#tab-mask", "tabindex") == "0"
    assert page.get_attribute("#tab-edges", "tabindex") == "-1"

    # The compare slider says what it shows.
    page.click("#inpaint")
    laptop.wait_idle()
    page.focus("#compare-handle")
    assert "before on the left 50 %" in page.get_attribute("#compare-handle", "aria-valuetext")
    page.keyboard.press("End")
    page.wait_for_function(
        "() => document.getElementById('compare-handle').getAttribute('aria-valuetext')"
        " === 'all before (the original)'",
        timeout=5000,
    )

    # The status line says how long the fill took, as waited, to a tenth of a second.
    assert re.search(r"last fill \d+\.\d s$", page.inner_text("#status-line"))

    # Download buttons are named for what they download.
    for name in ("Download result as PNG", "Download mask as PNG"):
        assert page.get_by_role("button", name=name).count() == 1


def test_a_photos_transparent_area_is_shown_over_a_checkerboard(laptop: Page, tmp_path) -> None:
    """Not black: black read as paint to cover, though the result keeps those pixels
    transparent (the API keeps a photo's alpha when a mask is sent)."""
    page = laptop.page
    rgba = np.dstack([make_photo(), np.full((H, W), 255, np.uint8)])
    rgba[:, : W // 2, 3] = 0  # the left half transparent
    Image.fromarray(rgba).save(tmp_path / "cutout.png")
    laptop.open_photo(tmp_path / "cutout.png")
    page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")

    def shown(x: float, y: float) -> list[int]:
        cx, cy = laptop.client(x, y)
        return page.evaluate(
            """([cx, cy]) => { const v = document.getElementById('view');
                 const r = v.getBoundingClientRect(), k = v.width / r.width;
                 return Array.from(v.getContext('2d').getImageData(
                   Math.floor((cx - r.left) * k), Math.floor((cy - r.top) * k), 1, 1).data); }""",
            [cx, cy],
        )

    zoom = laptop.client(1, 0)[0] - laptop.client(0, 0)[0]  # client px per image px
    seen = {tuple(shown(5 + i * 8 / zoom, H / 2)[:3]) for i in range(4)}  # squares of 8 px
    assert len(seen) == 2 and all(min(c) > 80 for c in seen), seen
    opaque = np.array(shown(W * 3 / 4, H / 2)[:3]) - make_photo()[H // 2, W * 3 // 4]
    assert np.abs(opaque).max() < 16, opaque  # the photo itself (resampled to the screen)
