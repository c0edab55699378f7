"""benchmarks/bench_inference.py: the shipped release's two paths (G1's edges, drawn edges)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import box_hole, load_repo_script, photo_array

from edgefill.image import save_image


def test_shipped_runner_times_the_drawn_edge_path() -> None:
    """With edges drawn (the photo's own) G1 never runs and the release's G2 for drawn edges
    does; without, G1 and the release's own G2 run. The PatchMatch copy is timed on both."""
    bench = load_repo_script("benchmarks/bench_inference.py")
    rgb, hole = photo_array(64, 64), box_hole(64, 64)
    for drawn_from, nets in ((None, {"edge", "inpaint"}), (rgb, {"inpaint_drawn"})):
        run, timed = bench.shipped_runner(None, "crop", drawn_from)
        out = run(rgb, hole)
        assert {k for k, v in timed.pixels.items() if v} == nets
        assert timed.copy_seconds > 0
        assert np.array_equal(out[~hole], rgb[~hole])


def test_each_row_names_the_photo_it_timed_and_workers_time_the_chosen_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without photos the benchmark times synthetic ones: its rows must say so, not pass for
    real photos; ``--data`` (``set_photos``) reaches the worker processes."""
    bench = load_repo_script("benchmarks/bench_inference.py")
    monkeypatch.setenv(bench.DATA_ENV, "")  # restored after the test
    case = {"threads": 1, "size": [64, 64], "mask": "irregular20", "photo": 0, "seed": 0}
    case |= {"variant": "shipped", "strategy": "crop", "reps": 1, "warmup": 0}
    bench.set_photos(tmp_path / "none")
    assert bench.run_worker(case, 300)["photo_file"] == "synthetic"
    folder = tmp_path / "photos"
    folder.mkdir()
    save_image(folder / "street.JPEG", photo_array(80, 96))
    bench.set_photos(folder)
    assert bench.run_worker(case, 300)["photo_file"] == "street.JPEG"
