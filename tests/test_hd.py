"""High-resolution strategies: window planning, and pixels outside the hole never changing."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import TINY_CONFIG, photo_array, tiny_generators

from edgefill.errors import EdgefillError
from edgefill.pipeline import (
    WHOLE_IMAGE_FRACTION,
    Inpainter,
    hole_windows,
    merge_boxes,
    plan_windows,
    window_owners,
)


@pytest.fixture(scope="module")
def inp() -> Inpainter:
    return Inpainter.from_modules(*tiny_generators(3), TINY_CONFIG)


def big_photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A photo with texture everywhere (tiles of the conftest photo plus noise)."""
    tile = photo_array(64, 80, seed)
    reps = (h // 64 + 1, w // 80 + 1, 1)
    img = np.tile(tile, reps)[:h, :w].astype(np.int16)
    img += np.random.default_rng(seed).integers(-20, 21, img.shape, dtype=np.int16)
    return np.clip(img, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- windows


def test_one_region_gets_its_box_plus_margin() -> None:
    hole = np.zeros((400, 500), bool)
    hole[180:200, 240:250] = True  # 20 x 10 region
    # grow 0: the box is exactly the region's; a fixed margin (floor = cap) dominates context.
    assert hole_windows(hole, margin=50, grow=0, min_margin=50) == [(130, 190, 250, 300)]
    # The grown region (4 px) is what gets the margin.
    assert hole_windows(hole, margin=50, grow=4, min_margin=50) == [(126, 186, 254, 304)]


def test_small_holes_get_a_margin_that_grows_with_them() -> None:
    def pad(longest: int, margin: int = 128) -> int:
        hole = np.zeros((1000, 1000), bool)
        hole[500 : 500 + longest, 500:505] = True
        [(t, _, b, _)] = hole_windows(hole, margin=margin, grow=0, per_size=1.0, min_margin=32)
        return 500 - t

    assert pad(10) == 32  # the floor: a dust spot still sees 32 px around it
    assert pad(60) == 60  # its own size in between
    assert pad(200) == 128  # at most hd_margin ...
    assert pad(300) == 150  # ... unless half the region's size is more (context)
    assert pad(60, margin=40) == 40  # the cap wins over the size
    assert pad(10, margin=20) == 20  # and over the floor: hd_margin is the most a hole gets


def test_large_regions_get_proportional_context() -> None:
    hole = np.zeros((1000, 1000), bool)
    hole[400:600, 450:550] = True  # 200 x 100: context 0.5 * 200 = 100 > margin 30
    assert hole_windows(hole, margin=30, grow=0, context=0.5) == [(300, 350, 700, 650)]


def test_border_holes_shift_the_window_inside_keeping_its_size() -> None:
    hole = np.zeros((300, 400), bool)
    hole[0:10, 0:10] = True  # top-left corner
    hole[295:300, 380:400] = True  # bottom-right corner
    boxes = hole_windows(hole, margin=40, grow=0, min_margin=40)
    assert boxes == [(0, 0, 90, 90), (215, 300, 300, 400)]
    for t, lf, b, r in boxes:
        assert 0 <= t < b <= 300 and 0 <= lf < r <= 400


def test_windows_larger_than_the_photo_are_clipped() -> None:
    hole = np.zeros((50, 60), bool)
    hole[20:25, 30:35] = True
    assert hole_windows(hole, margin=100) == [(0, 0, 50, 60)]


def test_overlapping_windows_merge_and_distant_ones_do_not() -> None:
    hole = np.zeros((600, 800), bool)
    hole[100:110, 100:110] = True
    hole[100:110, 160:170] = True  # windows overlap the first (margin 40): merged
    hole[500:510, 700:710] = True  # far away: its own window
    boxes = hole_windows(hole, margin=40, grow=0, min_margin=40)
    assert boxes == [(60, 60, 150, 210), (460, 660, 550, 750)]


def test_merging_is_transitive_and_repeats_until_stable() -> None:
    # a overlaps b, b overlaps c; the union of a and b then overlaps d.
    a, b, c = (0, 0, 10, 10), (5, 5, 15, 15), (12, 12, 20, 20)
    d = (0, 18, 3, 30)
    e = (50, 50, 60, 60)
    assert merge_boxes([a, c, e, b, d]) == [(0, 0, 20, 30), e]
    # Touching is not overlapping (bottom/right are exclusive).
    assert merge_boxes([(0, 0, 10, 10), (10, 0, 20, 10)]) == [(0, 0, 10, 10), (10, 0, 20, 10)]


def test_nearby_fragments_share_a_window_through_growing() -> None:
    hole = np.zeros((300, 300), bool)
    hole[150, 100:140] = True
    hole[150, 145:200] = True  # 5 px gap: one region once grown by 4
    assert len(hole_windows(hole, margin=10, grow=4)) == 1
    assert len(hole_windows(hole, margin=0, grow=0, context=0)) == 2


def test_plan_downscales_only_windows_above_the_working_size() -> None:
    hole = np.zeros((3000, 4000), bool)
    hole[100:110, 100:110] = True  # small: native size
    hole[1000:2000, 1500:2600] = True  # large: downscaled to 512 on its longest side
    plan = plan_windows(hole, "crop", 64, 512)
    assert len(plan) == 2
    (box1, size1), (box2, size2) = plan
    assert size1 == (box1[2] - box1[0], box1[3] - box1[1])
    assert max(size2) == 512
    bh, bw = box2[2] - box2[0], box2[3] - box2[1]
    assert abs(size2[0] / size2[1] - bh / bw) < 0.01


def three_far_holes() -> np.ndarray:
    """The issue-15 case: a 736x952 scan with three holes about 270 px apart, each long enough
    (130 px) to get the full 128 px margin."""
    hole = np.zeros((952, 736), bool)
    hole[200:210, 100:230] = True
    hole[470:480, 350:480] = True
    hole[750:760, 300:430] = True
    return hole


def test_far_apart_holes_get_separate_native_windows() -> None:
    # Their 128 px-margin windows overlap, but the union (about 840 px) is above the working
    # size: before issue 15 they merged into one window run downscaled to 512 px.
    hole = three_far_holes()
    plan = plan_windows(hole, "crop", 128, 512)
    assert len(plan) == 3
    for (t, lf, b, r), size in plan:
        assert size == (b - t, r - lf)  # native resolution
        assert max(b - t, r - lf) <= 512
    assert len(merge_boxes([box for box, _ in plan])) < 3  # they do overlap


def test_dust_spots_get_small_windows() -> None:
    # A few px of dust needs little context; 128 px around each spot made 20x larger windows.
    hole = np.zeros((3000, 4000), bool)
    for y, x in ((500, 500), (1500, 2000), (2500, 3500)):
        hole[y : y + 6, x : x + 6] = True
    plan = plan_windows(hole, "crop", 128, 512)
    assert [size for _, size in plan] == [(78, 78)] * 3  # 14 px grown spot + 2 x 32 px


def test_nearby_holes_cluster_into_one_native_window() -> None:
    hole = np.zeros((2000, 3000), bool)
    hole[900:910, 1000:1010] = True
    hole[960:970, 1050:1070] = True  # 40-50 px away: their 32 px margins overlap
    hole[1500:1510, 2500:2510] = True  # far away: its own window
    plan = plan_windows(hole, "crop", 128, 512)
    assert len(plan) == 2
    (box1, size1), (box2, size2) = plan
    assert box1[0] <= 900 and box1[2] >= 970 and box1[1] <= 1000 and box1[3] >= 1070
    assert size1 == (box1[2] - box1[0], box1[3] - box1[1])
    assert size2 == (box2[2] - box2[0], box2[3] - box2[1])


def test_overlapping_windows_own_each_hole_pixel_once() -> None:
    hole = three_far_holes()
    boxes = [box for box, _ in plan_windows(hole, "crop", 128, 512)]
    owner = window_owners(hole, boxes)
    assert (owner[~hole] == -1).all() and (owner[hole] >= 0).all()
    for i, (t, lf, b, r) in enumerate(boxes):  # each window owns the hole at its centre
        cy, cx = (t + b) // 2, (lf + r) // 2
        ys, xs = np.nonzero(owner == i)
        assert ys.size and t <= ys.min() and ys.max() < b and lf <= xs.min() and xs.max() < r
        assert np.hypot(ys.mean() - cy, xs.mean() - cx) < 60


@pytest.mark.parametrize("shape", [(200, 1400), (1400, 200)])
def test_windows_spanning_the_whole_photo_side_own_their_holes(shape: tuple[int, int]) -> None:
    """A window as high (or wide) as the photo: its depth has no term along that side."""
    hole = np.zeros(shape, bool)
    if shape[0] < shape[1]:
        hole[90:110, 100:200] = hole[90:110, 1200:1300] = True  # 100 px long: 108 px margin
    else:
        hole[100:200, 90:110] = hole[1200:1300, 90:110] = True
    boxes = [box for box, _ in plan_windows(hole, "crop", 128, 512)]
    assert len(boxes) == 2 and any(b - t == shape[0] or r - lf == shape[1] for t, lf, b, r in boxes)
    owner = window_owners(hole, boxes)
    assert (owner[~hole] == -1).all() and set(np.unique(owner[hole])) == {0, 1}


def test_overlapping_native_windows_keep_outside_pixels_and_fill_every_hole(
    inp: Inpainter,
) -> None:
    hole = three_far_holes()
    rgb = big_photo(*hole.shape, seed=5)
    rgb[hole] = (255, 0, 255)  # a colour the fill cannot produce
    result, _ = inp.inpaint_arrays(rgb, hole, hd_strategy="crop", hd_margin=128)
    assert np.array_equal(result[~hole], rgb[~hole])
    assert not (result[hole] == (255, 0, 255)).all(1).any()
    # Each hole is filled at native size: as if its window had been run alone.
    (t, lf, b, r), _ = plan_windows(hole, "crop", 128, 512)[1]
    alone, _ = inp.inpaint_arrays(rgb[t:b, lf:r], hole[t:b, lf:r], hd_strategy="original")
    mine = window_owners(hole, [bx for bx, _ in plan_windows(hole, "crop", 128, 512)]) == 1
    assert np.array_equal(result[t:b, lf:r][mine[t:b, lf:r]], alone[mine[t:b, lf:r]])


def test_plan_for_resize_and_original() -> None:
    hole = np.zeros((300, 1000), bool)
    hole[10:20, 10:20] = True
    assert plan_windows(hole, "original", 64, 128) == [((0, 0, 300, 1000), (300, 1000))]
    assert plan_windows(hole, "resize", 64, 500) == [((0, 0, 300, 1000), (150, 500))]
    assert plan_windows(hole, "resize", 64, 2000) == [((0, 0, 300, 1000), (300, 1000))]


def test_crop_uses_the_whole_photo_when_it_fits_and_windows_cover_most_of_it() -> None:
    hole = np.zeros((200, 200), bool)
    hole[70:130, 70:130] = True  # 68 px once grown: a 68 px margin
    whole = [((0, 0, 200, 200), (200, 200))]
    assert plan_windows(hole, "crop", 80, 512) == whole  # window 204 px >= 60 % of the photo
    small = plan_windows(hole, "crop", 10, 512)  # 34 px context: a 136 px window, cheaper
    assert small == [((32, 32, 168, 168), (136, 136))]
    assert 136 * 136 < WHOLE_IMAGE_FRACTION * 200 * 200
    # A photo above the working size never falls back to the whole photo.
    big = np.zeros((600, 600), bool)
    big[0:600:50, :] = True
    assert all(
        b != (0, 0, 600, 600) or s == (512, 512) for b, s in plan_windows(big, "crop", 80, 512)
    )


def test_bad_strategy_and_sizes_are_clear_errors(inp: Inpainter) -> None:
    hole = np.zeros((20, 20), bool)
    with pytest.raises(EdgefillError, match="hd_strategy"):
        plan_windows(hole, "tiles", 10, 512)
    with pytest.raises(EdgefillError, match="working_size"):
        plan_windows(hole, "crop", 10, 8)
    hole[5, 5] = True
    with pytest.raises(EdgefillError, match="hd_strategy"):
        inp.inpaint_arrays(photo_array(20, 20), hole, hd_strategy="tiles")
    with pytest.raises(EdgefillError, match="hd_strategy"):
        Inpainter.from_modules(*tiny_generators(0), TINY_CONFIG, hd_strategy="tiles")


# ----------------------------------------------------------------------------- results


def layouts() -> dict[str, np.ndarray]:
    h, w = 360, 520
    out = {}
    m = np.zeros((h, w), bool)
    m[150:170, 200:230] = True
    out["centre"] = m
    m = np.zeros((h, w), bool)
    m[:12, :20] = True
    m[h - 7 :, w - 30 :] = True
    m[100:140, w - 3 :] = True
    out["borders"] = m
    m = np.zeros((h, w), bool)
    m[100:110, 100:110] = True
    m[120:130, 160:175] = True  # windows overlap: merged
    m[300:310, 450:460] = True
    out["merged"] = m
    m = np.zeros((h, w), bool)
    m[20:340, 30:500:37] = True  # long thin lines: one big window, downscaled
    out["scratches"] = m
    m = np.zeros((h, w), bool)
    m[60:150, 60:200] = True  # a big region: its own window (not the photo), downscaled
    m[340:, 500:] = True  # and a small one in the corner at native size
    out["large"] = m
    return out


@pytest.mark.parametrize("strategy", ["crop", "resize", "original"])
@pytest.mark.parametrize("layout", ["centre", "borders", "merged", "scratches", "large"])
def test_pixels_outside_the_hole_are_bit_identical(
    inp: Inpainter, strategy: str, layout: str
) -> None:
    hole = layouts()[layout]
    rgb = big_photo(*hole.shape, seed=1)
    out, edges = inp.inpaint_arrays(rgb, hole, hd_strategy=strategy, hd_margin=32, working_size=160)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[~hole], rgb[~hole])
    assert not np.array_equal(out[hole], rgb[hole])  # the hole was filled
    assert edges.shape == hole.shape and edges.dtype == np.float32
    assert 0 <= edges.min() and edges.max() <= 1


def test_large_layout_downscales_a_window_that_is_not_the_photo() -> None:
    plan = plan_windows(layouts()["large"], "crop", 32, 160)
    assert len(plan) == 2
    (box, size), (corner, corner_size) = plan
    assert box != (0, 0, 360, 520) and max(size) == 160 < max(box[2] - box[0], box[3] - box[1])
    assert corner_size == (corner[2] - corner[0], corner[3] - corner[1])


def test_a_native_size_window_gives_what_the_window_alone_gives(inp: Inpainter) -> None:
    hole = layouts()["merged"]
    rgb = big_photo(*hole.shape, seed=2)
    plan = plan_windows(hole, "crop", 32, 512)
    assert len(plan) == 2 and all(s == (b[2] - b[0], b[3] - b[1]) for b, s in plan)
    out, edges = inp.inpaint_arrays(rgb, hole, hd_strategy="crop", hd_margin=32)
    for (t, lf, b, r), _ in plan:
        alone, alone_edges = inp.inpaint_arrays(
            rgb[t:b, lf:r], hole[t:b, lf:r], hd_strategy="original"
        )
        np.testing.assert_array_equal(out[t:b, lf:r], alone)
        np.testing.assert_array_equal(edges[t:b, lf:r], alone_edges)
    # Outside every window nothing was computed: the edge map is zero there.
    inside = np.zeros(hole.shape, bool)
    for (t, lf, b, r), _ in plan:
        inside[t:b, lf:r] = True
    assert not edges[~inside].any()


def test_crop_on_a_small_photo_is_exactly_original(inp: Inpainter) -> None:
    rgb = photo_array(96, 128, seed=4)
    hole = np.zeros((96, 128), bool)
    hole[30:60, 40:90] = True
    a = inp.inpaint_arrays(rgb, hole, hd_strategy="crop")
    b = inp.inpaint_arrays(rgb, hole, hd_strategy="original")
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_resize_of_a_photo_within_the_working_size_is_original(inp: Inpainter) -> None:
    rgb = photo_array(60, 90, seed=5)
    hole = np.zeros((60, 90), bool)
    hole[10:30, 20:50] = True
    a = inp.inpaint_arrays(rgb, hole, hd_strategy="resize", working_size=512)
    b = inp.inpaint_arrays(rgb, hole, hd_strategy="original")
    np.testing.assert_array_equal(a[0], b[0])


def test_downscaled_window_fills_every_hole_pixel_from_nearby_content(inp: Inpainter) -> None:
    """A hole one pixel wide survives downscaling (max pooling) and is filled, not skipped."""
    h, w = 400, 600
    rgb = np.full((h, w, 3), 90, np.uint8)
    rgb[:, :, 1] = 160
    hole = np.zeros((h, w), bool)
    hole[200, 20:580] = True  # one-pixel scratch across the photo
    rgb_scratched = rgb.copy()
    rgb_scratched[hole] = 255
    out, _ = inp.inpaint_arrays(rgb_scratched, hole, hd_strategy="resize", working_size=100)
    np.testing.assert_array_equal(out[~hole], rgb[~hole])
    assert (out[hole] != 255).all()  # the white scratch is gone everywhere


def test_guide_works_with_downscaled_windows(inp: Inpainter) -> None:
    hole = layouts()["scratches"]
    rgb = big_photo(*hole.shape, seed=6)
    guide = np.zeros(hole.shape, np.float32)
    guide[180, :] = 1.0
    a, ea = inp.inpaint_arrays(rgb, hole, guide, hd_margin=32, working_size=160)
    b, _ = inp.inpaint_arrays(rgb, hole, None, hd_margin=32, working_size=160)
    np.testing.assert_array_equal(a[~hole], rgb[~hole])
    assert not np.array_equal(a, b)
    assert ea[180, 30:500:37].min() > 0  # the guide line shows in the edge map inside the hole


def test_edge_map_matches_inpaint_arrays(inp: Inpainter) -> None:
    hole = layouts()["borders"]
    rgb = big_photo(*hole.shape, seed=7)
    _, edges = inp.inpaint_arrays(rgb, hole, hd_margin=32, working_size=160)
    np.testing.assert_array_equal(inp.edge_map(rgb, hole, hd_margin=32, working_size=160), edges)


def test_call_accepts_per_call_overrides(inp: Inpainter) -> None:
    hole = layouts()["scratches"]
    rgb = big_photo(*hole.shape, seed=8)
    res = inp(rgb, hole, hd_strategy="resize", working_size=128)
    ref, _ = inp.inpaint_arrays(rgb, hole, hd_strategy="resize", working_size=128)
    np.testing.assert_array_equal(res.image, ref)
    other = Inpainter.from_modules(
        *tiny_generators(3), TINY_CONFIG, hd_strategy="resize", working_size=128
    )
    np.testing.assert_array_equal(other(rgb, hole).image, ref)


def test_integer_holes_work_like_bool_holes(inp: Inpainter) -> None:
    hole = layouts()["large"]
    rgb = big_photo(*hole.shape, seed=9)
    ref, _ = inp.inpaint_arrays(rgb, hole, hd_margin=32, working_size=160)
    for arr in (hole.astype(np.uint8) * 255, hole.astype(np.int64), hole.astype(np.float32)):
        out, _ = inp.inpaint_arrays(rgb, arr, hd_margin=32, working_size=160)
        np.testing.assert_array_equal(out, ref)
