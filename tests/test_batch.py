"""Batch jobs (edgefill.batch): folders and manifests, failures, resuming, fsspec paths, Ray.

The Ray tests start a local instance (ray.init(num_cpus=2), no network) and skip only when the
`cluster` extra is not installed.
"""

from __future__ import annotations

import csv
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import box_hole, photo_array
from PIL import Image

from edgefill.batch import Item, Job, plan_batch, process_item, run_batch
from edgefill.cli import main
from edgefill.errors import EdgefillError, install_hint

SIZE = (96, 128)  # h, w: big enough that a Ray run lasts long enough to kill a worker in it
N_PHOTOS = 20
NO_MASK, CORRUPT = "p02.png", "p01.png"
INVERTED = "p04.png"  # its mask marks what to keep: the hole is most of the photo


def make_archive(root: Path, n: int = N_PHOTOS) -> tuple[Path, Path]:
    """n photos with same-named masks; p02 has no mask, p01 is a truncated file, p04's mask
    is inverted."""
    photos, masks = root / "photos", root / "masks"
    photos.mkdir(parents=True)
    masks.mkdir()
    h, w = SIZE
    for i in range(n):
        name = f"p{i:02d}.png"
        Image.fromarray(photo_array(h, w, seed=i)).save(photos / name)
        if name != NO_MASK:
            hole = box_hole(h, w) != (name == INVERTED)
            Image.fromarray(hole.astype(np.uint8) * 255).save(masks / name)
    (photos / CORRUPT).write_bytes((photos / CORRUPT).read_bytes()[:80])
    return photos, masks


def pngs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def failure_rows(path: Path) -> dict[str, str]:
    with open(path, newline="") as fh:
        return {Path(r["photo"]).name: r["reason"] for r in csv.DictReader(fh)}


def job(release: Path, **kw: object) -> Job:
    return Job(weights=str(release), threads=1, **kw)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- local engine


