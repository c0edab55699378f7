#!/usr/bin/env python3
"""Build edgefill's training folder from a folder of photos plus photos that packages ship.

    .venv/bin/python scripts/build_dataset.py ../shared/data/imagenet-samples

writes (default ``~/edgefill-data/photos``, always outside the repository)::

    photos/imagenet-samples/<same name>   symlinks to the folder given (never copies)
    photos/lomiri-wallpapers/lomiri-*.jpg Debian lomiri-wallpapers-16.04 (CC-BY / CC-BY-SA / CC0)
    photos/opencv-doc/opencv-*.jpg|png    Debian opencv-doc's classic test photos
    photos/skimage/skimage-*.png|jpg      photos bundled in scikit-image's wheel
    photos/manifest.csv                   file, source, original, author, licence, size, split
    photos/dropped.csv                    every candidate left out, with the reason

Only natural photographs are kept. Package photos come from hand-checked lists below (with
near-duplicate stereo/sequence pairs reduced to one photo); every candidate, including the
folders given, then passes an automatic check (see ``judge``): short side >= --min-side, no large
exactly-flat areas of a few colours (logos, diagrams, flat illustrations, screenshots), not
smooth all over (synthetic gradients, renders, heavy blur).

Split: ``edgefill.data.is_validation(file name, --val-fraction)``, the rule ``edgefill train``
applies itself. Photos from a folder keep their file names (in mirrored sub-folders), so the
split of ``edgefill train --data <this folder>`` equals that of ``--data <the original folder>``.

``edgefill train --data ~/edgefill-data/photos`` trains on the result (``list_images`` reads
sub-folders and ignores the CSV files).
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from edgefill.config import DataConfig
from edgefill.data import IMAGE_SUFFIXES, is_validation, list_images
from edgefill.errors import EdgefillError

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = "~/edgefill-data/photos"
MANIFEST = "manifest.csv"
DROPPED = "dropped.csv"
MARKER = ".edgefill-dataset"  # marks --out as built (and owned) by this script
FIELDS = ["file", "source", "original", "author", "licence", "width", "height", "split"]

# ---------------------------------------------------------------------------------------------
# Automatic filter (thresholds checked against the 1000 ImageNet samples and the ~130 package
# images, whose photo / non-photo status was checked by eye; see docs/data.md).

MIN_SIDE = 128  # shorter side below this: too small to crop training patches from
ANALYSIS_SIDE = 512  # statistics are computed on a nearest-neighbour copy at most this large
FLAT_ALWAYS = 0.8  # exactly-flat fraction above which an image is a graphic, whatever else
FLAT_WITH_FEW_COLOURS = 0.4  # ... above which it is a graphic when its detail has few colours
FEW_COLOURS = 0.05  # distinct colours per detailed (non-flat) pixel counted as "few"
SMOOTH_STEP = 6  # a neighbour difference up to this is "smooth"
SMOOTH_ALL_OVER = 0.98  # fraction of non-zero differences that are smooth: gradient / render


@dataclass(frozen=True)
class PhotoStats:
    width: int  # after EXIF orientation
    height: int
    gray: bool
    flat: float  # fraction of pixels equal to their right and lower neighbours in all channels
    colours: float  # distinct exact colours per non-flat pixel (colour images only)
    smooth: float  # fraction of non-zero neighbour differences <= SMOOTH_STEP


def photo_stats(path: Path) -> PhotoStats:
    """Size and the statistics ``judge`` reads; raises OSError/ValueError on unreadable files."""
    with Image.open(path) as im:
        width, height = im.size
        try:
            if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # rotated by 90 degrees
                width, height = height, width
        except Exception:  # a broken EXIF block does not make the photo unusable
            pass
        im.draft("RGB", (ANALYSIS_SIDE, ANALYSIS_SIDE))  # JPEG: decode at reduced scale
        small = im.convert("RGB")
    scale = ANALYSIS_SIDE / max(small.size)
    if scale < 1:  # nearest neighbour keeps pixel values (and noise) as they are
        size = (max(1, round(small.width * scale)), max(1, round(small.height * scale)))
        small = small.resize(size, Image.Resampling.NEAREST)
    a = np.asarray(small).astype(np.int16)
    gray = bool(
        np.abs(a[..., 0] - a[..., 1]).max() <= 6 and np.abs(a[..., 1] - a[..., 2]).max() <= 6
    )
    if min(a.shape[:2]) < 2:
        return PhotoStats(width, height, gray, 0.0, 1.0, 0.0)
    dx = np.abs(np.diff(a, axis=1)).max(axis=-1)[:-1]
    dy = np.abs(np.diff(a, axis=0)).max(axis=-1)[:, :-1]
    step = np.maximum(dx, dy)
    detail = step > 0
    flat = float(1.0 - detail.mean())
    nonzero = step[detail]
    smooth = float((nonzero <= SMOOTH_STEP).mean()) if nonzero.size else 1.0
    px = a[:-1, :-1][detail].astype(np.int64)
    codes = (px[:, 0] << 16) | (px[:, 1] << 8) | px[:, 2]
    colours = float(np.unique(codes).size / codes.size) if codes.size else 0.0
    return PhotoStats(width, height, gray, flat, colours, smooth)


def judge(stats: PhotoStats, min_side: int = MIN_SIDE) -> str | None:
    """Why an image is not a natural photograph worth training on, or None to keep it."""
    if min(stats.width, stats.height) < min_side:
        return f"too small ({stats.width}x{stats.height}, short side < {min_side})"
    if stats.flat >= FLAT_ALWAYS:
        return f"flat graphic ({stats.flat:.0%} of pixels in exactly flat areas)"
    if stats.flat >= FLAT_WITH_FEW_COLOURS and not stats.gray and stats.colours < FEW_COLOURS:
        return (
            f"flat graphic ({stats.flat:.0%} exactly flat, detail has few colours: "
            f"{stats.colours:.3f} per pixel)"
        )
    if stats.smooth >= SMOOTH_ALL_OVER:
        return (
            f"smooth all over ({stats.smooth:.1%} of steps <= {SMOOTH_STEP}: gradient/render/blur)"
        )
    return None


# ---------------------------------------------------------------------------------------------
# Sources


@dataclass
class Candidate:
    path: Path  # the original file
    source: str  # source name; also the sub-folder of --out
    name: str  # path inside the source sub-folder; its file name decides the split
    author: str
    licence: str
    link: bool  # symlink to the original (folders given) or write a copy (package files)
    exclude: str | None = None  # reason from an explicit list


# Folders with a known origin (matched by folder name); others get --author / --licence.
KNOWN_FOLDERS = {
    "imagenet-samples": (
        "ImageNet (ILSVRC-2012) sample images via github.com/EliSchwartz/imagenet-sample-images "
        "@ bc69043",
        "no licence file; ImageNet samples, research use only; never redistribute",
    ),
}
# Files in user folders known not to be photographs that the automatic check keeps.
EXCLUDE_NAMES = {
    "n06359193_web_site.JPEG": "screenshot of a web page",
}

LOMIRI_PKG = "lomiri-wallpapers-16.04"
LOMIRI_DIR = Path("/usr/share/backgrounds")
LOMIRI_COPYRIGHT = Path(f"/usr/share/doc/{LOMIRI_PKG}/copyright")
LOMIRI_EXCLUDE = {
    "analogpattern_by_Peter_Nerlich.jpg": "abstract art (colour wash over a plaster texture)",
    "umang_by_Abhishek_Mudgal.jpg": "abstract art (colour gradient)",
}

OPENCV_PKG = "opencv-doc"
OPENCV_DIR = Path("/usr/share/doc/opencv-doc/examples")
OPENCV_COPYRIGHT = Path(f"/usr/share/doc/{OPENCV_PKG}/copyright")
# Natural photographs among OpenCV's sample images (checked by eye). Left out: logos, diagrams,
# synthetic test patterns, text/document images, calibration chessboards (left01-14, right01-14),
# renders (Blender_Suzanne*), clip art (HappyFish, ml), a painting (starry_night), artificially
# degraded or manipulated copies (licenseplate_motion, text_*, ela_modified), and the second
# image of each stereo/sequence pair (aero3, aloeR, basketball2, graf3, leuvenB, right,
# rubberwhale2), which would otherwise leak across the split. Lena is not in Debian's package.
OPENCV_PHOTOS = [
    "data/aero1.jpg",
    "data/aloeL.jpg",
    "data/apple.jpg",
    "data/baboon.jpg",
    "data/basketball1.png",
    "data/board.jpg",
    "data/box_in_scene.png",
    "data/building.jpg",
    "data/butterfly.jpg",
    "data/chicky_512.png",
    "data/ela_original.jpg",
    "data/fruits.jpg",
    "data/graf1.png",
    "data/home.jpg",
    "data/left.jpg",
    "data/leuvenA.jpg",
    "data/messi5.jpg",
    "data/orange.jpg",
    "data/rubberwhale1.png",
    "data/smarties.png",
    "data/squirrel_cls.jpg",
    "data/stuff.jpg",
    "hfs/data/000.jpg",
    "hfs/data/001.jpg",
    "hfs/data/002.jpg",
    "alphamat/input_images/plant.jpg",
    "dnn_superres/butterfly.png",
    "reg/home.png",
]
OPENCV_AUTHOR = "OpenCV sample data (debian/copyright 'Files: *': Intel, Willow Garage, ...)"
OPENCV_LICENCE = (
    "Apache-2.0 AND BSD-3-Clause per Debian opencv-doc copyright; the original provenance of "
    "classic test images (e.g. USC-SIPI baboon, fruits) is not documented"
)

# scikit-image's bundled photographs: (file, author, licence as its docstring states it; the
# data/README.txt the wheel ships has no licence text, the loaders' docstrings in
# skimage/data/_fetchers.py do). Left out: microscopy/medical (cell, ihc, microaneurysms,
# retina), astronomy (hubble_deep_field, moon), text (text, page), a deliberately blurred photo
# (clock_motion), synthetic images (horse, logo, phantom, color, chessboard_*), the right view
# of the stereo pair (motorcycle_right), and astronaut (SKIMAGE_EXCLUDE), the README's bundled
# example, kept out of training so that the demo runs on a photo the model has not seen.
SKIMAGE_PHOTOS = [
    ("brick.png", "CC0Textures (Bricks25)", "CC0-1.0"),
    ("camera.png", "Lav Varshney", "CC0 by the photographer"),
    ("chelsea.png", "Stefan van der Walt", "CC0 by the photographer"),
    ("coffee.png", "Rachel Michetti (courtesy of Pikolo Espresso Bar)", "CC0 by the photographer"),
    ("coins.png", "Brooklyn Museum", "no known copyright restrictions"),
    ("grass.png", "linolafett (DeviantArt, Grass-01)", "CC0-1.0"),
    ("gravel.png", "CC0Textures (Gravel04)", "CC0-1.0"),
    (
        "motorcycle_left.png",
        "Middlebury 2014 stereo dataset (Scharstein et al.)",
        "not stated by scikit-image; Middlebury stereo data, research use",
    ),
    ("rocket.jpg", "SpaceX", "public domain (released by SpaceX)"),
]
SKIMAGE_EXCLUDE = {
    "astronaut.png": (
        "NASA",
        "public domain",
        "the README's bundled example (examples/astronaut.jpg), kept out of training",
    ),
}


def parse_debian_copyright(text: str) -> dict[str, tuple[str, str]]:
    """Machine-readable debian/copyright -> {file basename: (copyright holders, licence)}."""
    out: dict[str, tuple[str, str]] = {}
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
        if "files" not in fields or "license" not in fields:
            continue
        holders = " ".join(fields.get("copyright", "").split())
        licence = fields["license"].splitlines()[0].strip()
        for pattern in fields["files"].split():
            out[Path(pattern).name] = (holders, licence)
    return out


def folder_candidates(folder: Path, source: str, author: str, licence: str) -> list[Candidate]:
    files = list_images(folder)
    return [
        Candidate(
            path=f,
            source=source,
            name=f.relative_to(folder).as_posix(),
            author=author,
            licence=licence,
            link=True,
            exclude=EXCLUDE_NAMES.get(f.name),
        )
        for f in files
    ]


def lomiri_candidates(
    folder: Path = LOMIRI_DIR, copyright_file: Path = LOMIRI_COPYRIGHT
) -> list[Candidate]:
    """Every image the package's copyright file lists that is installed in ``folder``."""
    records = parse_debian_copyright(copyright_file.read_text(encoding="utf-8"))
    out = []
    for name, (holders, licence) in sorted(records.items()):
        path = folder / name
        if Path(name).suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        out.append(
            Candidate(
                path=path,
                source="lomiri-wallpapers",
                name=f"lomiri-{name}",
                author=holders,
                licence=licence,
                link=False,
                exclude=LOMIRI_EXCLUDE.get(name),
            )
        )
    return out


