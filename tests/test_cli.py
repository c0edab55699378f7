"""The edgefill command: inpaint (file and folder), edges, masks, --help, user errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import box_hole, photo_array
from PIL import Image

from edgefill.cli import _speed_options, build_parser, main
from edgefill.edges import canny_edges, to_gray
from edgefill.errors import install_hint
from edgefill.masks import grow_hole, hole_ratio, load_mask

COMMANDS = ["inpaint", "edges", "masks", "train", "export", "average", "attach-drawn"]
ENTRY = Path(sys.executable).parent / "edgefill"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_user_error(rc: int, err: str, *needles: str) -> None:
    """Exit 2 and exactly one line on stderr, no traceback."""
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("edgefill: error: ")
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


# ----------------------------------------------------------------------------- help


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for cmd in COMMANDS:
        assert cmd in out


def _subcommands() -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sorted(sub.choices)


@pytest.mark.parametrize("cmd", _subcommands())
def test_help_of_each_command(capsys: pytest.CaptureFixture[str], cmd: str) -> None:
    with pytest.raises(SystemExit) as exc:
        main([cmd, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: edgefill {cmd}")


def test_required_commands_exist() -> None:
    assert set(COMMANDS) <= set(_subcommands())


def test_inpaint_help_documents_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["inpaint", "--help"])
    out = capsys.readouterr().out
    for opt in (
        "--mask",
        "--output",
        "--edges",
        "--edges-out",
        "--weights",
        "--device",
        "--skip-existing",
        "--resize-mask",
        "--mask-threshold",
        "--max-pixels",
    ):
        assert opt in out


@pytest.mark.skipif(not ENTRY.exists(), reason="edgefill entry point not installed in this venv")
def test_entry_point_help_is_lazy() -> None:
    """`edgefill --help` works from the installed script and never imports torch."""
    res = subprocess.run(
        [str(ENTRY), "inpaint", "--help"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0 and "usage: edgefill inpaint" in res.stdout
    probe = (
        "import sys; from edgefill.cli import build_parser; build_parser().format_help(); "
        "heavy = [m for m in ('torch', 'skimage', 'cv2', 'numpy') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2


# ----------------------------------------------------------------------------- inpaint: one photo


def test_inpaint_single_photo(
    capsys: pytest.CaptureFixture[str], tiny_release: Path, photo_files: tuple[Path, Path]
) -> None:
    photo, mask = photo_files
    out = photo.parent / "result" / "out.png"  # a folder that does not exist yet
    edges_out = photo.parent / "edges.png"
    rc, stdout, _ = run(
        capsys, "inpaint", photo, "--mask", mask, "-o", out, "--edges-out", edges_out,
        "--weights", tiny_release,
    )  # fmt: skip
    assert rc == 0 and str(out) in stdout
    result = np.asarray(Image.open(out))
    src = np.asarray(Image.open(photo))
    hole = load_mask(mask)
    assert result.shape == src.shape
    np.testing.assert_array_equal(result[~hole], src[~hole])
    assert not np.array_equal(result[hole], src[hole])
    edges = np.asarray(Image.open(edges_out))
    assert edges.shape == hole.shape and edges.dtype == np.uint8


def test_inpaint_warns_of_a_mask_that_looks_inverted(
    capsys: pytest.CaptureFixture[str], tiny_release: Path, photo_files: tuple[Path, Path]
) -> None:
    photo, mask = photo_files
    w = ["--weights", tiny_release]
    rc, _, err = run(capsys, "inpaint", photo, "--mask", mask, "-o", photo.parent / "a.png", *w)
    assert rc == 0 and "warning" not in err
    inverted = 255 - np.asarray(Image.open(mask).convert("L"))  # white marks what to keep
    Image.fromarray(inverted).save(photo.parent / "keep.png")
    rc, _, err = run(capsys, "inpaint", photo, "--mask", photo.parent / "keep.png",
                     "-o", photo.parent / "b.png", *w)  # fmt: skip
    assert rc == 0 and "of the photo" in err and "white marks what to keep" in err


def test_grow_mask_widens_the_hole_for_one_photo_a_folder_and_restore(
    capsys: pytest.CaptureFixture[str], tiny_release: Path, photo_files: tuple[Path, Path]
) -> None:
    """A mask that stops at an object's edge: --grow-mask fills a ring around it too, and
    nothing beyond the ring changes."""
    photo, mask = photo_files
    hole = load_mask(mask)
    grown = grow_hole(hole, 3)
    ring = grown & ~hole
    src = np.asarray(Image.open(photo))
    w = ["--weights", tiny_release, "--grow-mask", "3"]
    (photo.parent / "photos").mkdir()
    Image.open(photo).save(photo.parent / "photos" / "p.png")
    (photo.parent / "masks").mkdir()
    Image.open(mask).save(photo.parent / "masks" / "p.png")
    runs = {
        "one.png": ["inpaint", photo, "--mask", mask, "-o", photo.parent / "one.png"],
        "out/p.png": ["inpaint", photo.parent / "photos", "--mask", photo.parent / "masks",
                      "-o", photo.parent / "out"],
        "restored.png": ["restore", photo, "--mask", mask, "-o", photo.parent / "restored.png",
                         "--no-mask-out"],
    }  # fmt: skip
    for name, argv in runs.items():
        rc, _, err = run(capsys, *argv, *w)
        assert rc == 0, err
        result = np.asarray(Image.open(photo.parent / name))
        np.testing.assert_array_equal(result[~grown], src[~grown], err_msg=name)
        assert (result[ring] != src[ring]).any(axis=-1).mean() > 0.5, f"{name}: ring not filled"
    rc, _, err = run(capsys, "inpaint", photo, "--mask", mask, "--grow-mask", "-2", *w[:2])
    assert_user_error(rc, err, "--grow-mask must be a whole number of pixels >= 0, got -2")


def test_inpaint_default_output_name(
    capsys: pytest.CaptureFixture[str], tiny_release: Path, photo_files: tuple[Path, Path]
) -> None:
    photo, mask = photo_files
    rc, _, _ = run(capsys, "inpaint", photo, "--mask", mask, "--weights", tiny_release)
    assert rc == 0
    assert (photo.parent / "photo_inpainted.png").is_file()


def test_inpaint_with_drawn_edges(
    capsys: pytest.CaptureFixture[str], tiny_release: Path, photo_files: tuple[Path, Path]
) -> None:
    photo, mask = photo_files
    drawn = np.zeros((40, 52), np.uint8)
    drawn[20, :] = 255
    Image.fromarray(drawn).save(photo.parent / "guide.png")
    w = ["--weights", tiny_release]
    run(capsys, "inpaint", photo, "--mask", mask, "-o", photo.parent / "a.png", *w)
    rc, _, _ = run(
        capsys, "inpaint", photo, "--mask", mask, "-o", photo.parent / "b.png",
        "--edges", photo.parent / "guide.png", *w,
    )  # fmt: skip
    assert rc == 0
    a = np.asarray(Image.open(photo.parent / "a.png"))
    b = np.asarray(Image.open(photo.parent / "b.png"))
    assert not np.array_equal(a, b)
    assert "warning" not in capsys.readouterr().err
    # The same line drawn black on white: every other pixel of the hole reads as an edge.
    Image.fromarray(255 - drawn).save(photo.parent / "inverted.png")
    rc, _, err = run(
        capsys, "inpaint", photo, "--mask", mask, "-o", photo.parent / "c.png",
        "--edges", photo.parent / "inverted.png", *w,
    )  # fmt: skip
    assert rc == 0 and "of the hole is marked as edge" in err and "black on white" in err


def test_inpaint_rgba_without_mask(
    capsys: pytest.CaptureFixture[str], tiny_release: Path, tmp_path: Path
) -> None:
    rgb = photo_array(24, 32)
    alpha = np.where(box_hole(24, 32), 0, 255).astype(np.uint8)
    Image.fromarray(np.dstack([rgb, alpha])).save(tmp_path / "p.png")
    rc, _, _ = run(capsys, "inpaint", tmp_path / "p.png", "--weights", tiny_release)
    assert rc == 0
    out = Image.open(tmp_path / "p_inpainted.png")
    assert out.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(out)[alpha > 0], rgb[alpha > 0])


def test_inpaint_resize_mask(
    capsys: pytest.CaptureFixture[str], tiny_release: Path, photo_files: tuple[Path, Path]
) -> None:
    photo, _ = photo_files
    small = photo.parent / "small.png"
    Image.fromarray(box_hole(20, 26).astype(np.uint8) * 255).save(small)
    w = ["--weights", tiny_release]
    rc, _, err = run(capsys, "inpaint", photo, "--mask", small, *w)
    assert_user_error(rc, err, "26x20", "52x40", "--resize-mask")
    rc, _, err = run(capsys, "inpaint", photo, "--mask", small, "--resize-mask", *w)
    assert rc == 0, err


@pytest.mark.parametrize(
    "case",
    ["missing-photo", "missing-mask", "missing-weights", "corrupt-photo", "bad-suffix",
     "output-under-file", "colour-mask", "no-mask", "bomb"],
)  # fmt: skip
def test_inpaint_user_errors(
    capsys: pytest.CaptureFixture[str],
    tiny_release: Path,
    photo_files: tuple[Path, Path],
    case: str,
) -> None:
    photo, mask = photo_files
    d = photo.parent
    (d / "file").write_text("x")
    (d / "corrupt.png").write_text("this is not a png")
    Image.new("RGB", (52, 40), (255, 0, 0)).save(d / "red.png")
    argv = {
        "missing-photo": ([d / "nope.jpg", "--mask", mask], "nope.jpg"),
        "missing-mask": ([photo, "--mask", d / "nomask.png"], "nomask.png"),
        "missing-weights": ([photo, "--mask", mask, "--weights", d / "w"], "weights"),
        "corrupt-photo": ([d / "corrupt.png", "--mask", mask], "corrupt.png"),
        "bad-suffix": ([photo, "--mask", mask, "-o", d / "out.gif"], "out.gif"),
        "output-under-file": ([photo, "--mask", mask, "-o", d / "file" / "o.png"], "o.png"),
        "colour-mask": ([photo, "--mask", d / "red.png"], "colour"),
        "no-mask": ([photo], "mask"),
        "bomb": ([photo, "--mask", mask, "--max-pixels", "1000"], "limit"),
    }[case]
    args, needle = argv
    if case != "missing-weights":
        args = [*args, "--weights", tiny_release]
    rc, _, err = run(capsys, "inpaint", *args)
    assert_user_error(rc, err, needle)


# ----------------------------------------------------------------------------- inpaint: a folder


def _batch(tmp_path: Path) -> tuple[Path, Path]:
    photos, masks = tmp_path / "photos", tmp_path / "masks"
    photos.mkdir()
    masks.mkdir()
    for i, name in enumerate(["a.png", "b.jpg", "c.png", "d.png"]):
        Image.fromarray(photo_array(32, 40, seed=i)).save(photos / name)
    (photos / "c.png").write_bytes((photos / "c.png").read_bytes()[:60])  # truncated
    (photos / "notes.txt").write_text("not a photo, ignored")
    for name in ["a.png", "b.png", "c.png"]:  # d has no mask
        Image.fromarray(box_hole(32, 40).astype(np.uint8) * 255).save(masks / name)
    return photos, masks


def test_inpaint_folder_with_a_corrupt_file(
    capsys: pytest.CaptureFixture[str], tiny_release: Path, tmp_path: Path
) -> None:
    photos, masks = _batch(tmp_path)
    out = tmp_path / "out"
    rc, stdout, err = run(
        capsys, "inpaint", photos, "--mask", masks, "-o", out, "--weights", tiny_release
    )
    assert rc == 1  # something failed, but the rest was done
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "failures.csv"]
    failed = (out / "failures.csv").read_text().splitlines()
    assert failed[0] == "photo,mask,output,reason" and len(failed) == 3
    assert "c.png" in failed[1] + failed[2] and "no mask" in failed[1] + failed[2]
    for name in ("a", "b"):
        result = np.asarray(Image.open(out / f"{name}.png"))
        src = np.asarray(Image.open(next(photos.glob(f"{name}.*"))))
        hole = box_hole(32, 40)
        np.testing.assert_array_equal(result[~hole], src[~hole])
    assert "c.png" in err and "d.png" in err and "no mask" in err
    assert "Traceback" not in err
    assert "wrote 2 of 4" in stdout


def test_inpaint_folder_skip_existing(
    capsys: pytest.CaptureFixture[str], tiny_release: Path, tmp_path: Path
) -> None:
    photos, masks = _batch(tmp_path)
    for name in ("c.png", "d.png"):
        (photos / name).unlink()
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"already done")
    argv = ["inpaint", photos, "--mask", masks, "-o", out, "--weights", tiny_release]
    rc, _, err = run(capsys, *argv, "--skip-existing")
    assert rc == 0, err
    assert (out / "a.png").read_bytes() == b"already done"  # skipped
    assert Image.open(out / "b.png").size == (40, 32)
    b_before = (out / "b.png").stat().st_mtime_ns
    rc, _, err = run(capsys, *argv)  # neither flag: refused, nothing is replaced
    assert_user_error(rc, err, "--overwrite")
    assert (out / "a.png").read_bytes() == b"already done"
    rc, _, _ = run(capsys, *argv, "--overwrite")  # --overwrite redoes everything
    assert rc == 0
    assert Image.open(out / "a.png").size == (40, 32)
    assert (out / "b.png").stat().st_mtime_ns >= b_before


def test_inpaint_folder_needs_masks(
    capsys: pytest.CaptureFixture[str], tiny_release: Path, tmp_path: Path
) -> None:
    photos, masks = _batch(tmp_path)
    rc, _, err = run(capsys, "inpaint", photos, "--weights", tiny_release)
    assert_user_error(rc, err, "--mask")  # (one mask file for all: test_batch.py)
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, _, err = run(capsys, "inpaint", empty, "--mask", masks, "--weights", tiny_release)
    assert_user_error(rc, err, "no photos")


# ----------------------------------------------------------------------------- edges


def test_edges_command(
    capsys: pytest.CaptureFixture[str], tiny_release: Path, photo_files: tuple[Path, Path]
) -> None:
    photo, mask = photo_files
    out = photo.parent / "e" / "edges.png"
    rc, _, _ = run(capsys, "edges", photo, "--mask", mask, "-o", out, "--weights", tiny_release)
    assert rc == 0
    edges = np.asarray(Image.open(out))
    assert edges.shape == (40, 52) and edges.dtype == np.uint8
    hole = load_mask(mask)
    known = canny_edges(to_gray(np.asarray(Image.open(photo))), hole, 2.0)
    np.testing.assert_array_equal(edges[~hole], (known[~hole] * 255).astype(np.uint8))
    rc, _, err = run(capsys, "edges", photo, "--mask", photo.parent / "nope.png", "-o", out,
                     "--overwrite", "--weights", tiny_release)  # fmt: skip
    assert_user_error(rc, err, "nope.png")


# ----------------------------------------------------------------------------- masks


def test_masks_command_is_reproducible(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    def make(folder: str, seed: int) -> dict[str, bytes]:
        rc, stdout, _ = run(
            capsys, "masks", "--kind", "irregular", "--count", "3", "--width", "48",
            "--height", "32", "--bucket", "20-30", "--seed", seed, "-o", tmp_path / folder,
        )  # fmt: skip
        assert rc == 0 and "wrote 3" in stdout
        return {p.name: p.read_bytes() for p in sorted((tmp_path / folder).iterdir())}

    a, b, c = make("a", 7), make("b", 7), make("c", 8)
    assert len(a) == 3 and a == b
    assert a.keys() == c.keys() and a != c
    for name in a:
        m = load_mask(tmp_path / "a" / name)
        assert m.shape == (32, 48) and 0.2 <= hole_ratio(m) < 0.3


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--kind", "blob"], "unknown mask kind"),
        (["--bucket", "70-20"], "bucket"),
        (["--kind", "scratch", "--bucket", "10-20"], "irregular and box"),
        (["--width", "0"], "positive"),
    ],
)
def test_masks_command_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], needle: str
) -> None:
    rc, _, err = run(capsys, "masks", *args, "--count", "1", "-o", tmp_path / "m")
    assert_user_error(rc, err, needle)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_output_in_read_only_folder(
    capsys: pytest.CaptureFixture[str], tiny_release: Path, photo_files: tuple[Path, Path]
) -> None:
    photo, mask = photo_files
    ro = photo.parent / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        rc, _, err = run(capsys, "inpaint", photo, "--mask", mask, "-o", ro / "o.png",
                         "--weights", tiny_release)  # fmt: skip
        assert_user_error(rc, err, "o.png")
    finally:
        ro.chmod(0o755)


def test_inpaint_folder_guards(
    capsys: pytest.CaptureFixture[str], tiny_release: Path, tmp_path: Path
) -> None:
    photos, masks = _batch(tmp_path)
    (photos / "c.png").unlink()
    w = ["--weights", tiny_release]
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    rc, _, err = run(capsys, "inpaint", photos, "--mask", masks, "-o", photos, *w)
    assert_user_error(rc, err, "photo folder")
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before  # originals untouched
    rc, _, err = run(capsys, "inpaint", photos, "--mask", masks, "--edges-out", tmp_path / "e", *w)
    assert_user_error(rc, err, "single photo")
    # a.png and a.jpg would both become out/a.png: the second is reported, not silently lost.
    Image.fromarray(photo_array(32, 40, seed=9)).save(photos / "a.jpg")
    rc, _, err = run(capsys, "inpaint", photos, "--mask", masks, "-o", tmp_path / "out", *w)
    assert rc == 1
    assert "a.png" in err and "also writes" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "a.png",
        "b.png",
        "failures.csv",
    ]


def test_bad_output_suffix_fails_before_the_model_runs(
    capsys: pytest.CaptureFixture[str],
    tiny_release: Path,
    photo_files: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from edgefill.pipeline import Inpainter

    def boom(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the model ran before the output name was checked")

    monkeypatch.setattr(Inpainter, "__call__", boom)
    monkeypatch.setattr(Inpainter, "edge_map", boom)
    photo, mask = photo_files
    w = ["--weights", tiny_release]
    rc, _, err = run(capsys, "inpaint", photo, "--mask", mask, "-o", photo.parent / "o.gif", *w)
    assert_user_error(rc, err, "o.gif")
    rc, _, err = run(capsys, "inpaint", photo, "--mask", mask, "--edges-out",
                     photo.parent / "e.xyz", *w)  # fmt: skip
    assert_user_error(rc, err, "e.xyz")
    rc, _, err = run(capsys, "edges", photo, "--mask", mask, "-o", photo.parent / "e", *w)
    assert_user_error(rc, err, "unsupported output format")


# ----------------------------------------------------------------------------- optional extras


@pytest.mark.parametrize("module", ["fastapi", "uvicorn", "multipart"])
def test_serve_without_the_web_extra_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, module: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    if module == "multipart":
        monkeypatch.setitem(sys.modules, "python_multipart", None)
    rc, _, err = run(capsys, "serve", "--port", "7861")
    assert_user_error(rc, err, "edgefill serve", install_hint("web"))


def test_evaluate_without_matplotlib_is_one_line_before_any_work(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    rc, _, err = run(capsys, "evaluate", "--images", tmp_path / "none", "-o", tmp_path / "r")
    assert_user_error(rc, err, "matplotlib", install_hint("eval"))
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("module", ["onnx", "onnxruntime"])
def test_onnx_without_the_onnx_extra_is_one_line(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tiny_release: Path,
    photo_files: tuple[Path, Path],
    tmp_path: Path,
    module: str,
) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    photo, mask = photo_files
    args = ["inpaint", photo, "--mask", mask, "-o", tmp_path / "o.png", "--weights", tiny_release]
    rc, _, err = run(capsys, *args, "--backend", "onnx")
    assert_user_error(rc, err, repr(module), install_hint("onnx"))
    if module == "onnx":
        rc, _, err = run(capsys, "export-onnx", tiny_release, "-o", tmp_path / "x")
        assert_user_error(rc, err, "ONNX export", install_hint("onnx"))


def test_install_hints_name_the_extras_packages_not_a_package_called_edgefill(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """edgefill is on no package index: "pip install 'edgefill[onnx]'" would look for another
    project of that name. The hint installs the extra's own packages, as pyproject pins them."""
    import importlib.metadata

    web, onnx = install_hint("web"), install_hint("onnx")
    assert web.startswith("pip install ") and "'fastapi>=" in web and "uvicorn" in web
    assert "onnxruntime>=" in onnx and "edgefill" not in web + onnx
    assert "'ray[data]" in install_hint("cluster")  # quoted for the shell
    monkeypatch.setattr(importlib.metadata, "requires", lambda _: [])  # older metadata
    assert install_hint("heif") == "pip install -e '.[heif]' in the edgefill checkout"


