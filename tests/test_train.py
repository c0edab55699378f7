"""Training: step isolation, every stage, exact resume, non-finite losses, checkpoints, export, CLI.

Tiny networks (width 8, one block) on 32 px crops of synthetic photos, a few steps each.
"""

from __future__ import annotations

import csv
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from train_utils import make_photos, random_vgg, state_tensors, tiny_config

from edgefill import losses
from edgefill.checkpoint import load_checkpoint
from edgefill.cli import main
from edgefill.data import collate
from edgefill.errors import EdgefillError
from edgefill.train import Trainer, _total, latest_checkpoint, lr_factor


@pytest.fixture(scope="module", autouse=True)
def no_vgg_cache(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """An empty weights cache: tests never see a VGG file unless they make one."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGEFILL_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(autouse=True)
def restore_threads():  # noqa: ANN201  train.threads=1 sets torch's global thread count
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_vgg(tmp_path_factory.mktemp("vgg") / "vgg.safetensors")


def make_trainer(photos: Path, out: Path, stage: str, *overrides: str, **kw) -> Trainer:  # noqa: ANN003
    return Trainer(tiny_config(*overrides), stage, str(photos), out, show_progress=False, **kw)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def edge_run(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "edge"
    make_trainer(photos, out, "edge").fit(max_steps=4)
    return out


@pytest.fixture(scope="module")
def joint_run(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "joint"
    make_trainer(photos, out, "joint").fit(max_steps=4)
    return out


def params(modules: list[torch.nn.Module]) -> list[torch.Tensor]:
    return [p.detach().clone() for m in modules for p in m.parameters()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def batch_of(t: Trainer) -> dict[str, torch.Tensor]:
    return collate([t.dataset[(i, 100 + i)] for i in range(2)])


# ----------------------------------------------------------------------------- one iteration


def test_generator_and_discriminator_steps_touch_only_their_parameters(
    photos: Path, tmp_path: Path
) -> None:
    t = make_trainer(photos, tmp_path / "run", "joint")
    gs = [p.g for p in t.pairs.values()]
    ds = [p.d for p in t.pairs.values()]
    g0, d0 = params(gs), params(ds)
    terms, d_inputs = t.generator_losses(batch_of(t))
    assert set(terms) == {"edge/g_adv", "edge/fm", "inpaint/g_adv", "inpaint/l1"}
    assert t.update(_total(terms), "g")
    g1, d1 = params(gs), params(ds)
    assert same(d0, d1), "the generator step changed a discriminator parameter"
    n0 = len(params([gs[0]]))
    assert not same(g1[:n0], g0[:n0]) and not same(g1[n0:], g0[n0:])  # both generators moved
    d_terms = t.discriminator_losses(d_inputs)
    assert set(d_terms) == {"edge/d", "inpaint/d"}
    assert t.update(_total(d_terms), "d")
    assert same(g1, params(gs)), "the discriminator step changed a generator parameter"
    n1 = len(params([ds[0]]))
    assert not same(params([ds[0]]), d1[:n1]) and not same(params([ds[1]]), d1[n1:])


def losses_and_output(
    t: Trainer, which: str
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
    """The generator loss terms of one batch, the batch, and generator ``which``'s raw output."""
    seen: list[torch.Tensor] = []
    hook = t.pairs[which].g.register_forward_hook(lambda m, i, out: seen.append(out.detach()))
    batch = batch_of(t)
    terms, _ = t.generator_losses(batch)
    hook.remove()
    return terms, batch, seen[0]


def test_perceptual_style_and_tv_terms_are_added_when_on(
    photos: Path, tmp_path: Path, vgg_file: Path
) -> None:
    """Each weighted term is weight x its loss on the merged result, and the total sums them."""
    from edgefill.vgg import load_vgg16

    w = {"perceptual_weight": 0.3, "style_weight": 7.0, "tv_weight": 0.05}
    t = make_trainer(
        photos,
        tmp_path / "run",
        "inpaint",
        f"loss.vgg_weights={vgg_file}",
        *(f"loss.{k}={v}" for k, v in w.items()),
    )
    terms, batch, out = losses_and_output(t, "inpaint")
    assert set(terms) == {
        "inpaint/g_adv",
        "inpaint/l1",
        "inpaint/perceptual",
        "inpaint/style",
        "inpaint/tv",
    }
    image, mask = batch["image"], batch["mask"]
    merged = out * mask + image * (1 - mask)
    perceptual, style = losses.VGGLosses(load_vgg16(vgg_file))(merged, image)
    expected = {
        "inpaint/perceptual": w["perceptual_weight"] * perceptual,
        "inpaint/style": w["style_weight"] * style,
        "inpaint/tv": w["tv_weight"] * losses.total_variation(merged),
    }
    for k, v in expected.items():
        assert float(v) > 0, k
        torch.testing.assert_close(terms[k].detach(), v, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(_total(terms), sum(terms.values()))
    # Off again: the terms are gone, not zero-weighted passengers.
    off = make_trainer(photos, tmp_path / "off", "inpaint", "loss.tv_weight=0")
    assert not {"inpaint/perceptual", "inpaint/style", "inpaint/tv"} & set(
        off.generator_losses(batch_of(off))[0]
    )


def test_gradient_term_is_added_when_on(photos: Path, tmp_path: Path) -> None:
    """loss.gradient_weight adds weight x hole_gradient_l1 of G2's output; off, it is absent."""
    t = make_trainer(photos, tmp_path / "run", "inpaint", "loss.gradient_weight=2.5")
    terms, batch, out = losses_and_output(t, "inpaint")
    expected = 2.5 * losses.hole_gradient_l1(out, batch["image"], batch["mask"])
    assert float(expected) > 0
    torch.testing.assert_close(terms["inpaint/gradient"].detach(), expected, rtol=1e-5, atol=1e-7)
    off = make_trainer(photos, tmp_path / "off", "inpaint")
    assert "inpaint/gradient" not in off.generator_losses(batch_of(off))[0]


def test_l1_term_weighs_the_hole_by_l1_hole_weight(photos: Path, tmp_path: Path) -> None:
    """G2's L1 term passes loss.l1_hole_weight on: at 0 it is the known region's L1 alone."""
    t = make_trainer(photos, tmp_path / "run", "inpaint", "loss.l1_hole_weight=0")
    terms, batch, out = losses_and_output(t, "inpaint")
    image, mask = batch["image"], batch["mask"]
    known_only = (out - image).abs().mul(1 - mask).mean() / mask.mean()
    torch.testing.assert_close(terms["inpaint/l1"].detach(), known_only, rtol=1e-5, atol=1e-7)
    assert float(losses.masked_l1(out, image, mask)) > float(known_only)


@pytest.mark.parametrize("hole_only", [False, True])
def test_inpaint_adv_hole_judges_the_merged_result_on_hole_patches(
    photos: Path, tmp_path: Path, hole_only: bool
) -> None:
    """loss.inpaint_adv_hole: D2 sees the result with the photo outside the hole, and only the
    patches holding hole pixels count as fake (and in G2's term); off, the reference's raw output."""
    t = make_trainer(photos, tmp_path / "run", "inpaint", f"loss.inpaint_adv_hole={hole_only}")
    pair = t.pairs["inpaint"]
    seen: list[torch.Tensor] = []  # G2's output, then D2's logits in each of the two passes
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(o)) for m in (pair.g, pair.d)]
    batch = batch_of(t)
    terms, d_inputs = t.generator_losses(batch)
    d_terms = t.discriminator_losses(d_inputs)
    for h in hooks:
        h.remove()
    image, mask, out = batch["image"], batch["mask"], seen[0].detach().float()
    real, fake, hole = d_inputs["inpaint"]
    assert torch.equal(real, image)
    if not hole_only:
        assert hole is None and torch.equal(fake, out)
        return
    assert torch.equal(hole, mask)
    torch.testing.assert_close(fake.detach(), out * mask + image * (1 - mask))
    g_logits, d_logits = seen[1][0].detach().float(), seen[2][0].detach().float()
    cells = losses.hole_patches(mask, g_logits)
    assert 0 < cells.mean() < 1  # the test photos' holes leave some patches whole
    lc = t.cfg.loss
    expected = lc.inpaint_adv_weight * losses.adversarial_g(lc.gan_loss, g_logits, cells)
    torch.testing.assert_close(terms["inpaint/g_adv"].detach(), expected)
    want = losses.adversarial_d(lc.gan_loss, *d_logits.chunk(2), cells)
    torch.testing.assert_close(d_terms["inpaint/d"].detach(), want)


