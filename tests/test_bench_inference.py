"""benchmarks/bench_inference.py: the shipped release's two paths (G1's edges, drawn edges)."""

from __future__ import annotations

import numpy as np
from conftest import box_hole, load_repo_script, photo_array


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