def opencv_candidates(folder: Path = OPENCV_DIR) -> list[Candidate]:
    out = []
    for rel in OPENCV_PHOTOS:
        path = folder / rel
        if not path.is_file():
            print(f"  opencv-doc: {path} not found, skipped")
            continue
        parts = Path(rel).parts
        # data/x.jpg -> opencv-x.jpg; hfs/data/000.jpg -> opencv-hfs-000.jpg
        stem = path.name if parts[0] == "data" else f"{parts[0]}-{path.name}"
        out.append(
            Candidate(
                path=path,
                source="opencv-doc",
                name=f"opencv-{stem}",
                author=OPENCV_AUTHOR,
                licence=OPENCV_LICENCE,
                link=False,
            )
        )
    return out


def skimage_candidates() -> list[Candidate]:
    import skimage.data

    folder = Path(skimage.data.__file__).parent
    listed = [(name, author, licence, None) for name, author, licence in SKIMAGE_PHOTOS]
    listed += [(name, *record) for name, record in SKIMAGE_EXCLUDE.items()]
    out = []
    for name, author, licence, exclude in sorted(listed):
        path = folder / name
        if not path.is_file():
            print(f"  skimage: {name} not bundled in this scikit-image ({folder}), skipped")
            continue
        out.append(Candidate(path, "skimage", f"skimage-{name}", author, licence, False, exclude))
    return out


