"""Conservator's rules in ``restore``: repair confident regions, report uncertain ones, never touch
protected pixels; the mask written next to the result; review sheets (PNG / HTML), also in
folder mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import edgefill.restore as restore_mod
from edgefill.batch import Job, plan_batch, run_batch
from edgefill.cli import main
from edgefill.detect import damage_map
from edgefill.errors import EdgefillError
from edgefill.restore import header_height, report_html, report_sheet, restore

H, W = 40, 52
SURE = (slice(5, 9), slice(4, 40))  # a confident scratch (probability 0.95)
UNSURE = (slice(25, 30), slice(30, 36))  # an uncertain speck (probability 0.55)


def fake_analyse(rgb, kind="auto", sensitivity=0.5, method="auto", confident_at=0.75, **kw):
    prob = np.zeros(rgb.shape[:2], np.float32)
    prob[SURE] = 0.95
    prob[UNSURE] = 0.55
    return damage_map(prob > 0, prob, confident_at)


@pytest.fixture
def fake_detector(monkeypatch):
    monkeypatch.setattr(restore_mod, "analyse_damage", fake_analyse)


def regions() -> tuple[np.ndarray, np.ndarray]:
    sure, unsure = np.zeros((H, W), bool), np.zeros((H, W), bool)
    sure[SURE], unsure[UNSURE] = True, True
    return sure, unsure


def test_restore_repairs_confident_regions_and_reports_uncertain(inpainter, photo, fake_detector):
    sure, unsure = regions()
    r = restore(photo, inpainter=inpainter)
    assert np.array_equal(r.mask, sure) and np.array_equal(r.uncertain, unsure)
    assert np.array_equal(r.image[unsure], photo[unsure])  # the doubt is left alone
    assert not np.array_equal(r.image[sure], photo[sure])
    s = r.summary()
    assert (s["confident_regions"], s["uncertain_regions"]) == (1, 1)
    everything = restore(photo, inpainter=inpainter, repair="all")
    assert np.array_equal(everything.mask, sure | unsure) and not everything.uncertain.any()
    # a lower bar makes the speck confident
    low = restore(photo, inpainter=inpainter, confident_at=0.5)
    assert np.array_equal(low.mask, sure | unsure)


def test_restore_leaves_a_confident_water_stain_alone(inpainter, photo, monkeypatch):
    def with_stain(rgb, *a, confident_at=0.75, **kw):
        prob = np.zeros(rgb.shape[:2], np.float32)
        prob[SURE] = prob[UNSURE] = 0.95  # both confident; the second found by the stain pass
        stained = np.zeros(rgb.shape[:2], bool)
        stained[UNSURE] = True
        return damage_map(prob > 0, prob, confident_at, stained)

    monkeypatch.setattr(restore_mod, "analyse_damage", with_stain)
    sure, stain = regions()
    r = restore(photo, inpainter=inpainter)
    assert np.array_equal(r.mask, sure) and np.array_equal(r.uncertain, stain)
    assert np.array_equal(r.image[stain], photo[stain])  # tinted, not lost: left alone
    assert "left alone (water stain)" in report_html(r)
    assert np.array_equal(restore(photo, inpainter=inpainter, repair="all").mask, sure | stain)


def test_restore_never_touches_protected_pixels(inpainter, photo, fake_detector):
    protect = np.zeros((H, W), np.uint8)
    protect[:, :20] = 255
    r = restore(photo, inpainter=inpainter, protect=protect)
    assert not r.mask[:, :20].any() and r.mask[SURE][:, 20:].all()
    assert np.array_equal(r.image[:, :20], photo[:, :20])
    with pytest.raises(EdgefillError, match="mask is 3x3 but the photo is"):
        restore(photo, inpainter=inpainter, protect=np.zeros((3, 3), np.uint8))


def test_a_protect_mask_of_a_turned_photos_stored_pixels_is_turned_too(
    inpainter, photo, fake_detector, tmp_path: Path
):
    exif = Image.Exif()
    exif[0x0112] = 8  # shown turned a quarter anticlockwise: stored W x H pixels, shown H x W
    Image.fromarray(np.rot90(photo, -1)).save(tmp_path / "p.png", exif=exif)
    protect = np.zeros((H, W), np.uint8)
    protect[:, :20] = 255
    r = restore(tmp_path / "p.png", inpainter=inpainter, protect=np.rot90(protect, -1))
    assert not r.mask[:, :20].any() and r.mask[SURE][:, 20:].all()


def test_restore_rejects_an_unknown_repair_mode(inpainter, photo):
    with pytest.raises(EdgefillError, match="repair must be one of confident, all"):
        restore(photo, inpainter=inpainter, repair="some")


def test_report_sheet_colours_repaired_and_uncertain_regions(photo):
    sure, unsure = regions()
    sheet = report_sheet(photo, photo, sure, unsure, gap=8)
    band = header_height(H, W)
    assert sheet.shape == (band + H, 3 * W + 16, 3)
    assert np.array_equal(sheet[band:, :W], photo) and np.array_equal(sheet[band:, -W:], photo)
    mid = sheet[band:, W + 8 : 2 * W + 8]
    assert (mid[sure] == (230, 30, 30)).all() and (mid[unsure] == (255, 200, 0)).all()
    big = np.zeros((900, 1500, 3), np.uint8)
    thin = np.zeros((900, 1500), bool)
    thin[450, :] = True  # a 1 px scratch on a large scan stays visible on the smaller sheet
    s = report_sheet(big, big, thin, None, max_side=600)
    assert s.shape[0] == 360 + header_height(360, 600)
    assert (s[:, 608:1208] == (230, 30, 30)).all(2).any()


def test_cli_restore_writes_mask_beside_and_reports(
    tiny_release, photo_files, tmp_path, capsys, fake_detector
):
    photo, _ = photo_files
    out = tmp_path / "res.png"
    base = ["restore", str(photo), "--weights", str(tiny_release)]
    assert main([*base, "-o", str(out), "--report", str(tmp_path / "sheet.png")]) == 0
    text = capsys.readouterr().out
    assert "1 uncertain region(s) left alone" in text
    used = np.asarray(Image.open(tmp_path / "res_mask.png")) > 0  # next to the result
    assert np.array_equal(used, regions()[0])
    assert Image.open(tmp_path / "sheet.png").size == (3 * W + 16, H + header_height(H, W))
    # HTML report with the region table; --no-mask-out writes no mask; --repair all
    out2 = tmp_path / "all.png"
    html = tmp_path / "r.html"
    rc = main([*base, "-o", str(out2), "--no-mask-out", "--repair", "all", "--report", str(html)])
    assert rc == 0
    assert not (tmp_path / "all_mask.png").exists()
    page = html.read_text()
    assert page.count("<tr><td>") == 2 and "0.55" in page and "<td>left alone</td>" not in page
    assert "data:image/jpeg;base64," in page


def test_cli_restore_protect(tiny_release, photo_files, tmp_path, fake_detector):
    photo, _ = photo_files
    protect = np.zeros((H, W), np.uint8)
    protect[:, :20] = 255
    Image.fromarray(protect).save(tmp_path / "keep.png")
    out = tmp_path / "res.png"
    argv = ["restore", str(photo), "-o", str(out), "--weights", str(tiny_release)]
    assert main([*argv, "--protect", str(tmp_path / "keep.png")]) == 0
    before, after = np.asarray(Image.open(photo)), np.asarray(Image.open(out))
    assert np.array_equal(after[:, :20], before[:, :20])
    assert not (np.asarray(Image.open(tmp_path / "res_mask.png"))[:, :20] > 0).any()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--confident-at", "1.5"], "--confident-at must be in [0, 1]"),
        (["--no-mask-out", "--mask-out", "m.png"], "--no-mask-out and --mask-out contradict"),
        (["--report", "sheet.gif"], "unsupported output format"),
        (["--protect", "missing.png"], "not found"),
    ],
)
def test_cli_restore_review_errors(extra, message, photo_files, tiny_release, tmp_path, capsys):
    extra = [str(tmp_path / a) if a.endswith((".png", ".gif")) else a for a in extra]
    argv = ["restore", str(photo_files[0]), "-o", str(tmp_path / "o.png")]
    assert main([*argv, "--weights", str(tiny_release), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_cli_restore_protect_is_for_one_photo(photo_files, tiny_release, tmp_path, capsys):
    folder = photo_files[0].parent
    argv = ["restore", str(folder), "-o", str(tmp_path / "out"), "--protect", str(photo_files[1])]
    assert main([*argv, "--weights", str(tiny_release)]) == 2
    assert "--protect applies to a single photo" in capsys.readouterr().err


def test_folder_restore_writes_masks_beside_and_report_sheets(
    tiny_release, make_photo, tmp_path, fake_detector
):
    src = tmp_path / "scans"
    src.mkdir()
    for i in range(2):
        Image.fromarray(make_photo(seed=i)).save(src / f"p{i}.png")
    out, rep = tmp_path / "out", tmp_path / "review"
    plan = plan_batch(src, None, out, "restore", report=str(rep), mask_beside=True)
    assert [Path(i.mask_out).parent.name for i in plan.items] == ["masks", "masks"]
    job = Job(task="restore", weights=str(tiny_release), refine=False)
    summary = run_batch(job, plan, "local", progress=False)
    assert summary.done == 2
    for i in range(2):
        assert np.array_equal(np.asarray(Image.open(out / "masks" / f"p{i}.png")) > 0, regions()[0])
        assert Image.open(rep / f"p{i}.jpg").size == (3 * W + 16, H + header_height(H, W))
    plain = plan_batch(src, None, tmp_path / "o2", "restore")
    assert all(i.mask_out is None and i.report is None for i in plain.items)