def test_edge_discriminator_input_is_gray_then_edges(photos: Path, tmp_path: Path) -> None:
    """D1 sees (gray, edges) like the reference's EdgeModel, so its released D1 fine-tunes."""
    t = make_trainer(photos, tmp_path / "run", "edge")
    batch = batch_of(t)
    _, d_inputs = t.generator_losses(batch)
    real, fake, hole = d_inputs["edge"]
    assert hole is None  # every patch of a predicted edge map is fake
    assert torch.equal(real, torch.cat([batch["gray"], batch["edges_full"]], 1))
    assert torch.equal(fake[:, :1], batch["gray"]) and not torch.equal(fake, real)


def test_edge_bce_term_is_added_when_on(photos: Path, tmp_path: Path) -> None:
    t = make_trainer(photos, tmp_path / "run", "edge", "loss.edge_bce_weight=2.5")
    terms, batch, out = losses_and_output(t, "edge")
    assert set(terms) == {"edge/g_adv", "edge/fm", "edge/bce"}
    expected = 2.5 * losses.balanced_edge_bce(out, batch["edges_full"], batch["mask"])
    assert float(expected) > 0
    torch.testing.assert_close(terms["edge/bce"].detach(), expected)
    off = make_trainer(photos, tmp_path / "off", "edge")
    assert "edge/bce" not in off.generator_losses(batch_of(off))[0]


def test_joint_trains_edge_generator_end_to_end(photos: Path, tmp_path: Path) -> None:
    # With the edge losses off, G1 still learns: G2's losses reach it through the edges.
    t = make_trainer(
        photos, tmp_path / "run", "joint", "loss.edge_adv_weight=0", "loss.fm_weight=0"
    )
    g1 = t.pairs["edge"].g
    before = params([g1])
    terms, _ = t.generator_losses(batch_of(t))
    t.update(_total(terms), "g")
    assert not same(before, params([g1]))


def test_inpaint_on_predicted_keeps_edge_generator_frozen(
    photos: Path, tmp_path: Path, edge_run: Path
) -> None:
    t = make_trainer(photos, tmp_path / "run", "inpaint-on-predicted", edge_weights=str(edge_run))
    assert set(t.pairs) == {"inpaint"} and t.frozen_edge is not None
    ema = load_checkpoint(latest_checkpoint(edge_run))["pairs"]["edge"]["ema"]
    assert all(torch.equal(v, ema[k]) for k, v in t.frozen_edge.state_dict().items())
    before = params([t.frozen_edge])
    t.fit(max_steps=2)
    assert same(before, params([t.frozen_edge]))
    assert (tmp_path / "run" / "samples" / "step_00000002.png").is_file()
    with pytest.raises(EdgefillError, match="needs --edge-weights"):
        make_trainer(photos, tmp_path / "other", "inpaint-on-predicted")


# ----------------------------------------------------------------------------- whole runs


def test_train_log_records_the_learning_rate_of_the_schedule(photos: Path, tmp_path: Path) -> None:
    sched = ("train.lr=0.001", "train.lr_decay_steps=4", "train.lr_min_ratio=0.1")
    make_trainer(photos, tmp_path / "run", "edge", *sched).fit(max_steps=4)
    rows = read_csv(tmp_path / "run" / "train_log.csv")
    logged = [float(r["lr"]) for r in rows]
    assert logged == pytest.approx(
        [1e-3 * lr_factor(int(r["step"]), 4, 0.1) for r in rows], rel=1e-3
    )
    assert logged[-1] == pytest.approx(1e-4)  # the cosine has reached its floor