def ensure_package(package: str, marker: Path, allow_apt: bool) -> bool:
    """True when the Debian package is installed (installing it with apt-get if allowed)."""
    if marker.exists():
        return True
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", package]
    can_apt = shutil.which("apt-get") is not None and hasattr(os, "geteuid") and os.geteuid() == 0
    if not allow_apt or not can_apt:
        why = "--no-apt" if not allow_apt else "not root or no apt-get"
        print(f"  {package} is not installed ({why}): skipped; to add it run: sudo {' '.join(cmd)}")
        return False
    print(f"  installing {package}: {' '.join(cmd)}", flush=True)
    if subprocess.run(cmd, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["apt-get", "update"], stdout=subprocess.DEVNULL)
        subprocess.run(cmd, stdout=subprocess.DEVNULL)
    if not marker.exists():
        print(f"  {package}: apt-get failed, skipped")
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Output


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def prepare_out(out: Path, sources: list[Path]) -> None:
    """Refuse unsafe outputs; empty a folder that an earlier run of this script built."""
    if _inside(out, REPO) or _inside(REPO, out):
        raise EdgefillError(f"{out}: is inside the repository {REPO}; choose --out elsewhere")
    for src in sources:
        if _inside(out, src) or _inside(src, out):
            raise EdgefillError(f"{out}: overlaps the photo folder {src}; choose --out elsewhere")
    if not out.exists():
        return
    if not out.is_dir():
        raise EdgefillError(f"{out}: exists and is not a folder")
    if not (out / MARKER).exists():
        if any(out.iterdir()):
            raise EdgefillError(
                f"{out}: not empty and not built by this script (no {MARKER}); choose another --out"
            )
        return
    for child in out.iterdir():  # ours: links, copies and CSVs of the previous build
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)  # removes symlinks inside, never what they point to
        else:
            child.unlink()


