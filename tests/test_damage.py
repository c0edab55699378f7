"""Realistic synthetic damage (``edgefill.damage``) and the detector's regions with confidence."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import load_repo_script
from skimage import data as skdata

from edgefill.damage import DAMAGE_TYPES, LINE_TYPES, render_damage, scan_effects
from edgefill.detect import (
    CONTEXT_MARGIN,
    STAIN_FILE,
    STAIN_SIZE,
    DamageNet,
    analyse_damage,
    damage_map,
    damage_probability,
    detect_damage,
    false_alarm_spots,
    load_detector,
    load_stain_pass,
    mixed_training_batch,
    net_probabilities,
    save_detector,
    save_stain_pass,
    scan_training_batch,
    stain_probability,
    stain_training_batch,
    train_detector,
    training_batch,
)
from edgefill.errors import EdgefillError


def scan(h: int = 300, w: int = 400) -> np.ndarray:
    return cv2.resize(skdata.astronaut(), (w, h), interpolation=cv2.INTER_CUBIC)


class Spy(DamageNet):
    """A detector that records the size of every input it sees (``seen``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[int, int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(tuple(x.shape[-2:]))
        return super().forward(x)


# ----------------------------------------------------------------------------- synthesis


@pytest.mark.parametrize("kind", DAMAGE_TYPES)
def test_each_damage_type_draws_visible_exactly_labelled_damage(kind: str):
    clean = scan()
    found = 0
    for seed in range(4):  # some draws of a type can fall off the photo
        s = render_damage(clean, np.random.default_rng([seed, 1]), (kind,))
        assert s.image.shape == clean.shape and s.image.dtype == np.uint8
        diff = np.abs(s.image.astype(int) - clean.astype(int)).max(2)
        # exact truth: outside the label the photo changed by less than the visibility threshold
        assert diff[~s.mask].max(initial=0) < 8 or kind == "stain"
        assert (diff[s.mask] >= 8).mean() > (0.8 if kind == "stain" else 0.999)
        assert set(np.unique(s.labels)) <= {0, DAMAGE_TYPES.index(kind) + 1}
        found += int(s.mask.any())
    assert found >= 3


def test_render_damage_is_reproducible_and_checks_types():
    clean = scan(120, 160)
    a = render_damage(clean, np.random.default_rng(5))
    b = render_damage(clean, np.random.default_rng(5))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    assert a.mask.any()
    lb = a.line_blob()
    assert lb.shape == (2, 120, 160) and not (lb[0] & lb[1]).any()
    assert np.array_equal(lb[0] | lb[1], a.mask)
    line_ids = [DAMAGE_TYPES.index(k) + 1 for k in LINE_TYPES]
    assert np.array_equal(lb[0], np.isin(a.labels, line_ids))
    with pytest.raises(ValueError, match="unknown damage type 'mould'"):
        render_damage(clean, np.random.default_rng(0), ("mould",))


def test_scan_effects_add_grain_and_jpeg_but_keep_the_photo():
    clean = scan(120, 160)
    out = scan_effects(clean, np.random.default_rng(0), grain=4.0, halftone=True, jpeg=85)
    assert out.shape == clean.shape and out.dtype == np.uint8
    d = out.astype(float) - clean.astype(float)
    assert 1.0 < np.abs(d).mean() < 12.0  # touches every region a little, keeps the picture
    plain = scan_effects(clean, np.random.default_rng(0), grain=0.0, halftone=False, jpeg=100)
    assert np.array_equal(plain, clean)


def test_scan_training_batch_shapes_and_targets():
    photos = [scan(200, 260), scan(180, 240)]
    x, y = scan_training_batch(photos, np.random.default_rng(3), 4, 64)
    assert x.shape == (4, 3, 64, 64) and y.shape == (4, 2, 64, 64)
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    assert set(torch.unique(y).tolist()) <= {0.0, 1.0}
    x2, y2 = scan_training_batch(photos, np.random.default_rng(3), 4, 64)
    assert torch.equal(x, x2) and torch.equal(y, y2)


# ----------------------------------------------------------------------------- stain pass


def test_stain_training_batch_targets_only_the_stains():
    photos = [scan(200, 260), scan(180, 240)]
    x, y = stain_training_batch(photos, np.random.default_rng(4), 8, 64)
    assert x.shape == (8, 3, 64, 64) and y.shape == (8, 1, 64, 64)
    assert set(torch.unique(y).tolist()) == {0.0, 1.0}  # some crops hold a stain, most pixels not
    x2, y2 = stain_training_batch(photos, np.random.default_rng(4), 8, 64)
    assert torch.equal(x, x2) and torch.equal(y, y2)


def test_stain_targets_follow_the_rendered_stain(monkeypatch):
    import edgefill.damage as damage

    def only_stain(rgb, rng, kinds, **kw):  # a stain in the left half, other damage dropped
        out = rgb.copy()
        labels = np.zeros(rgb.shape[:2], np.uint8)
        labels[:, : rgb.shape[1] // 2] = DAMAGE_TYPES.index("stain") + 1
        out[labels > 0] = (140, 107, 64)
        return damage.Scan(out, labels)

    monkeypatch.setattr(damage, "render_damage", only_stain)
    x, y = stain_training_batch([scan(200, 260)], np.random.default_rng(0), 1, 32)
    assert y[0, 0, :, :16].all() and not y[0, 0, :, 16:].any()


def test_a_release_with_a_stain_pass_flags_what_either_net_finds(tmp_path: Path):
    torch.manual_seed(0)
    net, stain = DamageNet(4, 3).eval(), DamageNet(4, 3, outputs=1).eval()
    save_detector(net, tmp_path, {"width": 4, "depth": 3})
    assert load_stain_pass(tmp_path) is None  # an older release: no stain pass
    save_stain_pass(stain, tmp_path, {"width": 4, "depth": 3, "steps": 1})
    loaded = load_stain_pass(tmp_path)
    assert loaded.head.out_channels == 1 and load_detector(tmp_path)[1]["width"] == 4
    img = scan(300, 400)
    p_stain = stain_probability(img, loaded)
    assert p_stain.shape == (300, 400)
    assert np.abs(p_stain - stain_probability(img, stain)).max() < 1e-2  # float16 storage
    main = net_probabilities(img, load_detector(tmp_path)[0])
    for kind, channels in (("auto", [0, 1]), ("spots", [1])):
        prob, _ = damage_probability(img, kind, detector=tmp_path)
        assert np.allclose(prob, np.maximum(main[..., channels].max(2), p_stain), atol=1e-6)
    scratches, _ = damage_probability(img, "scratches", detector=tmp_path)
    assert np.allclose(scratches, main[..., 0], atol=1e-6)  # stains are no scratches
    (tmp_path / STAIN_FILE).unlink()
    with pytest.raises(EdgefillError, match="stain pass"):
        load_stain_pass(tmp_path)


def test_stains_are_shown_never_repaired_by_default():
    flagged = np.zeros((40, 60), bool)
    flagged[5:15, 5:15] = True  # a stain, confident by its probability
    flagged[10, 5:50] = True  # a scratch across it
    stained = np.zeros_like(flagged)
    stained[5:15, 5:15] = True  # what the stain pass alone flagged
    stained[10, 5:15] = False  # the damage network found the scratch, inside the stain too
    dm = damage_map(flagged, np.where(flagged, 0.9, 0.0), 0.75, stained)
    scratch, *stains = dm.regions  # never merged: the scratch stays a scratch (and cuts the stain)
    assert [(g.y, g.area) for g in stains] == [(5, 50), (11, 40)]
    stain = stains[0]
    assert stain.stain and not stain.confident and stain.confidence == pytest.approx(0.9)
    assert scratch.confident and not scratch.stain and stain.as_dict()["stain"]
    assert (scratch.x, scratch.w) == (5, 45)
    assert dm.confident[10, 5:50].all() and dm.uncertain[5:15, 5:15].sum() == 90
    assert dm.summary()["stain_regions"] == 2
    levels = dm.confidence_levels()
    assert levels[10, 30] == round(0.9 * 255) and 0 < levels[6, 6] < round(0.75 * 255)
    assert (levels > 0).sum() == flagged.sum()
    plain = damage_map(flagged, np.where(flagged, 0.9, 0.0), 0.75)
    assert len(plain.regions) == 1 and plain.confident.sum() == flagged.sum()


def test_analysis_marks_what_the_stain_pass_alone_flags():
    class Constant(DamageNet):
        def __init__(self, outputs, logit):
            super().__init__(4, 3, outputs)
            self.logit = logit

        def forward(self, x):
            out = torch.full((x.shape[0], self.head.out_channels, *x.shape[2:]), -5.0)
            out[..., : x.shape[2] // 2, :] = self.logit  # top half
            return out

    img = scan(300, 400)
    net, stain = Constant(2, -5.0).eval(), Constant(1, 5.0).eval()  # only the stain pass flags
    dm = analyse_damage(img, method="net", net=net, stain=stain)
    assert dm.mask[:140].all() and not dm.mask[160:].any()
    assert [r.stain for r in dm.regions] == [True] and not dm.confident.any()
    both = analyse_damage(img, method="net", net=Constant(2, 5.0).eval(), stain=stain)
    assert [r.stain for r in both.regions] == [False] and both.confident[:140].all()
    assert not analyse_damage(img, "scratches", method="net", net=net, stain=stain).mask.any()


def test_the_stain_pass_sees_the_photo_at_its_own_size():
    stain = Spy(4, 3, outputs=1).eval()
    seen = stain.seen
    for h, w in ((1024, 1536), (96, 128)):  # a scan at the working size, a small photo
        seen.clear()
        assert stain_probability(scan(h, w), stain).shape == (h, w)
        m = stain.multiple  # the tiled inference pads to it
        assert seen == [(STAIN_SIZE, -(-round(STAIN_SIZE * w / h) // m) * m)]


def test_training_a_stain_pass(tmp_path: Path):
    photos = [tmp_path / "p.png"]
    cv2.imwrite(str(photos[0]), scan(200, 260)[..., ::-1])
    opts = dict(steps=1, batch=2, crop=32, width=4, synth="stain")
    net = train_detector(photos, tmp_path / "run", **opts)
    assert net.head.out_channels == 1
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["outputs"] == 1
    save_detector(DamageNet(4, 3), tmp_path / "rel", {"width": 4})
    with pytest.raises(ValueError, match="starts fresh"):
        train_detector(photos, tmp_path / "r2", init=tmp_path / "rel", **opts)


def test_resuming_a_detector_run_with_another_schedule_is_refused(tmp_path: Path):
    """The one-cycle schedule is restored from last.pt: a new steps or lr would not apply."""
    photos = [tmp_path / "p.png"]
    cv2.imwrite(str(photos[0]), scan(200, 260)[..., ::-1])
    opts = dict(batch=2, crop=32, width=4, synth="scan", save_every=1)
    train_detector(photos, tmp_path / "run", steps=3, stop_at=1, **opts)
    for other in (dict(steps=4), dict(steps=3, lr=1e-3)):
        with pytest.raises(ValueError, match="holds a run of 3 steps at lr 0.002"):
            train_detector(photos, tmp_path / "run", **(opts | other))
    train_detector(photos, tmp_path / "run", steps=3, **opts)  # the same schedule resumes
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["step"] == 3


# ----------------------------------------------------------------------------- deeper net


def test_deeper_damage_net_and_release_round_trip(tmp_path: Path):
    net = DamageNet(4, depth=4)
    assert net.multiple == 8
    assert net(torch.rand(1, 3, 32, 48)).shape == (1, 2, 32, 48)
    # odd sizes are padded to a multiple of 8 by the tiled inference
    rgb = scan(50, 70)
    assert net_probabilities(rgb, net.eval()).shape == (50, 70, 2)
    save_detector(net, tmp_path, {"width": 4, "depth": 4})
    loaded, info = load_detector(tmp_path)
    assert loaded.depth == 4 and info["depth"] == 4
    # the 3-scale release's names are kept, so its weights load into DamageNet(w, 3)
    assert "up2.0.weight" in DamageNet(4, 3).state_dict() and "enc3.0.weight" in net.state_dict()
    with pytest.raises(ValueError, match="depth"):
        DamageNet(4, depth=1)


def test_training_warm_start_keeps_matching_layers(tmp_path: Path):
    torch.manual_seed(1)
    old = DamageNet(4, 3)
    save_detector(old, tmp_path / "old", {"width": 4, "depth": 3})
    photos = [tmp_path / "p.png"]
    cv2.imwrite(str(photos[0]), scan(200, 260)[..., ::-1])
    net = train_detector(
        photos,
        tmp_path / "run",
        steps=1,
        batch=2,
        crop=32,
        width=4,
        depth=4,
        synth="scan",
        init=tmp_path / "old",
        lr=1e-9,
    )
    # enc1 came from the old release (lr ~0: unchanged); enc4 is new
    assert torch.allclose(net.enc1[0].weight, old.enc1[0].weight.half().float(), atol=1e-6)
    with pytest.raises(ValueError, match="synth"):
        train_detector(photos, tmp_path / "r2", steps=1, synth="fancy")


def test_mixed_training_batch_is_half_first_release_half_scan_damage():
    small, big = [scan(256, 300)], [scan(512, 600)]
    x, y = mixed_training_batch(small, big, np.random.default_rng(5), 5, 48)
    rng = np.random.default_rng(5)
    xa, ya = training_batch(small, rng, 2, 48)
    xb, yb = scan_training_batch(big, rng, 3, 48)
    assert x.shape == (5, 3, 48, 48) and y.shape == (5, 2, 48, 48)
    assert torch.equal(x, torch.cat([xa, xb])) and torch.equal(y, torch.cat([ya, yb]))


def test_kind_odds_choose_the_damage_of_scan_training_crops():
    photos = [scan(512, 600)]
    none = {k: 0.0 for k in DAMAGE_TYPES}
    _, y = scan_training_batch(photos, np.random.default_rng(2), 6, 64, kind_odds=none)
    assert y.sum() == 0
    only_hair = {**none, "hair": 1.0}
    _, y = scan_training_batch(photos, np.random.default_rng(2), 8, 64, kind_odds=only_hair)
    assert y[:, 0].sum() > 0 and y[:, 1].sum() == 0  # hairs are line-like
    with pytest.raises(ValueError, match="unknown damage types"):
        scan_training_batch(photos, np.random.default_rng(2), 1, 64, kind_odds={"mold": 0.5})


def _flags_everything(flag: bool) -> DamageNet:
    net = DamageNet(4, 3)
    for prm in net.parameters():
        torch.nn.init.zeros_(prm)
    torch.nn.init.constant_(net.head.bias, 20.0 if flag else -20.0)
    return net


def test_false_alarm_spots_are_where_a_detector_flags_clean_photos():
    photos = [scan(120, 160), scan(100, 200)]
    rng = np.random.default_rng(0)
    spots = false_alarm_spots(_flags_everything(True), photos, rng, short_side=96, per_photo=5)
    assert spots.shape == (10, 3) and spots.dtype == np.int64
    assert sorted(set(spots[:, 0].tolist())) == [0, 1]
    for i, y, x in spots:  # in the photo's own pixels, not the upscaled ones
        assert 0 <= y < photos[i].shape[0] and 0 <= x < photos[i].shape[1]
    quiet = false_alarm_spots(_flags_everything(False), photos, rng, short_side=96)
    assert quiet.shape == (0, 3)
    # one in `every` flagged pixels: the 96x128 and 96x192 upscaled photos give 192 and 288
    sparse = false_alarm_spots(_flags_everything(True), photos, rng, 96, per_photo=250, every=64)
    assert np.bincount(sparse[:, 0]).tolist() == [192, 250]


def test_scan_training_crops_centre_on_mined_spots():
    photo = np.zeros((512, 512, 3), np.uint8)
    photo[400:420, 60:80] = 255  # the "false alarm": far from most random crops
    none = {k: 0.0 for k in DAMAGE_TYPES}
    spots = np.array([[0, 410, 70]])
    opts = {"kind_odds": none, "spots": spots}
    x, _ = scan_training_batch([photo], np.random.default_rng(1), 6, 64, spot_odds=1.0, **opts)
    assert all(float(xi.max()) > 0.9 for xi in x)  # every crop holds the white square
    x, _ = scan_training_batch([photo], np.random.default_rng(1), 6, 64, spot_odds=0.0, **opts)
    assert sum(float(xi.max()) > 0.9 for xi in x) < 6


def test_training_with_hard_negatives_mines_once(tmp_path: Path):
    save_detector(_flags_everything(True), tmp_path / "miner", {"width": 4, "depth": 3})
    photos = [tmp_path / "p.png"]
    cv2.imwrite(str(photos[0]), scan(200, 260)[..., ::-1])
    opts = {"batch": 2, "crop": 32, "width": 4, "synth": "scan"}
    train_detector(photos, tmp_path / "run", steps=1, hard_negatives=tmp_path / "miner", **opts)
    spots = np.load(tmp_path / "run" / "hard_spots.npy")
    assert spots.shape == (64, 3) and (spots[:, 0] == 0).all()
    photos.append(tmp_path / "q.png")  # a calibration photo: never mined
    cv2.imwrite(str(photos[1]), scan(200, 260)[..., ::-1])
    miner = tmp_path / "miner"
    train_detector(photos, tmp_path / "r3", 1, hard_negatives=miner, hard_skip=photos[1:], **opts)
    assert (np.load(tmp_path / "r3" / "hard_spots.npy")[:, 0] == 0).all()
    train_detector(photos, tmp_path / "r4", 1, hard_negatives=miner, hard_skip=photos[:1], **opts)
    assert (np.load(tmp_path / "r4" / "hard_spots.npy")[:, 0] == 1).all()  # its index in files
    with pytest.raises(ValueError, match="hard_negatives"):
        train_detector(photos, tmp_path / "r2", steps=1, hard_negatives="x", hard_odds=0, **opts)


def test_dust_density_multiplies_the_specks():
    clean = scan()
    area = [
        np.mean(
            [
                render_damage(
                    clean, np.random.default_rng(s), ("dust",), dust_density=d
                ).mask.mean()
                for s in range(4)
            ]
        )
        for d in (1.0, 4.0)
    ]
    assert area[1] > 2.5 * area[0] > 0


# ----------------------------------------------------------------------------- regions


def test_damage_map_groups_regions_with_their_mean_probability():
    prob = np.zeros((40, 60), np.float32)
    prob[5:10, 5:30] = 0.9  # a confident scratch
    prob[20:24, 40:44] = 0.55  # an uncertain speck
    flagged = prob >= 0.5
    dm = damage_map(flagged, prob, confident_at=0.75)
    assert len(dm.regions) == 2
    by_area = sorted(dm.regions, key=lambda r: r.area)
    speck, scratch = by_area
    assert scratch.area == 125 and scratch.confidence == pytest.approx(0.9)
    assert scratch.confident and not speck.confident
    assert (speck.x, speck.y, speck.w, speck.h) == (40, 20, 4, 4)
    assert np.array_equal(dm.confident, prob >= 0.75)
    assert np.array_equal(dm.uncertain, (prob > 0.5) & (prob < 0.75))
    assert not (dm.confident & dm.uncertain).any()
    assert np.array_equal(dm.confident | dm.uncertain, dm.mask)
    assert dm.confidence[7, 7] == pytest.approx(0.9) and dm.confidence[0, 0] == 0
    s = dm.summary()
    assert (s["regions"], s["confident_regions"], s["uncertain_regions"]) == (2, 1, 1)
    assert scratch.as_dict()["bbox"] == [5, 5, 25, 5]


def test_analyse_damage_matches_detect_damage_and_checks_confident_at():
    img = scan(96, 96).copy()
    cv2.line(img, (5, 10), (90, 60), (250, 250, 250), 2)
    dm = analyse_damage(img, method="classical")
    assert np.array_equal(dm.mask, detect_damage(img, method="classical"))
    # the classical detector has no probabilities: all its regions are confident
    assert all(r.confident and r.confidence == 1.0 for r in dm.regions)
    torch.manual_seed(0)
    net = DamageNet(4, 3).eval()
    dn = analyse_damage(img, method="net", net=net, confident_at=0.0)
    assert np.array_equal(dn.confident, dn.mask)
    with pytest.raises(EdgefillError, match="confident_at must be a number in"):
        analyse_damage(img, confident_at=1.5)


def test_analyse_damage_on_a_large_photo_has_photo_sized_labels():
    img = scan(300, 420)
    img[100:103, 20:400] = 250
    dm = analyse_damage(img, method="classical", work_size=150)
    assert dm.mask.shape == dm.labels.shape == (300, 420)
    assert dm.mask[101, 50:380].mean() > 0.8
    assert sum(r.area for r in dm.regions) == int(dm.mask.sum())


def test_small_photos_are_analysed_at_the_release_min_size():
    net = Spy(4, 3).eval()
    seen = net.seen
    img = scan(60, 80)
    prob, _ = damage_probability(img, net=net, min_size=120)
    m = 2 * CONTEXT_MARGIN  # photos under SMALL_PHOTO px get a mirrored margin
    assert prob.shape == (60, 80) and seen == [(120 + m, 160 + m)]
    seen.clear()
    assert damage_probability(img, net=net)[0].shape == (60, 80) and seen == [(60 + m, 80 + m)]
    dm = analyse_damage(img, method="net", net=net, min_size=120)
    assert dm.mask.shape == (60, 80) and seen[-1] == (120 + m, 160 + m)


def test_bench_detect_tells_wide_masks_from_false_alarms_far_away():
    truth = np.zeros((20, 20), bool)
    truth[10, 5:15] = True  # a one-pixel hair
    near = load_repo_script("benchmarks/bench_detect.py").near_damage(truth)
    assert near[7:14, 2:18].all() and near.sum() == 7 * 16  # 3 px around it, a square reach
    assert not near[6].any() and not near[10, :2].any()


def test_bench_detect_release_data_note_comes_from_the_run(tmp_path):
    bench = load_repo_script("benchmarks/bench_detect.py")
    with pytest.raises(SystemExit, match="--data-note"):
        bench.data_note(tmp_path)  # a run without data.json: the exporter must say it
    info = {"photo_folders": ["a/photos", "b/more"], "synth": "stain"}
    (tmp_path / bench.RUN_DATA).write_text(json.dumps(info))
    note = bench.data_note(tmp_path)
    assert note.startswith("water stains") and note.endswith("of a/photos and b/more")


def test_bench_detect_reads_kind_odds_and_refuses_bad_ones():
    import argparse

    bench = load_repo_script("benchmarks/bench_detect.py")
    assert bench.parse_odds("hair=0.6") == ("hair", 0.6)
    for bad in ("hair", "hair=2", "mold=0.5", "dust=x"):
        with pytest.raises(argparse.ArgumentTypeError, match="KIND=ODDS"):
            bench.parse_odds(bad)
