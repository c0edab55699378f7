"""scripts/build_dataset.py on tiny synthetic images: filter, manifest, split, where it writes.

No apt, no network, no package photos: every build here runs with ``--packages none``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from conftest import load_repo_script
from PIL import Image, ImageDraw

from edgefill.data import is_validation, list_images, split

REPO = Path(__file__).resolve().parents[1]
bd = load_repo_script("scripts/build_dataset.py")


def natural_like(path: Path, seed: int, size: tuple[int, int] = (192, 160)) -> Path:
    """Smooth shading + blobs + sensor-like noise: what the filter must keep."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(60, 190, size=3)
    img = base + 40 * np.sin(x / rng.uniform(15, 40))[..., None] * rng.uniform(0.3, 1, 3)
    img = img + 30 * np.cos(y / rng.uniform(10, 30))[..., None] * rng.uniform(0.3, 1, 3)
    for _ in range(6):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(8, 40)
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))
        img = img + blob[..., None] * rng.uniform(-80, 80, size=3)
    img = img + rng.normal(0, 6, size=img.shape)
    arr = np.clip(img, 0, 255).astype(np.uint8)
    Image.fromarray(arr).save(path, quality=92)
    return path


def flat_illustration(path: Path, size: tuple[int, int] = (192, 160)) -> Path:
    """A logo / clip-art like picture: a white page with a few flat shapes in a few colours."""
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    draw.rectangle((20, 20, 90, 70), fill=(200, 30, 30))
    draw.ellipse((100, 40, 170, 130), fill=(20, 90, 200))
    draw.polygon([(30, 140), (80, 90), (120, 150)], fill=(30, 160, 60))
    draw.text((10, 2), "LOGO", fill="black")
    img.save(path)
    return path


def smooth_gradient(path: Path, size: tuple[int, int] = (192, 160)) -> Path:
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    arr = np.stack([x / w * 255, y / h * 255, (x + y) / (w + h) * 255], axis=-1)
    Image.fromarray(arr.astype(np.uint8)).save(path)
    return path


def test_filter_drops_flat_illustration_keeps_natural_like(tmp_path):
    photo = bd.photo_stats(natural_like(tmp_path / "photo.jpg", seed=1))
    assert (photo.width, photo.height) == (192, 160)
    assert not photo.gray
    assert bd.judge(photo) is None

    flat = bd.photo_stats(flat_illustration(tmp_path / "logo.png"))
    assert flat.flat > 0.5
    assert bd.judge(flat).startswith("flat graphic")


def test_filter_drops_gradients_and_tiny_images(tmp_path):
    grad = bd.photo_stats(smooth_gradient(tmp_path / "grad.png"))
    assert bd.judge(grad).startswith("smooth all over")

    tiny = bd.photo_stats(natural_like(tmp_path / "tiny.jpg", seed=2, size=(150, 100)))
    assert bd.judge(tiny).startswith("too small")
    assert bd.judge(tiny, min_side=64) is None


def test_exif_rotation_swaps_recorded_size(tmp_path):
    path = natural_like(tmp_path / "r.jpg", seed=3)
    img = Image.open(path)
    exif = img.getexif()
    exif[0x0112] = 6  # rotated 90 degrees clockwise
    img.save(path, exif=exif)
    stats = bd.photo_stats(path)
    assert (stats.width, stats.height) == (160, 192)


def _snapshot(root: Path) -> dict[str, bytes | str]:
    """Every file and link under root with its bytes (or link target)."""
    out: dict[str, bytes | str] = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[str(p)] = "-> " + str(p.readlink())
        elif p.is_file():
            out[str(p)] = p.read_bytes()
    return out


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def photo_folder(tmp_path):
    src = tmp_path / "my-photos"
    (src / "sub").mkdir(parents=True)
    names = [f"img{i:02d}.jpg" for i in range(10)]
    for i, name in enumerate(names):
        natural_like(src / name, seed=10 + i)
    natural_like(src / "sub" / "nested.jpg", seed=99)
    flat_illustration(src / "clipart.png")
    natural_like(src / "small.jpg", seed=7, size=(120, 90))
    (src / "notes.txt").write_text("not an image")
    return src