def write_copy(src: Path, dst: Path, max_side: int) -> tuple[int, int]:
    """Copy a package photo (byte-exact when it is a JPEG within max_side), return its size."""
    with Image.open(src) as im:
        im = ImageOps.exif_transpose(im)
        w, h = im.size
        jpeg = src.suffix.lower() in (".jpg", ".jpeg")
        if jpeg and max(w, h) <= max_side and im.format == "JPEG":
            shutil.copyfile(src, dst)
            return w, h
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")  # flatten transparency on white rather than black
            im = Image.new("RGB", rgba.size, "white")
            im.paste(rgba, mask=rgba.getchannel("A"))
        else:
            im = im.convert("RGB")
        if max(w, h) > max_side:
            s = max_side / max(w, h)
            im = im.resize((round(w * s), round(h * s)), Image.Resampling.LANCZOS)
        tmp = dst.with_name(f".tmp-{dst.name}")
        if jpeg:
            im.save(tmp, format="JPEG", quality=95)
        else:
            im.save(tmp, format="PNG")
        os.replace(tmp, dst)
        return im.size


def build(
    folders: list[Path],
    out: Path,
    packages: list[str],
    allow_apt: bool,
    val_fraction: float,
    min_side: int = MIN_SIDE,
    max_side: int = 2048,
    author: str | None = None,
    licence: str | None = None,
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Build ``out``; return (manifest rows, dropped rows)."""
    out = out.expanduser().resolve()
    folders = [f.expanduser().resolve() for f in folders]
    for f in folders:
        if not f.is_dir():
            raise EdgefillError(f"{f}: not a folder of photos")
    prepare_out(out, folders)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("built by edgefill scripts/build_dataset.py; rebuilt from scratch\n")

    candidates: list[Candidate] = []
    used_sources: set[str] = set()
    for folder in folders:
        source = folder.name or "photos"
        while source in used_sources or source in ("lomiri-wallpapers", "opencv-doc", "skimage"):
            source += "-2"
        used_sources.add(source)
        known_author, known_licence = KNOWN_FOLDERS.get(folder.name, ("unknown", "unknown"))
        print(f"source {source}: {folder}")
        candidates += folder_candidates(
            folder, source, author or known_author, licence or known_licence
        )
    if "lomiri" in packages:
        print(f"source lomiri-wallpapers: Debian {LOMIRI_PKG}")
        if ensure_package(LOMIRI_PKG, LOMIRI_COPYRIGHT, allow_apt):
            candidates += lomiri_candidates()
    if "opencv" in packages:
        print(f"source opencv-doc: Debian {OPENCV_PKG}")
        if ensure_package(OPENCV_PKG, OPENCV_DIR, allow_apt):
            candidates += opencv_candidates()
    if "skimage" in packages:
        print("source skimage: photos bundled with scikit-image")
        candidates += skimage_candidates()

    names = Counter(Path(c.name).name for c in candidates)
    kept: list[dict[str, str]] = []
    dropped: list[dict[str, str]] = []
    for i, c in enumerate(candidates):
        if i % 100 == 0:
            print(f"  checking {i}/{len(candidates)}", flush=True)
        reason = c.exclude
        stats = None
        if reason is None:
            try:
                stats = photo_stats(c.path)
                reason = judge(stats, min_side)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
                reason = f"unreadable ({exc})"
        rel = f"{c.source}/{c.name}"
        if reason is not None:
            dropped.append(
                {"file": rel, "source": c.source, "original": str(c.path), "reason": reason}
            )
            continue
        assert stats is not None
        dst = out / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if c.link:
            os.symlink(c.path.resolve(), dst)
            width, height = stats.width, stats.height
        else:
            width, height = write_copy(c.path, dst, max_side)
        split = "val" if is_validation(dst, val_fraction) else "train"
        kept.append(
            {
                "file": rel,
                "source": c.source,
                "original": str(c.path),
                "author": c.author,
                "licence": c.licence,
                "width": str(width),
                "height": str(height),
                "split": split,
            }
        )

    repeated = sum(1 for r in kept if names[Path(r["file"]).name] > 1)
    if repeated:
        print(f"  note: {repeated} kept photos share their file name with another candidate")
        print("  (same-named photos always fall on the same side of the split)")
    _write_csv(out / DROPPED, ["file", "source", "original", "reason"], dropped)
    _write_csv(out / MANIFEST, FIELDS, kept)  # last: its presence marks a complete build
    return kept, dropped


def _write_csv(path: Path, fields: list[str], rows: list[dict[str, str]]) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def summary(kept: list[dict[str, str]], dropped: list[dict[str, str]]) -> str:
    sources = list(dict.fromkeys([r["source"] for r in kept] + [r["source"] for r in dropped]))
    lines = [f"{'source':<22} {'train':>6} {'val':>5} {'kept':>6} {'dropped':>8}"]
    for s in sources + ["total"]:
        k = [r for r in kept if s in (r["source"], "total")]
        d = [r for r in dropped if s in (r["source"], "total")]
        n_val = sum(r["split"] == "val" for r in k)
        lines.append(f"{s:<22} {len(k) - n_val:>6} {n_val:>5} {len(k):>6} {len(d):>8}")
    if dropped:
        lines.append("dropped:")
        lines += [f"  {r['file']}: {r['reason']}" for r in dropped]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Build edgefill's training folder (outside the repository) from photo "
        "folders plus photos from Debian packages and scikit-image; writes manifest.csv."
    )
    parser.add_argument("folders", nargs="*", type=Path, help="folders of photos (linked)")
    parser.add_argument("--out", type=Path, default=Path(DEFAULT_OUT), help=f"({DEFAULT_OUT})")
    parser.add_argument(
        "--no-apt", action="store_true", help="never run apt-get; skip missing packages"
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=DataConfig().val_fraction,
        help="validation share, by sha1 of the file name (default: data.val_fraction, %(default)s)",
    )
    parser.add_argument(
        "--packages",
        default="lomiri,opencv,skimage",
        help="package sources to add, comma-separated, or 'none' (default: %(default)s)",
    )
    parser.add_argument("--min-side", type=int, default=MIN_SIDE, help="(%(default)s px)")
    parser.add_argument(
        "--max-side",
        type=int,
        default=2048,
        help="package photos larger than this are downscaled when copied (%(default)s px)",
    )
    parser.add_argument("--author", help="author recorded for the folders' photos")
    parser.add_argument("--licence", help="licence recorded for the folders' photos")
    args = parser.parse_args(argv)

    packages = [p.strip() for p in args.packages.split(",") if p.strip() not in ("", "none")]
    unknown = set(packages) - {"lomiri", "opencv", "skimage"}
    try:
        if unknown:
            raise EdgefillError(f"--packages: unknown {sorted(unknown)}; use lomiri,opencv,skimage")
        if not 0.0 <= args.val_fraction < 1.0:
            raise EdgefillError(f"--val-fraction must be in [0, 1), got {args.val_fraction}")
        kept, dropped = build(
            args.folders,
            args.out,
            packages,
            allow_apt=not args.no_apt,
            val_fraction=args.val_fraction,
            min_side=args.min_side,
            max_side=args.max_side,
            author=args.author,
            licence=args.licence,
        )
    except EdgefillError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = args.out.expanduser().resolve()
    print(summary(kept, dropped))
    print(f"wrote {out} ({MANIFEST}: {len(kept)} photos, {DROPPED}: {len(dropped)})")
    print(f"train with: edgefill train --data {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