def test_folder_run_records_failures_and_matches_single_photo_mode(
    tiny_release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos, masks = make_archive(tmp_path, n=8)
    out = tmp_path / "out"
    plan = plan_batch(photos, masks, out, "inpaint")
    summary = run_batch(job(tiny_release), plan, progress=False)
    assert (summary.total, summary.done, summary.skipped, summary.failed) == (8, 6, 0, 2)
    assert summary.throughput > 0 and summary.failures_csv == str(out / "failures.csv")
    reasons = failure_rows(out / "failures.csv")
    assert set(reasons) == {NO_MASK, CORRUPT}
    assert "no mask" in reasons[NO_MASK] and "not a readable image" in reasons[CORRUPT]
    assert len(pngs(out)) == 6
    assert [Path(m).name for m in summary.inverted] == [INVERTED]
    rc = main(["inpaint", str(photos), "--mask", str(masks), "-o", str(tmp_path / "cli"),
               "--weights", str(tiny_release), "--quiet"])  # fmt: skip
    err = capsys.readouterr().err
    assert (
        rc == 1
        and f"1 of 6 masks made most of their photo the hole (first: {masks / INVERTED})" in err
    )
    # The per-photo function gives exactly what `edgefill inpaint PHOTO` writes.
    single = tmp_path / "single.png"
    rc = main(["inpaint", str(photos / "p03.png"), "--mask", str(masks / "p03.png"),
               "-o", str(single), "--weights", str(tiny_release)])  # fmt: skip
    assert rc == 0
    assert single.read_bytes() == (out / "p03.png").read_bytes()


def test_the_default_output_folder_is_beside_the_photos_however_they_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Results go beside the photo folder also when it is typed `photos/` (as every shell
    completes it) or `.`; they went inside it."""
    photos, masks = make_archive(tmp_path, n=3)
    monkeypatch.chdir(tmp_path)
    for given in ("photos", "photos/", str(photos) + "/", "./photos/"):
        plan = plan_batch(given, masks, None, "inpaint")
        assert Path(plan.out_dir).resolve() == tmp_path / "photos_inpainted", given
    assert plan_batch("photos/", None, None, "restore").out_dir == "photos_restored"
    monkeypatch.chdir(photos)
    assert plan_batch(".", masks, None, "inpaint").out_dir == os.path.join("..", "photos_inpainted")


def test_one_mask_file_serves_a_whole_folder(
    tiny_release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Sensor dust or a watermark sits at the same spot in every photo: --mask FILE."""
    photos, masks = make_archive(tmp_path, n=5)
    (photos / CORRUPT).unlink()
    (photos / NO_MASK).unlink()  # p00, p03, p04 left, all with the one mask
    out = tmp_path / "out"
    rc = main(["inpaint", str(photos), "--mask", str(masks / "p00.png"), "-o", str(out),
               "--weights", str(tiny_release)])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    hole = np.asarray(Image.open(masks / "p00.png")) > 0
    for photo in sorted(photos.glob("*.png")):
        src, back = np.asarray(Image.open(photo)), np.asarray(Image.open(out / photo.name))
        np.testing.assert_array_equal(back[~hole], src[~hole])
        assert not np.array_equal(back[hole], src[hole])
    rc = main(["inpaint", str(photos), "--mask", str(tmp_path / "none.png"), "-o", str(out),
               "--weights", str(tiny_release)])  # fmt: skip
    assert rc == 2 and "one mask for every photo" in capsys.readouterr().err


def test_rerun_skips_complete_outputs_and_retries_failures(
    tiny_release: Path, tmp_path: Path
) -> None:
    photos, masks = make_archive(tmp_path, n=6)
    out = tmp_path / "out"
    plan = plan_batch(photos, masks, out, "inpaint")
    run_batch(job(tiny_release, skip_existing=True), plan, progress=False)
    before = pngs(out)
    (out / "p03.png").unlink()  # as if the first run had been stopped before p03
    Image.fromarray(photo_array(*SIZE, seed=7)).save(photos / CORRUPT)  # the user fixed p01
    summary = run_batch(job(tiny_release, skip_existing=True), plan, progress=False)
    assert (summary.done, summary.skipped, summary.failed) == (2, 3, 1)  # p01 and p03 done
    assert pngs(out)["p03.png"] == before["p03.png"]
    assert set(failure_rows(out / "failures.csv")) == {NO_MASK}  # rewritten, not stale
    Image.fromarray(box_hole(*SIZE).astype(np.uint8) * 255).save(masks / NO_MASK)
    summary = run_batch(job(tiny_release, skip_existing=True), plan_batch(
        photos, masks, out, "inpaint"), progress=False)  # fmt: skip
    assert (summary.done, summary.skipped, summary.failed) == (1, 5, 0)
    assert failure_rows(out / "failures.csv") == {}  # an old list is emptied, never left stale


def test_an_interrupted_run_leaves_only_complete_files(
    tiny_release: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos, masks = make_archive(tmp_path, n=6)
    out = tmp_path / "out"
    real_save = Image.Image.save
    calls = []

    def dies_on_the_third_write(self: Image.Image, fp: object, *a: object, **kw: object) -> None:
        calls.append(fp)
        if len(calls) == 3:  # the process is stopped in the middle of writing a photo
            fp.write(b"\x89PNG half")  # type: ignore[attr-defined]
            raise KeyboardInterrupt
        real_save(self, fp, *a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Image.Image, "save", dies_on_the_third_write)
    plan = plan_batch(photos, masks, out, "inpaint")
    with pytest.raises(KeyboardInterrupt):
        run_batch(job(tiny_release, skip_existing=True), plan, progress=False)
    monkeypatch.undo()
    assert sorted(p.name for p in out.iterdir()) == ["p00.png", "p03.png"]  # no half file
    summary = run_batch(job(tiny_release, skip_existing=True), plan, progress=False)
    assert (summary.done, summary.skipped, summary.failed) == (2, 2, 2)  # p04, p05 now


def test_local_engine_streams_one_photo_at_a_time(
    tiny_release: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Folder mode's memory bound: a photo is read only after the previous result is out."""
    import edgefill.batch as batch

    photos, masks = make_archive(tmp_path, n=5)
    opened: list[str] = []
    real_readable = batch._readable

    def spy(path: str | None):  # type: ignore[no-untyped-def]
        if path is not None and Path(path).parent == photos:
            opened.append(Path(path).name)
        return real_readable(path)

    monkeypatch.setattr(batch, "_readable", spy)
    plan = plan_batch(photos, masks, tmp_path / "out", "inpaint")
    seen = []
    for i, r in enumerate(batch.run_local(job(tiny_release), plan.items)):
        seen.append(r.status)
        assert len(opened) == i + 1  # nothing decoded ahead of the result being handed back
    assert len(seen) == len(plan.items) == 4  # p02 (no mask) is refused at planning


def test_a_run_removes_temp_files_dead_writers_left_beside_its_outputs(
    tiny_release: Path, tmp_path: Path
) -> None:
    import subprocess

    photos, masks = make_archive(tmp_path, n=4)
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen(["true"])
    proc.wait()  # exited and reaped
    dead = proc.pid
    # p01 is corrupt: no write to its path would ever clean this one up.
    stale = out / f".p01.png.{dead}-abcdef123456.tmp"
    live = out / f".p01.png.{os.getpid()}-0123456789ab.tmp"  # a writer still at work
    other = out / f".notes.txt.{dead}-abcdef123456.tmp"  # not this job's output: not ours
    for p in (stale, live, other):
        p.write_bytes(b"partial")
    summary = run_batch(
        job(tiny_release), plan_batch(photos, masks, out, "inpaint"), progress=False
    )
    assert summary.failed == 2 and not stale.exists()
    assert live.exists() and other.exists()


def test_manifest_paths_and_per_row_problems(tiny_release: Path, tmp_path: Path) -> None:
    photos, masks = make_archive(tmp_path, n=4)
    rgba = np.dstack([photo_array(*SIZE, seed=1), np.where(box_hole(*SIZE), 0, 255)])
    Image.fromarray(rgba.astype(np.uint8)).save(photos / "alpha.png")
    manifest = tmp_path / "list.csv"
    manifest.write_text(
        "id,photo,mask,output\n"
        "1,photos/p00.png,masks/p00.png,a/first.png\n"  # relative to the manifest / to -o
        f"2,{photos / 'p03.png'},{masks / 'p03.png'},\n"  # absolute; empty output -> -o/p03.png
        "3,photos/alpha.png,,alpha.webp\n"  # no mask: the photo's transparency is the hole
        "4,photos/p00.png,masks/p00.png,a/first.png\n"  # clashes with row 1
        "5,photos/p03.png,masks/p03.png,../photos/p03.png\n"  # would overwrite its photo
        "6,photos/p00.png,masks/p00.png,x.gif\n"  # no such output format
        "7,photos/missing.png,masks/p00.png,m.png\n"
    )
    out = tmp_path / "out"
    plan = plan_batch(manifest, None, out, "inpaint")
    assert [i.output for i in plan.items] == [
        str(out / "a" / "first.png"), str(out / "p03.png"), str(out / "alpha.webp"),
        str(out / "m.png"),
    ]  # fmt: skip
    reasons = " | ".join(f.reason for f in plan.failures)
    assert len(plan.failures) == 3
    assert "also writes" in reasons and "x.gif" in reasons and "overwrite an input" in reasons
    summary = run_batch(job(tiny_release), plan, progress=False)
    assert (summary.done, summary.failed) == (3, 4)
    assert "missing.png: file not found" in failure_rows(out / "failures.csv")["missing.png"]
    assert Image.open(out / "alpha.webp").size == (SIZE[1], SIZE[0])
    # Without -o the outputs are relative to the manifest and the failures list sits beside it.
    plan = plan_batch(manifest, None, None, "inpaint")
    assert plan.items[0].output == str(tmp_path / "a" / "first.png")
    assert plan.failures_csv == str(tmp_path / "list_failures.csv")
    assert any("no output path" in f.reason for f in plan.failures)  # row 2 has none


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("", "'photo' column"),
        ("image,mask\na.png,b.png\n", "'photo' column"),
        ("photo\n", "no photos"),
    ],
)
def test_bad_manifests(tmp_path: Path, content: str, needle: str) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(content)
    with pytest.raises(EdgefillError, match=needle):
        plan_batch(manifest, None, tmp_path / "out", "inpaint")
    with pytest.raises(EdgefillError, match="not found"):
        plan_batch(tmp_path / "none.csv", None, None, "inpaint")


def test_fsspec_urls_read_and_write_through_the_same_function(
    tiny_release: Path, tmp_path: Path
) -> None:
    """memory:// stands for any remote store: photos fetched, results uploaded, skips by listing."""
    import fsspec

    photos, masks = make_archive(tmp_path, n=4)
    fs = fsspec.filesystem("memory")
    for folder in (photos, masks):
        for p in folder.iterdir():
            fs.pipe(f"/archive/{folder.name}/{p.name}", p.read_bytes())
    try:
        plan = plan_batch("memory://archive/photos", "memory://archive/masks",
                          "memory://archive/out", "inpaint")  # fmt: skip
        summary = run_batch(job(tiny_release, skip_existing=True), plan, progress=False)
        assert (summary.done, summary.failed) == (2, 2)
        remote = {p.rsplit("/", 1)[1]: fs.cat(p) for p in fs.ls("/archive/out", detail=False)}
        run_batch(job(tiny_release), plan_batch(photos, masks, tmp_path / "out", "inpaint"),
                  progress=False)  # fmt: skip
        assert {k: v for k, v in remote.items() if k.endswith(".png")} == pngs(tmp_path / "out")
        assert b"not a readable image" in remote["failures.csv"]
        assert b"memory://archive/photos/p00.png" not in remote["failures.csv"]  # p00 is fine
        summary = run_batch(job(tiny_release, skip_existing=True), plan, progress=False)
        assert (summary.done, summary.skipped) == (0, 2)
    finally:
        fs.rm("/archive", recursive=True)


def test_process_item_never_raises_for_a_bad_photo(inpainter: object, tmp_path: Path) -> None:
    item = Item(str(tmp_path / "nope.png"), None, str(tmp_path / "out.png"))
    r = process_item(Job(), inpainter, item)
    assert r.status == "failed" and "file not found" in r.reason
    assert not (tmp_path / "out.png").exists()


def test_restore_a_folder_with_side_by_side_and_masks(
    tiny_release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos, masks = make_archive(tmp_path, n=4)
    (photos / CORRUPT).unlink()
    Image.fromarray(box_hole(*SIZE).astype(np.uint8) * 255).save(masks / NO_MASK)
    out, sbs, mout = tmp_path / "out", tmp_path / "sbs", tmp_path / "mout"
    w = ["--weights", str(tiny_release), "--threads", "1", "--quiet"]
    rc = main(["restore", str(photos), "--mask", str(masks), "-o", str(out),
               "--side-by-side", str(sbs), "--mask-out", str(mout), *w])  # fmt: skip
    stdout = capsys.readouterr().out
    assert rc == 0 and "wrote 3 of 3 photos" in stdout
    assert sorted(pngs(out)) == sorted(pngs(sbs)) == sorted(pngs(mout)) == [
        "p00.png", "p02.png", "p03.png"]  # fmt: skip
    assert Image.open(sbs / "p00.png").size[0] > 2 * SIZE[1]
    single = tmp_path / "single.png"
    rc = main(["restore", str(photos / "p03.png"), "--mask", str(masks / "p03.png"),
               "-o", str(single), *w[:2]])  # fmt: skip
    assert rc == 0 and single.read_bytes() == (out / "p03.png").read_bytes()
    # Without --mask the damage is detected.
    rc = main(["restore", str(photos), "-o", str(tmp_path / "detected"), *w])
    assert rc == 0 and len(pngs(tmp_path / "detected")) == 3


def test_batch_guards(
    tiny_release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos, masks = make_archive(tmp_path, n=2)
    w = ["--weights", str(tiny_release)]

    def error(*argv: str) -> str:
        rc = main([str(a) for a in argv])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
        return err

    assert "not one photo" in error("inpaint", photos / "p00.png", "--mask", masks / "p00.png",
                                    "--engine", "ray", *w)  # fmt: skip
    assert "photo folder" in error("restore", photos, "--mask", masks, "-o", photos, *w)
    assert "mask folder" in error("restore", photos, "--mask", masks, "-o", masks, *w)
    assert "drop --mask" in error("inpaint", tmp_path / "m.csv", "--mask", masks, *w)
    assert "--threads" in error("inpaint", photos, "--mask", masks, "--threads", "0", *w)
    assert "weights not found" in error("inpaint", photos, "--mask", masks, "-o",
                                        tmp_path / "o", "--weights", tmp_path / "none")  # fmt: skip


def test_ray_missing_is_one_clear_error(
    tiny_release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    import sys

    photos, masks = make_archive(tmp_path, n=2)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    rc = main(["inpaint", str(photos), "--mask", str(masks), "-o", str(tmp_path / "o"),
               "--engine", "ray", "--weights", str(tiny_release)])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and install_hint("cluster") in err and "Traceback" not in err


# ----------------------------------------------------------------------------- Ray engine


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # field 4: the parent's pid
        if pid == ancestor:
            return True
    return False


def ray_model_workers() -> list[int]:
    """PIDs of this test session's Ray Data actor processes (their title is ray::MapWorker...)."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            title = (d / "cmdline").read_bytes()
        except OSError:
            continue
        if title.startswith(b"ray::MapWorker") and _descends_from(int(d.name), os.getpid()):
            pids.append(int(d.name))
    return sorted(pids)


@pytest.fixture(scope="module")
def ray_local() -> object:
    ray = pytest.importorskip("ray", reason="Ray is not installed (the cluster extra)")
    pytest.importorskip("ray.data", reason="Ray Data is not installed: pip install 'ray[data]'")
    if not Path("/proc/self/stat").exists():
        pytest.skip("the kill test finds Ray's worker processes through /proc (Linux)")
    for attempt in range(2):  # Ray gives its node 30 s to start; a busy machine can need more
        try:
            ray.init(
                num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR"
            )
            break
        except Exception:
            ray.shutdown()
            if attempt:
                raise
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def ray_archive(
    ray_local: object, tiny_release: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict:
    """One local run and one Ray run (2 workers) of the same archive, a worker killed mid-run."""
    root = tmp_path_factory.mktemp("archive")
    photos, masks = make_archive(root)
    local_out, ray_out = root / "local", root / "ray"
    run_batch(job(tiny_release), plan_batch(photos, masks, local_out, "inpaint"), progress=False)

    killed: dict[str, int] = {}
    stop = threading.Event()

    def kill_one_worker_mid_run() -> None:
        while not stop.is_set():
            written = len(list(ray_out.glob("p*.png"))) if ray_out.exists() else 0
            pids = ray_model_workers()
            if written >= 2 and len(pids) == 2:
                os.kill(pids[0], signal.SIGKILL)
                killed.update(pid=pids[0], written=written)
                return
            time.sleep(0.005)

    killer = threading.Thread(target=kill_one_worker_mid_run, daemon=True)
    killer.start()
    plan = plan_batch(photos, masks, ray_out, "inpaint")
    try:
        summary = run_batch(job(tiny_release), plan, "ray", progress=False, workers=2)
    finally:
        stop.set()
        killer.join()
    return {"photos": photos, "masks": masks, "local": local_out, "ray": ray_out,
            "summary": summary, "killed": killed, "plan": plan}  # fmt: skip


def test_ray_run_with_a_killed_worker_ends_complete_and_identical(ray_archive: dict) -> None:
    killed, summary = ray_archive["killed"], ray_archive["summary"]
    assert killed, "no Ray worker was seen running: the test did not exercise a kill"
    assert killed["written"] < N_PHOTOS - 2, "the worker was killed after the run had finished"
    assert not Path(f"/proc/{killed['pid']}").exists() or killed["pid"] not in ray_model_workers()
    assert (summary.total, summary.done, summary.failed) == (N_PHOTOS, N_PHOTOS - 2, 2)
    assert [Path(m).name for m in summary.inverted] == [INVERTED]
    local, ray_pngs = pngs(ray_archive["local"]), pngs(ray_archive["ray"])
    assert len(local) == N_PHOTOS - 2
    assert ray_pngs == local  # byte-identical to the local engine, nothing lost or half-written
    assert not list(ray_archive["ray"].glob(".*.tmp"))  # the killed worker's temp file is gone
    assert failure_rows(ray_archive["ray"] / "failures.csv") == failure_rows(
        ray_archive["local"] / "failures.csv"
    )


def test_ray_rerun_skips_everything(ray_archive: dict, tiny_release: Path) -> None:
    (ray_archive["photos"] / CORRUPT).unlink()  # the user removed the corrupt scan
    before = {p: p.stat().st_mtime_ns for p in ray_archive["ray"].glob("p*.png")}
    plan = plan_batch(ray_archive["photos"], ray_archive["masks"], ray_archive["ray"], "inpaint")
    summary = run_batch(job(tiny_release), plan, "ray", progress=False, workers=2)
    assert (summary.done, summary.skipped, summary.failed) == (0, N_PHOTOS - 2, 1)
    assert {p: p.stat().st_mtime_ns for p in ray_archive["ray"].glob("p*.png")} == before
    assert set(failure_rows(ray_archive["ray"] / "failures.csv")) == {NO_MASK}