def test_build_writes_manifest_with_split_rule_and_nothing_else(tmp_path, photo_folder, capsys):
    out = tmp_path / "built" / "photos"
    before = _snapshot(tmp_path)
    rc = bd.main(
        [str(photo_folder), "--out", str(out), "--packages", "none", "--no-apt"]
        + ["--val-fraction", "0.5", "--licence", "CC0-1.0", "--author", "me"]
    )
    assert rc == 0
    after = _snapshot(tmp_path)

    # Nothing changed outside --out; the sources are untouched.
    assert {k: v for k, v in after.items() if not k.startswith(str(out))} == before

    rows = _read(out / "manifest.csv")
    assert list(rows[0]) == bd.FIELDS
    kept = {r["file"] for r in rows}
    expected = {f"my-photos/img{i:02d}.jpg" for i in range(10)} | {"my-photos/sub/nested.jpg"}
    assert kept == expected
    dropped = {r["file"]: r["reason"] for r in _read(out / "dropped.csv")}
    assert dropped["my-photos/clipart.png"].startswith("flat graphic")
    assert dropped["my-photos/small.jpg"].startswith("too small")

    for r in rows:
        link = out / r["file"]
        assert link.is_symlink() and link.resolve() == (photo_folder / r["file"][10:]).resolve()
        assert r["original"] == str(photo_folder / r["file"][10:])
        assert (r["source"], r["author"], r["licence"]) == ("my-photos", "me", "CC0-1.0")
        assert (r["width"], r["height"]) == ("192", "160")
        # The recorded rule: sha1 of the file name < val fraction.
        assert r["split"] == ("val" if is_validation(Path(r["file"]).name, 0.5) else "train")
    assert {r["split"] for r in rows} == {"train", "val"}

    # edgefill train splits the built folder exactly as the manifest says, and exactly as it
    # would split the original folder (file names are kept).
    train, val = split(list_images(out), 0.5)
    assert {f.relative_to(out).as_posix() for f in val} == {
        r["file"] for r in rows if r["split"] == "val"
    }
    _, val_src = split(list_images(photo_folder), 0.5)
    assert {p.name for p in val_src} - {"clipart.png", "small.jpg"} == {f.name for f in val}
    assert len(train) + len(val) == len(rows)

    summary = capsys.readouterr().out
    assert "my-photos" in summary and "total" in summary


def test_rebuild_replaces_previous_build_only(tmp_path, photo_folder):
    out = tmp_path / "photos"
    args = [str(photo_folder), "--out", str(out), "--packages", "none", "--no-apt"]
    assert bd.main(args) == 0
    (photo_folder / "img00.jpg").unlink()
    originals = _snapshot(photo_folder)
    # An interrupted build leaves links and no manifest; the marker still marks the folder ours.
    (out / "manifest.csv").unlink()
    (out / "my-photos" / "stale.jpg").symlink_to(photo_folder / "img01.jpg")
    assert bd.main(args) == 0
    kept = {r["file"] for r in _read(out / "manifest.csv")}
    assert "my-photos/img00.jpg" not in kept and len(kept) == 10
    assert not (out / "my-photos" / "img00.jpg").is_symlink()
    assert not (out / "my-photos" / "stale.jpg").is_symlink()
    assert _snapshot(photo_folder) == originals  # link targets are never touched


def test_refuses_unsafe_out(tmp_path, photo_folder, capsys):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    base = [str(photo_folder), "--packages", "none", "--no-apt", "--out"]
    assert bd.main(base + [str(foreign)]) == 2
    assert (foreign / "keep.txt").read_text() == "mine"
    assert bd.main(base + [str(photo_folder / "built")]) == 2
    in_repo = REPO / "build-dataset-test-out"
    assert bd.main(base + [str(in_repo)]) == 2
    assert not in_repo.exists()
    assert "repository" in capsys.readouterr().err


def test_package_source_records_licences_from_debian_copyright(tmp_path):
    backgrounds = tmp_path / "backgrounds"
    backgrounds.mkdir()
    natural_like(backgrounds / "hills_by_Someone.jpg", seed=5)
    natural_like(backgrounds / "analogpattern_by_Peter_Nerlich.jpg", seed=6)
    copyright_file = tmp_path / "copyright"
    copyright_file.write_text(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
        "Upstream-Name: lomiri-wallpapers\n\n"
        "Files: 16.04/hills_by_Someone.jpg\n"
        "Copyright: Some One, 2018\n"
        "License: CC-BY-4.0\n\n"
        "Files: 16.04/analogpattern_by_Peter_Nerlich.jpg\n"
        "Copyright: Peter Nerlich, 2018\n"
        "License: CC-BY-SA-4.0\n\n"
        "Files: 20.04/not_installed.jpg\n"
        "Copyright: Nobody\n"
        "License: CC0-1.0\n\n"
        "License: CC-BY-4.0\n"
        " Attribution 4.0 International\n"
    )
    cands = {c.name: c for c in bd.lomiri_candidates(backgrounds, copyright_file)}
    assert set(cands) == {
        "lomiri-hills_by_Someone.jpg",
        "lomiri-analogpattern_by_Peter_Nerlich.jpg",
    }
    hills = cands["lomiri-hills_by_Someone.jpg"]
    assert (hills.author, hills.licence, hills.link, hills.exclude) == (
        "Some One, 2018",
        "CC-BY-4.0",
        False,
        None,
    )
    assert cands["lomiri-analogpattern_by_Peter_Nerlich.jpg"].exclude.startswith("abstract")


def test_missing_package_without_apt_is_skipped(tmp_path, capsys):
    assert not bd.ensure_package("no-such-package", tmp_path / "absent", allow_apt=False)
    assert "apt-get install" in capsys.readouterr().out