def test_resume_takes_the_learning_rate_of_its_config(photos: Path, tmp_path: Path) -> None:
    """--resume --set train.lr=... trains on at the new rate (the checkpoint's saved one used to
    win silently), on the schedule of the new config, for G and D (d2g_lr) alike."""
    out = tmp_path / "run"
    make_trainer(photos, out, "edge", "train.lr=0.001").fit(max_steps=2)
    new = (
        "train.lr=0.0003",
        "train.d2g_lr=0.5",
        "train.lr_decay_steps=4",
        "train.lr_min_ratio=0.1",
    )
    resumed = make_trainer(photos, out, "edge", *new)
    resumed.fit(resume=True, max_steps=4)
    rows = read_csv(out / "train_log.csv")
    assert [float(r["lr"]) for r in rows[2:]] == pytest.approx(
        [3e-4 * lr_factor(step, 4, 0.1) for step in (3, 4)], rel=1e-3
    )
    # 3e-4 * lr_factor(2, 4, 0.1) = 3e-4 * 0.55: the rate the resumed run starts at
    assert "at step 2 (learning rate 0.000165)" in (out / "events.log").read_text()
    pair = resumed.pairs["edge"]
    assert pair.opt_g.param_groups[0]["lr"] == pytest.approx(3e-4 * lr_factor(4, 4, 0.1))
    assert pair.opt_d.param_groups[0]["lr"] == pytest.approx(1.5e-4 * lr_factor(4, 4, 0.1))