def test_require_extra_accepts_either_module_name(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgefill.errors import EdgefillError, require_extra

    monkeypatch.setitem(sys.modules, "python_multipart", None)
    require_extra("web", "x", "python_multipart|json")  # the second name is there
    with pytest.raises(
        EdgefillError, match=r"x needs .*'python_multipart'.*: pip install .*fastapi"
    ):
        require_extra("web", "x", "python_multipart")


# ----------------------------------------------------------------------------- one definition


def test_option_defaults_are_the_library_defaults() -> None:
    """The CLI offers exactly the choices and defaults the library defines (edgefill.config)."""
    import inspect

    from edgefill import config
    from edgefill.pipeline import Inpainter
    from edgefill.restore import restore
    from edgefill.server import create_app

    parser = build_parser()
    a = parser.parse_args(["inpaint", "p.png"])
    assert (a.hd_strategy, a.hd_margin, a.working_size, a.max_pixels) == (
        config.HD_STRATEGIES[0],
        config.DEFAULT_HD_MARGIN,
        config.DEFAULT_WORKING_SIZE,
        config.DEFAULT_MAX_PIXELS,
    )
    s = parser.parse_args(["serve"])
    assert s.max_pixels == config.SERVER_MAX_PIXELS
    assert int(s.max_upload_mb * 2**20) == config.SERVER_MAX_UPLOAD_BYTES
    app_defaults = inspect.signature(create_app).parameters
    assert app_defaults["max_pixels"].default == config.SERVER_MAX_PIXELS
    assert app_defaults["max_upload_bytes"].default == config.SERVER_MAX_UPLOAD_BYTES
    assert inspect.signature(restore).parameters["max_pixels"].default == a.max_pixels
    flip = inspect.signature(Inpainter).parameters["flip_average"].default
    assert a.flip_average == flip == config.FLIP_AVERAGES[0]
    chosen = parser.parse_args(["inpaint", "p.png", "--flip-average", "none"])
    assert _speed_options(chosen)["flip_average"] == "none"  # reaches Inpainter.from_pretrained
    d = parser.parse_args(["restore", "p.png"])
    assert d.sensitivity == config.DEFAULT_SENSITIVITY
    for cmd, dest, choices in (
        ("inpaint", "hd_strategy", config.HD_STRATEGIES),
        ("inpaint", "flip_average", config.FLIP_AVERAGES),
        ("evaluate", "flip_average", config.FLIP_AVERAGES),
        ("serve", "flip_average", config.FLIP_AVERAGES),
        ("inpaint", "backend", config.BACKENDS),
        ("inpaint", "precision", config.PRECISIONS),
        ("restore", "kind", config.DAMAGE_KINDS),
        ("restore", "method", config.DETECT_METHODS),
        ("train", "stage", config.STAGES),
    ):
        sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
        action = next(x for x in sub.choices[cmd]._actions if x.dest == dest)
        assert tuple(action.choices) == choices, (cmd, dest)


# ----------------------------------------------------------------------------- average


def test_average_writes_a_release_that_loads(
    capsys: pytest.CaptureFixture[str], tiny_release: Path, tmp_path: Path
) -> None:
    from edgefill.pipeline import Inpainter

    out = tmp_path / "mix"
    rc, stdout, _ = run(capsys, "average", tiny_release, tiny_release, "-o", out, "--ratios", "1,2")
    assert rc == 0 and str(out) in stdout
    doc = json.loads((out / "config.json").read_text())
    assert doc["ratios"] == pytest.approx([1 / 3, 2 / 3])
    Inpainter.from_pretrained(out)  # loads as a release


def test_average_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], tiny_release: Path, tmp_path: Path
) -> None:
    rc, _, err = run(
        capsys, "average", tiny_release, tiny_release, "-o", tmp_path / "o", "--ratios", "a,b"
    )
    assert_user_error(rc, err, "--ratios must be comma-separated numbers")
    rc, _, err = run(capsys, "average", tiny_release, tiny_release, "-o", tiny_release)
    assert_user_error(rc, err, "would overwrite")
