"""Training data: file listing, the name-hash split, deterministic samples and the step sampler."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import spy_fill_hole
from PIL import Image
from train_utils import make_photos, tiny_config

from edgefill.data import (
    PhotoDataset,
    StepSampler,
    collate,
    is_validation,
    list_images,
    random_square_crop,
    split,
    validation_samples,
)
from edgefill.edges import to_gray
from edgefill.errors import EdgefillError
from edgefill.image import load_rgb


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_photos(tmp_path_factory.mktemp("photos"))


def test_list_images_folder_recursive_and_file_list(tmp_path: Path, photos: Path) -> None:
    files = list_images(photos)
    assert len(files) == 10 and files == sorted(files)
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    (nested / "x.JPG").write_bytes((photos / "photo00.png").read_bytes())
    (tmp_path / "notes.txt").write_text("not a photo")
    assert list_images(tmp_path) == [nested / "x.JPG"]
    lst = tmp_path / "list.txt"
    lst.write_text(f"# comment\n\na/b/x.JPG\n{photos / 'photo01.png'}\n")
    assert list_images(lst) == [nested / "x.JPG", photos / "photo01.png"]


def test_own_photos_from_a_phone_are_training_photos(tmp_path: Path) -> None:
    """HEIC (iPhones, with the heif extra) and AVIF photos are listed and read for training."""
    heif = pytest.importorskip("pillow_heif", reason="the heif extra is not installed")
    rgb = np.random.default_rng(0).integers(0, 256, (24, 32, 3), np.uint8)
    heif.from_pillow(Image.fromarray(rgb)).save(tmp_path / "IMG_0001.HEIC", quality=90)
    Image.fromarray(rgb).save(tmp_path / "b.avif")
    files = list_images(tmp_path)
    assert [f.name for f in files] == ["IMG_0001.HEIC", "b.avif"]
    for f in files:
        assert load_rgb(f)[0].shape == (24, 32, 3)


def test_list_images_errors(tmp_path: Path) -> None:
    with pytest.raises(EdgefillError, match="no photos found"):
        list_images(tmp_path)
    with pytest.raises(EdgefillError, match="expected a folder"):
        list_images(tmp_path / "missing")
    lst = tmp_path / "list.txt"
    lst.write_text("gone.jpg\n")
    with pytest.raises(EdgefillError, match="1 listed photo.*gone.jpg"):
        list_images(lst)


def test_split_by_name_hash_is_fixed(photos: Path) -> None:
    files = list_images(photos)
    train, val = split(files, 0.3)
    assert sorted(train + val) == files and not set(train) & set(val)
    # The rule looks at the file name only: the same photo elsewhere lands in the same split.
    for f in files:
        assert is_validation(f, 0.3) == is_validation(Path("/elsewhere") / f.name, 0.3)
    assert split(files, 0.0) == (files, [])


def test_random_crop_scale_and_flip() -> None:
    rgb = np.arange(100 * 60 * 3, dtype=np.uint8).reshape(100, 60, 3)
    a = random_square_crop(rgb, 32, np.random.default_rng(1), 0.5, True, 0.8)
    b = random_square_crop(rgb, 32, np.random.default_rng(1), 0.5, True, 0.8)
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8 and np.array_equal(a, b)


def test_dataset_items_are_deterministic_and_well_formed(photos: Path) -> None:
    cfg = tiny_config()
    ds = PhotoDataset(list_images(photos), cfg.data, cfg.model.canny_sigma)
    a, b = ds[(3, 12345)], ds[(3, 12345)]
    assert set(a) == {"image", "filled", "gray", "mask", "edges_known", "edges_full", "edges_g2"}
    # Without a G1, G2 gets the true edges inside the hole and the known ones outside.
    hole = a["mask"] > 0
    assert torch.equal(a["edges_g2"][hole], a["edges_full"][hole])
    assert torch.equal(a["edges_g2"][~hole], a["edges_known"][~hole])
    assert torch.all(a["filled"][:, a["mask"][0] > 0] == 1)  # the reference's white hole
    for k in a:
        assert a[k].dtype == torch.float32 and torch.equal(a[k], b[k])
    assert a["image"].shape == (3, 32, 32) and a["mask"].shape == (1, 32, 32)
    assert 0 <= float(a["image"].min()) and float(a["image"].max()) <= 1
    assert set(a["mask"].unique().tolist()) <= {0.0, 1.0}
    # Known edges never lie inside the hole; full edges do exist in these photos.
    assert float((a["edges_known"] * a["mask"]).sum()) == 0
    assert float(a["edges_full"].sum()) > 0
    c = ds[(3, 999)]
    assert not torch.equal(a["mask"], c["mask"]) or not torch.equal(a["image"], c["image"])


def test_dataset_prefills_the_hole_in_the_worker(photos: Path) -> None:
    cfg = tiny_config("model.hole_fill=patchmatch")
    plain = PhotoDataset(list_images(photos), cfg.data, cfg.model.canny_sigma)
    ds = PhotoDataset(list_images(photos), cfg.data, cfg.model.canny_sigma, hole_fill="patchmatch")
    a, w = ds[(2, 77)], plain[(2, 77)]
    # Same crop and mask as without a pre-fill; the hole holds the PatchMatch fill of that crop.
    assert torch.equal(a["image"], w["image"]) and torch.equal(a["mask"], w["mask"])
    rgb = a["image"].permute(1, 2, 0).mul(255).round().to(torch.uint8).numpy()
    hole = a["mask"][0].numpy() > 0
    assert hole.any()
    filled = a["filled"].permute(1, 2, 0).mul(255).round().to(torch.uint8).numpy()
    assert np.array_equal(filled[~hole], rgb[~hole])
    assert not np.all(filled[hole] == 255)
    assert torch.equal(a["filled"], ds[(2, 77)]["filled"])  # deterministic, seeded per sample


def test_the_dataset_gives_an_exemplar_g2_the_patchmatch_copy(photos: Path) -> None:
    cfg = tiny_config("model.exemplar=true", "model.hole_fill=telea")
    files = list_images(photos)
    plain = PhotoDataset(files, cfg.data, 2.0, hole_fill="telea")
    ds = PhotoDataset(files, cfg.data, 2.0, hole_fill="telea", exemplar=True)
    a, b = ds[(1, 9)], plain[(1, 9)]
    assert "exemplar" not in b and all(torch.equal(a[k], b[k]) for k in b)
    rgb = a["image"].permute(1, 2, 0).mul(255).round().to(torch.uint8).numpy()
    hole = a["mask"][0].numpy() > 0
    copy = a["exemplar"].permute(1, 2, 0).mul(255).round().to(torch.uint8).numpy()
    assert hole.any() and np.array_equal(copy[~hole], rgb[~hole])
    filled = a["filled"].permute(1, 2, 0).mul(255).round().to(torch.uint8).numpy()
    assert not np.array_equal(copy[hole], filled[hole])  # a copy, not the Telea pre-fill


def test_the_dataset_solves_the_smooth_fill_once_for_the_prefill_and_the_copy(
    photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgefill import prefill

    cfg = tiny_config("model.exemplar=true", "model.hole_fill=telea")
    ds = PhotoDataset(list_images(photos), cfg.data, 2.0, hole_fill="telea", exemplar=True)
    want = ds[(1, 9)]
    calls = []
    real = prefill.smooth_fill
    monkeypatch.setattr(prefill, "smooth_fill", lambda *a: calls.append(1) or real(*a))
    got = ds[(1, 9)]
    assert len(calls) == 1
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_dataset_runs_a_frozen_g1_in_the_worker_and_guides_the_fill_by_true_edges(
    photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgefill import data as data_module
    from edgefill.networks import EdgeGenerator

    cfg = tiny_config("model.hole_fill=patchmatch")
    g1 = EdgeGenerator(8, 1).eval()
    guides = []
    real_fill = data_module.fill_hole

    def spy(kind, rgb, hole, seed=0, edges=None, edge_guide=0.0):
        guides.append((edges, edge_guide))
        return real_fill(kind, rgb, hole, seed, edges, edge_guide)

    monkeypatch.setattr(data_module, "fill_hole", spy)
    files = list_images(photos)
    always_pred = PhotoDataset(
        files, cfg.data, 2.0, hole_fill="patchmatch", edge_guide=1.0, edge_generator=g1
    )
    a = always_pred[(1, 5)]
    hole = a["mask"] > 0
    with torch.no_grad():
        want = g1(torch.cat([a["gray"] * ~hole + hole, a["edges_known"], a["mask"]])[None])[0]
    torch.testing.assert_close(a["edges_g2"][hole], want[hole])
    assert guides[-1][1] == 0.0  # predicted edges steer G2, not the pre-fill
    always_true = PhotoDataset(
        files, cfg.data, 2.0, hole_fill="patchmatch", edge_guide=1.0, edge_generator=g1,
        true_edge_prob=1.0,
    )  # fmt: skip
    b = always_true[(1, 5)]
    assert torch.equal(b["edges_g2"][hole], b["edges_full"][hole])
    edges, weight = guides[-1]
    assert weight == 1.0 and np.array_equal(edges, b["edges_g2"][0].numpy())  # fill follows them
    half = PhotoDataset(files, cfg.data, 2.0, edge_generator=g1, true_edge_prob=0.5)
    picks = [torch.equal(half[(0, s)]["edges_g2"], half[(0, s)]["edges_g2"]) for s in range(3)]
    assert all(picks)  # the per-sample choice is part of the sample's seed: deterministic
    n_true = sum(
        torch.equal(h["edges_g2"], torch.where(h["mask"] > 0, h["edges_full"], h["edges_known"]))
        for h in (half[(0, s)] for s in range(12))
    )
    assert 1 <= n_true <= 11


def test_dataset_masks_from_folder(tmp_path: Path, photos: Path) -> None:
    masks = tmp_path / "masks"
    masks.mkdir()
    m = np.zeros((64, 64), np.uint8)
    m[:32] = 255
    Image.fromarray(m).save(masks / "top.png")
    cfg = tiny_config(f"data.mask_dir={masks}")
    ds = PhotoDataset(list_images(photos), cfg.data, cfg.model.canny_sigma)
    mask = ds[(0, 1)]["mask"][0]
    assert float(mask[:16].min()) == 1 and float(mask[16:].max()) == 0


def _take(sampler: StepSampler, n: int) -> list[tuple[int, int]]:
    it = iter(sampler)
    return [next(it) for _ in range(n)]


def test_step_sampler_resumes_exactly_and_covers_epochs() -> None:
    full = _take(StepSampler(7, 2, seed=3), 40)
    assert _take(StepSampler(7, 2, seed=3, start_step=5), 30) == full[10:]
    first_epoch = [i for i, _ in full[:7]]
    assert sorted(first_epoch) == list(range(7))  # a permutation per epoch
    assert len({s for _, s in full}) == len(full)  # fresh augmentation seed per sample
    assert _take(StepSampler(7, 2, seed=4), 40) != full


def test_step_sampler_ranks_split_the_global_batch() -> None:
    whole = _take(StepSampler(9, 4, seed=1), 40)  # one process, batch 4
    r0 = _take(StepSampler(9, 2, seed=1, rank=0, world=2), 20)
    r1 = _take(StepSampler(9, 2, seed=1, rank=1, world=2), 20)
    for step in range(10):
        assert (
            r0[2 * step : 2 * step + 2] + r1[2 * step : 2 * step + 2]
            == whole[4 * step : 4 * step + 4]
        )


def test_validation_samples_fixed(photos: Path) -> None:
    files = list_images(photos)[:3]
    a = collate(validation_samples(files, 32, 2.0))
    b = collate(validation_samples(files, 32, 2.0))
    assert a["image"].shape == (3, 3, 32, 32)
    for k in a:
        assert torch.equal(a[k], b[k])
    assert all(0.05 < float(m.mean()) < 0.8 for m in a["mask"])


def test_g1_sees_the_hole_pre_filled_with_edge_hole_fill(photos: Path) -> None:
    from edgefill.data import sample_edge_input
    from edgefill.networks import EdgeGenerator
    from edgefill.prefill import fill_hole

    cfg = tiny_config()
    files = list_images(photos)
    g1 = EdgeGenerator(8, 1).eval()
    white = PhotoDataset(files, cfg.data, 2.0, edge_generator=g1)[(1, 5)]
    ds = PhotoDataset(files, cfg.data, 2.0, edge_generator=g1, edge_hole_fill="telea")
    a = ds[(1, 5)]
    assert "gray_g1" not in white and torch.equal(a["mask"], white["mask"])
    hole = a["mask"][0].numpy() > 0
    rgb = a["image"].permute(1, 2, 0).mul(255).round().to(torch.uint8).numpy()
    want = to_gray(fill_hole("telea", rgb, hole))
    np.testing.assert_allclose(a["gray_g1"][0].numpy(), want, atol=1e-6)
    x = sample_edge_input(collate([a]))[0]
    assert torch.equal(x[0][a["mask"][0] > 0], a["gray_g1"][0][a["mask"][0] > 0])
    x_white = sample_edge_input(collate([white]))[0]
    assert torch.equal(x_white[0][white["mask"][0] > 0].unique(), torch.ones(1))
    with torch.no_grad():  # the frozen G1 in the worker got the pre-filled gray too
        pred = g1(x[None])[0]
    torch.testing.assert_close(a["edges_g2"][a["mask"] > 0], pred[a["mask"] > 0])
    val = validation_samples(files[:2], 32, 2.0, edge_hole_fill="telea")
    assert all("gray_g1" in v for v in val)


def test_the_same_unguided_pre_fill_is_computed_once_for_g1_and_g2(
    photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgefill import data as data_module

    calls = spy_fill_hole(monkeypatch, data_module)
    cfg = tiny_config()
    ds = PhotoDataset(list_images(photos), cfg.data, 2.0, hole_fill="telea", edge_hole_fill="telea")
    a = ds[(1, 5)]
    assert [kind for kind, _ in calls] == ["telea"]
    rgb = a["filled"].permute(1, 2, 0).mul(255).round().to(torch.uint8).numpy()
    np.testing.assert_allclose(a["gray_g1"][0].numpy(), to_gray(rgb), atol=1e-6)