@pytest.mark.parametrize("stage", ["edge", "inpaint", "joint"])
def test_stage_runs_and_writes_logs_samples_checkpoints(
    stage: str, photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    metrics = make_trainer(photos, out, stage, "train.keep_last=1").fit(max_steps=4)
    rows = read_csv(out / "train_log.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    cols = set(rows[0]) - {"step", "time", "img_per_s", "lr"}
    expected = {
        "edge": {"edge/g_adv", "edge/fm", "edge/d"},
        "inpaint": {"inpaint/g_adv", "inpaint/l1", "inpaint/d"},
    }
    expected["joint"] = expected["edge"] | expected["inpaint"]
    assert cols == expected[stage]
    assert all(math.isfinite(float(r[c])) for r in rows for c in cols)
    val = read_csv(out / "val_log.csv")
    assert [int(r["step"]) for r in val] == [2, 4]
    assert ("psnr" in metrics) == (stage != "edge") and ("edge_f1" in metrics) == (
        stage != "inpaint"
    )
    for step in (2, 4):
        grid = Image.open(out / "samples" / f"step_{step:08d}.png")
        assert grid.size == (5 * 32, 32)  # one validation photo: input, mask, edges, result, truth
    ckpts = sorted(p.name for p in (out / "checkpoints").glob("*.pt"))
    assert ckpts[-1] == "step_00000004.pt" and "best.pt" in ckpts and len(ckpts) == 2
    assert (out / "config.yaml").is_file()


def test_resume_equals_uninterrupted(photos: Path, tmp_path: Path, vgg_file: Path) -> None:
    """4 steps in one go == 2 steps, then --resume to 4 (with a DataLoader worker): bit-identical.

    Joint stage with every loss on (random VGG for perceptual/style) and EMA."""
    opts = (
        f"loss.vgg_weights={vgg_file}",
        "loss.perceptual_weight=0.1",
        "loss.style_weight=250",
        "loss.tv_weight=0.1",
        "train.lr_decay_steps=3",
    )
    straight = tmp_path / "straight"
    make_trainer(photos, straight, "joint", *opts).fit(max_steps=4)
    parted = tmp_path / "parted"
    make_trainer(photos, parted, "joint", *opts, "data.num_workers=1").fit(max_steps=2)
    resumed = make_trainer(photos, parted, "joint", *opts, "data.num_workers=1")
    resumed.fit(resume=True, max_steps=4)
    assert resumed.step == 4
    a = load_checkpoint(straight / "checkpoints" / "step_00000004.pt")
    b = load_checkpoint(parted / "checkpoints" / "step_00000004.pt")
    ta, tb = state_tensors(a), state_tensors(b)
    assert ta.keys() == tb.keys()
    assert any(".ema." in k for k in ta) and any(".opt_g.state." in k for k in ta)
    diff = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert not diff, f"differs after resume: {diff[:5]}"
    assert a["pairs"]["inpaint"]["sched_g"] == b["pairs"]["inpaint"]["sched_g"]
    la, lb = read_csv(straight / "train_log.csv"), read_csv(parted / "train_log.csv")
    strip = [{k: v for k, v in r.items() if k not in ("time", "img_per_s")} for r in la]
    assert strip == [{k: v for k, v in r.items() if k not in ("time", "img_per_s")} for r in lb]
    assert "resumed from step_00000002.pt" in (parted / "events.log").read_text()


def test_resume_may_change_the_copy_guide_weight(photos: Path, tmp_path: Path) -> None:
    """model.edge_guide weighs the copy's edge guide, not an architecture: a run may branch into
    another weight (the one a release infers with) on --resume."""
    out = tmp_path / "run"
    make_trainer(photos, out, "edge").fit(max_steps=1)
    resumed = make_trainer(photos, out, "edge", "model.edge_guide=0.3")
    resumed.fit(resume=True, max_steps=2)
    assert resumed.step == 2
    assert "edge_guide: 0.3" in (out / "config.yaml").read_text()


def test_resume_refuses_a_different_run(photos: Path, edge_run: Path, tmp_path: Path) -> None:
    with pytest.raises(EdgefillError, match="already holds a run"):
        make_trainer(photos, edge_run, "edge").fit(max_steps=5)
    with pytest.raises(EdgefillError, match="was stage 'edge'"):
        make_trainer(photos, edge_run, "joint").fit(resume=True, max_steps=5)
    with pytest.raises(EdgefillError, match="architecture"):
        make_trainer(photos, edge_run, "edge", "model.width=4").fit(resume=True, max_steps=5)
    with pytest.raises(EdgefillError, match="no checkpoint"):
        make_trainer(photos, tmp_path / "empty", "edge").fit(resume=True)


def test_keep_last_and_best_by_validation(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    overrides = ("train.keep_last=2", "train.save_every=1", "train.val_every=1", "train.lr=1e-3")
    make_trainer(photos, out, "inpaint", *overrides).fit(max_steps=5)
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == ["best.pt", "step_00000004.pt", "step_00000005.pt"]
    val = read_csv(out / "val_log.csv")
    scores = [float(r["psnr"]) for r in val]
    best_step = int(val[int(np.argmax(scores))]["step"])
    best = load_checkpoint(out / "checkpoints" / "best.pt")
    assert best["step"] == best_step and best["best"] == pytest.approx(max(scores), abs=1e-5)


def test_nonfinite_loss_skips_logs_and_stops(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    real_l1 = losses.masked_l1

    def flaky(*args: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        value = real_l1(*args)
        return value * math.nan if calls["n"] > 2 else value

    monkeypatch.setattr(losses, "masked_l1", flaky)
    out = tmp_path / "run"
    t = make_trainer(
        photos, out, "inpaint", "train.max_nonfinite=3", "train.save_every=1", "train.keep_last=0"
    )
    with pytest.raises(EdgefillError, match="3 consecutive steps with non-finite"):
        t.fit(max_steps=10)
    assert t.step == 4  # steps 3 and 4 skipped, the third bad one (step 5) stopped the run
    events = [ln for ln in (out / "events.log").read_text().splitlines() if "non-finite" in ln]
    assert len(events) == 3 and "inpaint/l1" in events[0] and "step skipped" in events[0]
    rows = read_csv(out / "train_log.csv")
    assert [r["inpaint/l1"] for r in rows[2:]] == ["nan", "nan"]
    assert latest_checkpoint(out).name == "step_00000004.pt"
    good, last = (load_checkpoint(out / "checkpoints" / f"step_{s:08d}.pt") for s in (2, 4))
    tg, tl = state_tensors(good["pairs"]), state_tensors(last["pairs"])
    # No weight moved (spectral norm's power-iteration vectors _u/_v still advance: the frozen
    # discriminator runs in train mode during the generator forward, as in the reference).
    moved = [k for k in tg if not torch.equal(tg[k], tl[k]) and not k.endswith(("_u", "_v"))]
    assert not moved, moved
    assert all(torch.isfinite(v).all() for v in tl.values() if v.is_floating_point())


def test_missing_vgg_weights_is_a_clear_error(photos: Path, tmp_path: Path) -> None:
    with pytest.raises(EdgefillError, match="fetch-vgg.*perceptual_weight=0"):
        make_trainer(
            photos, tmp_path / "run", "inpaint", "loss.perceptual_weight=0.1", "loss.style_weight=1"
        )
    # The edge stage never needs them.
    make_trainer(photos, tmp_path / "run", "edge", "loss.perceptual_weight=0.1")


def test_tensorboard_logging_when_installed(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, str]] = []

    class Writer:
        def __init__(self, logdir: str, purge_step: int | None = None) -> None:
            calls.append(("init", logdir))

        def add_scalar(self, tag: str, value: float, step: int) -> None:
            calls.append(("scalar", tag))

        def add_image(self, tag: str, image: torch.Tensor, step: int) -> None:
            calls.append(("image", tag))

        def close(self) -> None:
            calls.append(("close", ""))

    monkeypatch.setitem(
        sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=Writer)
    )
    make_trainer(photos, tmp_path / "run", "inpaint").fit(max_steps=2)
    assert calls[0] == ("init", str(tmp_path / "run" / "tensorboard"))
    assert ("scalar", "train/inpaint/l1") in calls and ("scalar", "val/psnr") in calls
    assert ("scalar", "train/lr") in calls
    assert ("image", "samples") in calls and calls[-1] == ("close", "")


# ----------------------------------------------------------------------------- export


@pytest.mark.parametrize("fp32", [False, True])
def test_export_loads_in_inpainter(joint_run: Path, tmp_path: Path, fp32: bool) -> None:
    from edgefill.pipeline import Inpainter

    out = tmp_path / "release"
    assert main(["export", str(joint_run), "-o", str(out)] + (["--fp32"] if fp32 else [])) == 0
    inp = Inpainter.from_pretrained(out)
    ck = load_checkpoint(joint_run / "checkpoints" / "best.pt")
    ema = ck["pairs"]["inpaint"]["ema"]
    loaded = inp.g2.state_dict()
    for k, v in ema.items():
        assert torch.equal(loaded[k], v if fp32 else v.half().float()), k
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)
    hole = np.zeros((40, 36), bool)
    hole[10:20, 8:30] = True
    result = inp(photo, hole.astype(np.uint8) * 255)
    assert result.image.shape == photo.shape
    assert np.array_equal(result.image[~hole], photo[~hole])


def test_export_needs_both_generators(
    photos: Path, tmp_path: Path, edge_run: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "inpaint"
    make_trainer(photos, run, "inpaint").fit(max_steps=2)
    assert main(["export", str(run), "-o", str(tmp_path / "r1")]) == 2
    assert "--edge-from" in capsys.readouterr().err
    assert main(["export", str(run), "-o", str(tmp_path / "r2"), "--edge-from", str(edge_run)]) == 0
    from edgefill.pipeline import Inpainter

    Inpainter.from_pretrained(tmp_path / "r2")


def _exemplar_base(folder: Path, width: int = 8) -> tuple[Path, dict[str, torch.Tensor]]:
    """A tiny release as the shipped one is made: an exemplar G2, inference settings other than
    training's, and a G2 for drawn edges of its own (returned)."""
    from edgefill.checkpoint import save_release
    from edgefill.config import ModelConfig
    from edgefill.networks import EdgeGenerator, InpaintGenerator

    cfg = ModelConfig(width=width, edge_blocks=1, inpaint_blocks=1, hole_fill="telea",
                      exemplar=True, edge_guide=0.3, copy_detail=0.35, copy_detail_sigma=4.0,
                      drawn_copy_detail=0.2)  # fmt: skip
    g2, drawn = InpaintGenerator.from_config(cfg), InpaintGenerator.from_config(cfg)
    torch.nn.init.normal_(drawn.decoder[-1].weight, 0, 0.1)
    g1 = EdgeGenerator(width, 1).state_dict()
    save_release(folder, g1, g2.state_dict(), cfg, {}, True, drawn.state_dict())
    return folder, drawn.state_dict()


def test_export_with_base_keeps_what_the_release_chose_beyond_its_weights(
    photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from edgefill.checkpoint import DRAWN_FILE, read_release_config
    from edgefill.config import RELEASE_SETTINGS
    from edgefill.pipeline import Inpainter
    from edgefill.train import load_generator_from

    base, drawn = _exemplar_base(tmp_path / "base")
    run = tmp_path / "run"
    make_trainer(photos, run, "inpaint-on-predicted", "model.hole_fill=telea",
                 "model.exemplar=true", "model.edge_guide=1", edge_weights=str(base),
                 init=str(base)).fit(max_steps=1)  # fmt: skip
    # Without --base the release carries the run's training settings and no G2 for drawn edges.
    assert main(["export", str(run), "-o", str(tmp_path / "plain")]) == 0
    plain, plain_doc = read_release_config(tmp_path / "plain")
    assert (plain.edge_guide, plain.copy_detail) == (1.0, 0.0)
    assert not (tmp_path / "plain" / DRAWN_FILE).exists()
    note = capsys.readouterr().err  # says what it left behind, and where the run started
    assert "edge_guide 0.3 (here 1.0)" in note and "copy_detail 0.35 (here 0.0)" in note
    assert "G2 for drawn edges" in note and f"--base {base.resolve()} keeps them" in note
    assert plain_doc["init"] == str(base.resolve())
    resumed = make_trainer(photos, run, "inpaint-on-predicted", "model.hole_fill=telea",
                           "model.exemplar=true", "model.edge_guide=1", edge_weights=str(base))  # fmt: skip
    resumed.fit(resume=True, max_steps=2)  # without --init: the start is kept from the checkpoint
    assert load_checkpoint(latest_checkpoint(run))["init"] == str(base.resolve())

    out = tmp_path / "mine"
    assert main(["export", str(run), "-o", str(out), "--base", str(base)]) == 0
    assert "note" not in capsys.readouterr().err
    model, doc = read_release_config(out)
    base_model = read_release_config(base)[0]
    for key in RELEASE_SETTINGS:
        assert getattr(model, key) == getattr(base_model, key), key
    assert doc["base"] == str(base) and str(base) in doc["drawn_from"]
    inp = Inpainter.from_pretrained(out)
    for k, v in drawn.items():  # the base's G2 for drawn edges, with its own copy detail
        assert torch.equal(inp.g2_drawn.state_dict()[k], v.half().float()), k
    assert inp.g2_drawn.copy_detail == 0.2 and inp.g2.copy_detail == 0.35
    for k, v in load_generator_from(run, "inpaint").items():  # the run's G2, not the base's
        assert torch.equal(inp.g2.state_dict()[k], v.half().float()), k

    wider, _ = _exemplar_base(tmp_path / "wider", width=16)
    assert main(["export", str(run), "-o", str(tmp_path / "e1"), "--base", str(wider)]) == 2
    assert "architecture differs" in capsys.readouterr().err
    assert main(["export", str(run), "-o", str(tmp_path / "e2"), "--base", str(run)]) == 2
    assert "--base must be a release folder" in capsys.readouterr().err


def test_export_with_base_of_a_run_that_trained_the_g2_for_drawn_edges(
    photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """--init-drawn trains the base's G2 for drawn edges: --base puts it back in that place."""
    from edgefill.checkpoint import DRAWN_FILE, EDGE_FILE, INPAINT_FILE
    from edgefill.pipeline import Inpainter
    from edgefill.train import load_generator_from

    base, _ = _exemplar_base(tmp_path / "base")
    run = tmp_path / "drawn-run"
    make_trainer(photos, run, "inpaint", "model.hole_fill=telea", "model.exemplar=true",
                 init=str(base), init_drawn=True).fit(max_steps=1)  # fmt: skip
    assert main(["export", str(run), "-o", str(tmp_path / "alone"), "--edge-from", str(base)]) == 0
    assert "note" not in capsys.readouterr().err  # for attach-drawn, which keeps the settings
    out = tmp_path / "mine"
    assert main(["export", str(run), "-o", str(out), "--base", str(base)]) == 0
    for name in (EDGE_FILE, INPAINT_FILE):  # the base's G1 and G2
        assert (out / name).read_bytes() == (base / name).read_bytes(), name
    got = Inpainter.from_pretrained(out).g2_drawn.state_dict()
    for k, v in load_generator_from(run, "inpaint").items():  # the run's G2, for drawn edges
        assert torch.equal(got[k], v.half().float()), k
    assert (out / DRAWN_FILE).read_bytes() != (base / DRAWN_FILE).read_bytes()


def test_default_names_the_shipped_weights_for_the_training_commands(
    photos: Path, tmp_path: Path
) -> None:
    from train_utils import TINY

    from edgefill.checkpoint import DEFAULT_WEIGHTS, read_release_config
    from edgefill.cli import shipped_or
    from edgefill.train import load_generator_from

    assert shipped_or("default") == str(DEFAULT_WEIGHTS)
    assert shipped_or("weights/mine") == "weights/mine" and shipped_or(None) is None
    shipped = read_release_config(DEFAULT_WEIGHTS)[0]
    sets = TINY + [f"model.width={shipped.width}", f"model.edge_blocks={shipped.edge_blocks}"]
    out = tmp_path / "g1"
    argv = ["train", "--stage", "edge", "--data", str(photos), "--out", str(out),
            "--init", "default", "--max-steps", "0"]  # fmt: skip
    assert main(argv + [a for kv in sets for a in ("--set", kv)]) == 0
    trained = load_generator_from(out, "edge")
    for k, v in load_generator_from(DEFAULT_WEIGHTS, "edge").items():  # fp16 on disk either way
        assert torch.equal(trained[k], v), k


# ----------------------------------------------------------------------------- CLI and config


def test_cli_train_yaml_set_and_resume(
    photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from train_utils import TINY

    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text("train:\n  lr: 3.0e-4\nmodel:\n  width: 8\n")
    out = tmp_path / "run"
    sets = [a for s in TINY + ["train.lr_min_ratio=0.5"] for a in ("--set", s)]
    base = ["train", "--stage", "inpaint", "--data", str(photos), "--out", str(out)]
    assert main(base + ["--config", str(cfg_file), *sets, "--max-steps", "2"]) == 0
    saved = (out / "config.yaml").read_text()
    assert "lr: 0.0003" in saved and "lr_min_ratio: 0.5" in saved and "batch_size: 2" in saved
    # --resume without --config continues with the run's own config.yaml.
    assert main(base + ["--resume", "--max-steps", "3"]) == 0
    assert load_checkpoint(latest_checkpoint(out))["step"] == 3
    capsys.readouterr()


def test_cli_rejects_unknown_keys(
    photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    base = ["train", "--stage", "edge", "--data", str(photos), "--out", str(tmp_path / "run")]
    assert main(base + ["--set", "train.learning_rate=1"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key(s) in section 'train': learning_rate" in err
    assert "Traceback" not in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("trian:\n  lr: 1\n")
    assert main(base + ["--config", str(bad)]) == 2
    assert "unknown config key(s): trian" in capsys.readouterr().err
    assert main(base + ["--set", "train.batch_size=two"]) == 2
    assert "train.batch_size" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_shipped_configs_load_and_reference_is_the_defaults() -> None:
    from edgefill.config import Config, load_config

    root = Path(__file__).resolve().parents[1] / "configs"
    for f in sorted(root.glob("*.yaml")):
        load_config(f)
    assert load_config(root / "reference.yaml") == Config()


def test_telea_hole_fill_fine_tunes_from_a_white_run(
    photos: Path, joint_run: Path, tmp_path: Path
) -> None:
    from edgefill.pipeline import Inpainter

    out = tmp_path / "telea"
    t = make_trainer(
        photos, out, "inpaint-on-predicted", "model.hole_fill=telea",
        edge_weights=str(joint_run), init=str(joint_run),
    )  # fmt: skip
    g2 = t.pairs["inpaint"].g
    first = g2.encoder[1].weight
    assert first.shape[1] == 5 and torch.all(first[:, 4] == 0)  # the mask channel starts at zero
    white = load_checkpoint(latest_checkpoint(joint_run))["pairs"]["inpaint"]["ema"]
    assert torch.equal(first[:, :4], white["encoder.1.weight"])
    assert torch.all(g2.decoder[-1].weight == 0)  # starts as the Telea fill itself
    t.fit(max_steps=2)
    assert not torch.all(g2.decoder[-1].weight == 0)  # and learns a correction
    assert main(["export", str(out), "-o", str(tmp_path / "rel")]) == 0
    inp = Inpainter.from_pretrained(tmp_path / "rel")
    assert inp.config.hole_fill == "telea" and inp.g2.in_channels == 5


def _telea_release(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    """A tiny telea release (width 8, one block) whose G2 has a learned, non-zero correction."""
    from edgefill.checkpoint import save_release
    from edgefill.config import ModelConfig
    from edgefill.networks import EdgeGenerator, InpaintGenerator

    g2 = InpaintGenerator(8, 1, "telea")
    torch.nn.init.normal_(g2.decoder[-1].weight, 0, 0.1)
    telea = ModelConfig(width=8, edge_blocks=1, inpaint_blocks=1, hole_fill="telea")
    rel = save_release(tmp_path / "rel", EdgeGenerator(8, 1).state_dict(), g2.state_dict(), telea)
    return rel, g2


def test_patchmatch_g2_starts_from_a_telea_release_as_exactly_its_prefill(
    photos: Path, tmp_path: Path
) -> None:
    rel, g2 = _telea_release(tmp_path)
    t = make_trainer(
        photos, tmp_path / "pm", "inpaint-on-predicted", "model.hole_fill=patchmatch",
        edge_weights=str(rel), init=str(rel),
    )  # fmt: skip
    new = t.pairs["inpaint"].g
    assert torch.all(new.decoder[-1].weight == 0)  # the Telea correction is not carried over
    assert torch.equal(new.encoder[1].weight, g2.encoder[1].weight.half().float())
    # Same pre-fill: nothing is reset.
    t2 = make_trainer(
        photos, tmp_path / "te", "inpaint-on-predicted", "model.hole_fill=telea",
        edge_weights=str(rel), init=str(rel),
    )  # fmt: skip
    assert not torch.all(t2.pairs["inpaint"].g.decoder[-1].weight == 0)
    t.fit(max_steps=1)  # a training step runs on the PatchMatch-filled batches


def test_init_drawn_starts_g2_from_the_release_g2_for_drawn_edges(
    photos: Path, tmp_path: Path
) -> None:
    from edgefill.checkpoint import attach_drawn

    rel, own = _telea_release(tmp_path / "base")
    drawn_rel, drawn = _telea_release(tmp_path / "drawn")  # another random correction
    attach_drawn(rel, drawn_rel)

    def g2_start(**kw) -> torch.Tensor:  # noqa: ANN003
        t = make_trainer(photos, tmp_path / f"run{len(kw)}", "inpaint", "model.hole_fill=telea",
                         init=str(rel), **kw)  # fmt: skip
        return t.pairs["inpaint"].g.decoder[-1].weight

    assert torch.equal(g2_start(init_drawn=True), drawn.decoder[-1].weight.half().float())
    assert torch.equal(g2_start(), own.decoder[-1].weight.half().float())
    with pytest.raises(EdgefillError, match="no G2 for drawn edges"):
        make_trainer(photos, tmp_path / "e1", "inpaint", "model.hole_fill=telea",
                     init=str(drawn_rel), init_drawn=True)  # fmt: skip
    with pytest.raises(EdgefillError, match="needs --init"):
        make_trainer(photos, tmp_path / "e2", "inpaint", init_drawn=True)
    with pytest.raises(EdgefillError, match="needs --init"):
        make_trainer(photos, tmp_path / "e3", "edge", init=str(rel), init_drawn=True)
    code = main(["train", "--stage", "inpaint", "--data", str(photos), "--out", str(tmp_path / "c"),
                 "--init-drawn"])  # fmt: skip
    assert code == 2  # the CLI reports the error


def test_an_exemplar_g2_fine_tunes_from_a_telea_release_and_exports(
    photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from edgefill.checkpoint import attach_drawn
    from edgefill.networks import EXEMPLAR_START_WEIGHT
    from edgefill.pipeline import Inpainter

    rel, g2 = _telea_release(tmp_path)
    attach_drawn(rel, rel)  # a G2 for drawn edges that no export of the run below could keep
    out = tmp_path / "ex"
    t = make_trainer(
        photos, out, "inpaint-on-predicted", "model.hole_fill=telea", "model.exemplar=true",
        "model.deep_blend=true", edge_weights=str(rel), init=str(rel),
    )  # fmt: skip
    last = t.pairs["inpaint"].g.decoder[-1]
    assert torch.equal(last.weight[:3], g2.decoder[-1].weight.half().float())  # kept
    assert torch.all(last.weight[3] == 0)
    assert float(torch.sigmoid(last.bias[3].detach())) == pytest.approx(
        EXEMPLAR_START_WEIGHT, abs=1e-3
    )
    start = make_trainer(
        photos, tmp_path / "start", "inpaint-on-predicted", "model.hole_fill=telea",
        "model.exemplar=true", edge_weights=str(rel), init=str(rel),
    )  # fmt: skip
    assert start.fit(max_steps=0)  # no step: the start is validated and saved ...
    assert main(["export", str(tmp_path / "start"), "-o", str(tmp_path / "rel0")]) == 0
    assert "--base" not in capsys.readouterr().err  # another architecture than its start: no hint
    g2_start = Inpainter.from_pretrained(tmp_path / "rel0").g2  # ... and releases as it is
    assert torch.all(g2_start.decoder[-1].weight[3] == 0)
    assert torch.equal(g2_start.decoder[-1].bias, last.bias.detach().half().float())
    t.fit(max_steps=2)  # batches carry the PatchMatch copy from the workers
    assert not torch.all(last.weight[3] == 0)  # the blend weight is learned
    assert main(["export", str(out), "-o", str(tmp_path / "rel2"), "--latest"]) == 0
    inp = Inpainter.from_pretrained(tmp_path / "rel2")
    assert inp.config.exemplar and inp.g2.in_channels == 8
    assert inp.config.deep_blend and inp.g2.deep_blend  # trained with it, released with it


def test_an_attention_g2_fine_tunes_from_a_release_and_exports(
    photos: Path, tmp_path: Path
) -> None:
    from edgefill.pipeline import Inpainter

    rel, _ = _telea_release(tmp_path)
    out = tmp_path / "att"
    t = make_trainer(
        photos, out, "inpaint-on-predicted", "model.hole_fill=telea", "model.attention=true",
        edge_weights=str(rel), init=str(rel),
    )  # fmt: skip
    new = t.pairs["inpaint"].g
    assert torch.all(new.attend.out.weight == 0)  # starts as the release's G2
    assert len(t.pairs["inpaint"].opt_g.param_groups) == 1
    fast = make_trainer(
        photos, tmp_path / "fast", "inpaint-on-predicted", "model.hole_fill=telea",
        "model.attention=true", "train.attention_lr=10", edge_weights=str(rel),
    )  # fmt: skip
    rest, block = fast.pairs["inpaint"].opt_g.param_groups
    assert block["lr"] == pytest.approx(10 * rest["lr"])
    assert len(block["params"]) == len(list(fast.pairs["inpaint"].g.attend.parameters()))
    t.fit(max_steps=2)
    assert not torch.all(new.attend.out.weight == 0)
    assert main(["export", str(out), "-o", str(tmp_path / "rel2"), "--latest"]) == 0
    inp = Inpainter.from_pretrained(tmp_path / "rel2")
    assert inp.config.attention and inp.g2.attend is not None


def test_true_edge_prob_gives_g2_the_true_edges(photos: Path, tmp_path: Path) -> None:
    from edgefill.errors import EdgefillError

    pred, true = torch.zeros(64, 1, 4, 4), torch.ones(64, 1, 4, 4)
    never = make_trainer(photos, tmp_path / "a", "joint")
    assert torch.equal(never._mix_true_edges(pred, true), pred)
    always = make_trainer(photos, tmp_path / "b", "joint", "train.true_edge_prob=1")
    assert torch.equal(always._mix_true_edges(pred, true), true)
    half = make_trainer(photos, tmp_path / "c", "joint", "train.true_edge_prob=0.5")
    per_sample = half._mix_true_edges(pred, true).flatten(1)
    assert torch.all(per_sample.min(1).values == per_sample.max(1).values)  # whole samples
    assert 10 < int(per_sample[:, 0].sum()) < 54
    with pytest.raises(EdgefillError, match="true_edge_prob"):
        tiny_config("train.true_edge_prob=1.5")


@pytest.mark.parametrize("native", [True, False])
def test_amp_auto_trains_in_bf16_where_the_cpu_has_it_natively(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, native: bool
) -> None:
    monkeypatch.setattr("edgefill.backends.cpu_has_fast_bf16", lambda: native)
    trainer = make_trainer(photos, tmp_path / "run", "inpaint", "train.amp=auto")
    assert trainer.amp is native
    with trainer._autocast():
        assert torch.is_autocast_enabled("cpu") is native
    trainer.fit(max_steps=1)
    assert all(math.isfinite(v) for v in trainer.metrics.values())
    forced = make_trainer(photos, tmp_path / "fp32", "inpaint", "train.amp=fp32")
    assert forced.amp is False


def test_a_stop_signal_ends_the_run_after_the_step_with_a_checkpoint(
    photos: Path, tmp_path: Path
) -> None:
    import os
    import signal

    out = tmp_path / "run"
    t = make_trainer(photos, out, "inpaint", "train.save_every=100", "train.val_every=100")
    step = t.train_step

    def step_then_signal(batch: dict) -> dict:
        logs = step(batch)
        if t.step == 3:
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl+C or `timeout --signal=INT` would
        return logs

    t.train_step = step_then_signal  # type: ignore[method-assign]
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN under a shell's background job
    t.fit(max_steps=50)
    assert t.step == 3
    assert latest_checkpoint(out).name == "step_00000003.pt"
    assert "stopped by SIGINT at step 3" in (out / "events.log").read_text()
    assert not (out / "val_log.csv").exists()  # a stop checkpoints without validating first
    assert signal.getsignal(signal.SIGINT) is before  # handler restored
    resumed = make_trainer(photos, out, "inpaint", "train.save_every=100", "train.val_every=100")
    resumed.fit(resume=True, max_steps=5)
    assert resumed.step == 5


def test_a_stop_signal_delivered_twice_at_once_is_one_request() -> None:
    """`timeout` signals the trainer and then its process group: one stop, not a hard one. A
    second signal later than that still stops at once."""
    import os
    import signal

    from edgefill import train

    clock = iter([100.0, 100.001, 102.0])
    stop = train.StopRequest()
    stop._clock = lambda: next(clock)
    with stop:
        os.kill(os.getpid(), signal.SIGINT)
        try:
            os.kill(os.getpid(), signal.SIGINT)  # the echo: ignored
        except KeyboardInterrupt:
            pytest.fail("the echo of one stop request stopped the run at once")
        assert stop.requested == "SIGINT"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)  # two seconds on: stop at once


def test_a_failing_data_worker_ends_the_run_with_its_error_and_no_worker_left(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers ignore SIGTERM, so one left running after an error kept the process from exiting
    (a GPU lease sat idle for its whole budget): the error must surface and the workers end."""
    import multiprocessing

    from edgefill import data

    make_sample = data.make_sample

    def broken_in_workers(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        if torch.utils.data.get_worker_info() is not None:
            raise RuntimeError("a sample the worker cannot make")
        return make_sample(*args, **kwargs)

    monkeypatch.setattr(data, "make_sample", broken_in_workers)
    t = make_trainer(photos, tmp_path / "run", "inpaint", "data.num_workers=1")
    with pytest.raises(RuntimeError, match="a sample the worker cannot make"):
        t.fit(max_steps=3)
    assert multiprocessing.active_children() == []


def test_a_model_whose_prefill_cannot_run_here_is_refused_before_training(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cv2

    exemplar = ("model.exemplar=true", "model.hole_fill=telea")
    monkeypatch.delattr(cv2, "xphoto", raising=False)
    with pytest.raises(EdgefillError, match="pre-fill cannot run here: OpenCV's xphoto") as err:
        make_trainer(photos, tmp_path / "run", "inpaint", *exemplar)
    assert "--set train.thin_fsr=false" in str(err.value)  # the way to train without FSR
    no_fsr = make_trainer(photos, tmp_path / "nofsr", "inpaint", *exemplar, "train.thin_fsr=false")
    assert no_fsr.dataset.exemplar and not no_fsr.dataset.thin_fsr
    monkeypatch.setitem(sys.modules, "patchmatch", None)  # import fails like a missing package
    with pytest.raises(
        EdgefillError, match="pre-fill cannot run here: the PyPI package pypatch"
    ) as err:
        make_trainer(photos, tmp_path / "run", "inpaint", *exemplar)
    assert "thin_fsr" not in str(err.value)  # no FSR-free way around a missing PatchMatch
    # Stage edge makes no G2 pre-fill, so G1 still trains on such a machine.
    assert make_trainer(photos, tmp_path / "edge", "edge", *exemplar).dataset.exemplar is False


def test_init_from_the_reference_released_files(photos: Path, tmp_path: Path) -> None:
    """--init accepts a folder of the reference's released files: its *_gen.pth start the
    generators (and EMAs), its EdgeModel_dis.pth (input: gray, edges) starts D1."""
    import shutil

    from edgefill.checkpoint import load_release
    from edgefill.networks import Discriminator

    fixture = Path(__file__).parent / "fixtures" / "edge-connect-tiny"
    ref = tmp_path / "reference"
    ref.mkdir()
    for f in ("EdgeModel_gen.pth", "InpaintingModel_gen.pth"):
        shutil.copy(fixture / f, ref / f)
    torch.manual_seed(3)
    d1 = Discriminator(2)  # the reference's D1 size (edgefill's D width is fixed at 64 too)
    sd = d1.state_dict()
    # The reference's file layout: conv1 registered twice (also as `features`).
    sd |= {"features." + k[len("conv1.") :]: v for k, v in sd.items() if k.startswith("conv1.")}
    torch.save({"discriminator": sd}, ref / "EdgeModel_dis.pth")

    t = make_trainer(photos, tmp_path / "run", "joint", "model.width=4", init=str(ref))
    g1, g2, _, _ = load_release(fixture)
    for name, want_net in (("edge", g1), ("inpaint", g2)):
        for pair_net in (t.pairs[name].g, t.pairs[name].ema):
            got, want = pair_net.state_dict(), want_net.state_dict()
            assert got.keys() == want.keys()
            assert all(torch.equal(got[k], want[k]) for k in want), name
    got = t.pairs["edge"].d.state_dict()
    assert all(torch.equal(got[k], v) for k, v in d1.state_dict().items())
    # No InpaintingModel_dis.pth: D2 keeps its fresh init (not D1's weights, not an error).
    assert not torch.equal(t.pairs["inpaint"].d.conv5[0].weight_orig, d1.conv5[0].weight_orig)

    # A discriminator file of another architecture is one clear error.
    shutil.copy(fixture / "EdgeModel_dis.pth", ref / "EdgeModel_dis.pth")  # width 4, not 64
    with pytest.raises(EdgefillError, match="EdgeModel_dis.pth: not a reference discriminator"):
        make_trainer(photos, tmp_path / "run2", "joint", "model.width=4", init=str(ref))


def test_init_of_another_model_size_is_one_clear_error(photos: Path, tmp_path: Path) -> None:
    fixture = Path(__file__).parent / "fixtures" / "edge-connect-tiny"  # width 4
    for stage, kw in (("joint", {"init": str(fixture)}), ("inpaint-on-predicted", {"edge_weights": str(fixture)})):  # fmt: skip
        with pytest.raises(EdgefillError, match=r"is another size than this run's.*is \(4,"):
            make_trainer(photos, tmp_path / stage, stage, "model.width=8", **kw)


# ----------------------------------------------------------------------------- issue 18: bad checkpoints


def test_resume_skips_a_truncated_checkpoint_and_says_which(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    opts = ("train.save_every=1", "train.keep_last=0", "train.log_every=1")
    make_trainer(photos, out, "edge", *opts).fit(max_steps=2)
    newest = latest_checkpoint(out)
    assert newest is not None and newest.name == "step_00000002.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # a torn copy
    resumed = make_trainer(photos, out, "edge", *opts)
    resumed.fit(resume=True, max_steps=3)
    assert resumed.step == 3
    log = (out / "events.log").read_text()
    assert "skipped a bad checkpoint" in log and "step_00000002.pt" in log
    assert "resumed from step_00000001.pt" in log
    # Step 2 ran twice (before the tear and after the resume): its log row appears once.
    steps = [row.split(",")[0] for row in (out / "train_log.csv").read_text().splitlines()[1:]]
    assert steps == ["1", "2", "3"]
    assert "train_log.csv: dropped 1 rows after step 1" in log


@pytest.mark.parametrize("content", [{"x": 1}, [1, 2], "torn"])
def test_wrong_checkpoints_via_resume_and_edge_weights_are_one_line(
    photos: Path, tmp_path: Path, capfd: pytest.CaptureFixture, content: object
) -> None:
    from train_utils import TINY

    ck = tmp_path / "run" / "checkpoints"
    ck.mkdir(parents=True)
    bad = ck / "step_00000003.pt"
    if content == "torn":
        bad.write_bytes(b"PK\x03\x04 torn")
    else:
        torch.save(content, bad)
    sets = [a for s in TINY for a in ("--set", s)]
    base = ["train", "--data", str(photos), *sets, "--max-steps", "1"]
    runs = [
        [*base, "--stage", "edge", "--out", str(tmp_path / "run"), "--resume"],
        [
            *base,
            "--stage",
            "inpaint-on-predicted",
            "--out",
            str(tmp_path / "r2"),
            "--edge-weights",
            str(bad),
        ],  # fmt: skip
    ]
    for argv in runs:
        assert main(argv) == 2
        err = capfd.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "step_00000003.pt" in err[0], err
