"""Evaluation harness: the plan (photos x masks), bucket assignment, a tiny end-to-end report,
resuming, honest omission of metrics whose weights are missing, and the CLI command."""

from __future__ import annotations

import csv
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import load_repo_script, photo_array
from PIL import Image
from torch import nn
from train_utils import random_vgg

from edgefill import evaluate
from edgefill.errors import EdgefillError
from edgefill.evaluate import (
    Case,
    MaskSetting,
    bucket_label,
    case_arrays,
    mask_settings,
    plan_cases,
    run_evaluation,
)
from edgefill.masks import hole_ratio


class _TinyFeatures(nn.Module):
    """A stand-in for the Inception network: 48-d pooled colours (TorchScript, instant)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x, 4).flatten(1)


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval-assets")
    photos = root / "photos"
    photos.mkdir()
    Image.fromarray(photo_array(48, 64, seed=1)).save(photos / "b_photo.png")
    Image.fromarray(photo_array(56, 40, seed=2)).save(photos / "a_photo.jpg")
    feats = root / "tiny_features.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(_TinyFeatures()).save(str(feats))
    return {"photos": photos, "features": feats, "vgg": random_vgg(root / "vgg.safetensors")}


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# ----------------------------------------------------------------------------- plan


def test_mask_settings_defaults_and_errors():
    irregular = mask_settings(["irregular"])
    assert [s.ratio_range for s in irregular] == [
        pytest.approx((lo / 10, lo / 10 + 0.1)) for lo in range(1, 6)
    ]
    assert mask_settings(["box"]) == [MaskSetting("box", (0.2, 0.3))]  # the 25 % box
    assert mask_settings(["scratch"]) == [MaskSetting("scratch")]
    assert [s.name for s in mask_settings(["irregular", "box"], ["0-10", "30-40"])] == [
        "irregular_0-10",
        "irregular_30-40",
        "box_0-10",
        "box_30-40",
    ]
    with pytest.raises(EdgefillError, match="unknown mask kind"):
        mask_settings(["blob"])
    with pytest.raises(EdgefillError, match="bad bucket"):
        mask_settings(["irregular"], ["10to20"])


@pytest.mark.parametrize(
    "ratio,label",
    [(0.0, "0-10%"), (0.0999, "0-10%"), (0.1, "10-20%"), (0.35, "30-40%"), (0.5999, "50-60%")],
)
def test_bucket_assignment(ratio, label):
    assert bucket_label(ratio) == label


def test_over_sixty_percent_has_its_own_bucket():
    assert bucket_label(0.6) == bucket_label(0.95) == ">60%"


def test_plan_is_sorted_limited_and_masks_are_reproducible(assets):
    settings = mask_settings(["irregular"], ["10-20", "40-50"])
    cases = plan_cases(assets["photos"], settings, seed=3)
    assert [c.image for c in cases] == ["a_photo.jpg"] * 2 + ["b_photo.png"] * 2
    assert len(plan_cases(assets["photos"], settings, limit=1)) == 2
    with pytest.raises(EdgefillError, match="limit"):
        plan_cases(assets["photos"], settings, limit=0)
    for case in cases:
        photo, hole = case_arrays(case, 64, seed=3)
        assert photo.shape == (64, 64, 3) and hole.shape == (64, 64)
        lo, hi = case.setting.ratio_range  # irregular masks land in their bucket
        assert lo <= hole_ratio(hole) < hi
        assert np.array_equal(hole, case_arrays(case, 64, seed=3)[1])
    assert not np.array_equal(case_arrays(cases[0], 64, 3)[1], case_arrays(cases[0], 64, 4)[1])
    # different photos get different masks from the same setting
    assert not np.array_equal(case_arrays(cases[0], 64, 3)[1], case_arrays(cases[2], 64, 3)[1])


def test_a_photo_list_names_photos_as_their_common_folder_does(assets, tmp_path):
    """A .txt list kept elsewhere (or a list of paths) names each photo relative to the folder
    holding them all, so its cases (and seeded masks) are the ones of that folder."""
    settings = mask_settings(["irregular"], ["10-20"])
    photos = sorted(assets["photos"].iterdir())
    listed = tmp_path / "lists" / "val.txt"
    listed.parent.mkdir()
    listed.write_text("\n".join(str(p) for p in photos) + "\n")
    expected = [(c.image, c.mask) for c in plan_cases(assets["photos"], settings)]
    assert [(c.image, c.mask) for c in plan_cases(listed, settings)] == expected
    assert [(c.image, c.mask) for c in plan_cases(photos, settings)] == expected
    sub = tmp_path / "nested" / "sub"
    sub.mkdir(parents=True)
    (sub / "c.png").write_bytes(photos[0].read_bytes())
    mixed = plan_cases([photos[1], os.path.relpath(sub / "c.png")], settings)
    common = os.path.commonpath([assets["photos"], sub])
    assert sorted(c.image for c in mixed) == sorted(
        [os.path.relpath(photos[1], common), os.path.relpath(sub / "c.png", common)]
    )


def test_zero_low_bucket_still_makes_a_hole(assets):
    (case,) = plan_cases(assets["photos"], [MaskSetting("irregular", (0.0, 0.1))], limit=1)
    ratio = hole_ratio(case_arrays(case, 64)[1])
    assert 0 < ratio < 0.1


def test_mask_folder_pairs_by_name_and_crops_like_the_photo(assets, tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    big = np.zeros((56, 40), np.uint8)
    big[:, :20] = 255  # left half of the 40x56 photo a_photo
    Image.fromarray(big).save(masks / "a_photo.png")
    with pytest.raises(EdgefillError, match="same name"):
        plan_cases(assets["photos"], masks_dir=masks)
    (case,) = plan_cases(assets["photos"], masks_dir=masks, limit=1)
    assert case.kind == "file" and case.mask == "a_photo.png"
    _, hole = case_arrays(case, 32)
    assert hole.shape == (32, 32) and hole[:, :16].all() and not hole[:, 16:].any()
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(masks / "a_photo.png")
    with pytest.raises(EdgefillError, match="expected the photo's size"):
        case_arrays(case, 32)


# ----------------------------------------------------------------------------- end to end


def test_tiny_run_writes_every_report_file(assets, tiny_release, tmp_path):
    out = tmp_path / "report"
    summary = run_evaluation(
        assets["photos"],
        out,
        methods=["edgefill", "telea", "ns"],
        mask_kinds=["irregular", "box"],
        buckets=["10-20", "30-40"],
        weights=tiny_release,
        size=32,
        vgg_weights=assets["vgg"],
        fid_weights=assets["features"],
        progress=False,
    )
    for name in ["report.md", "metrics.json", "per_image.csv", "speed_quality.png"]:
        assert (out / name).is_file(), name
    assert (out / "metrics_vs_hole_irregular.png").is_file()
    assert (out / "grid_irregular_10-20.jpg").is_file() and (out / "grid_box_30-40.jpg").is_file()
    rows = _rows(out / "per_image.csv")
    assert len(rows) == 2 * 4 * 3  # photos x mask settings x methods
    for row in rows:
        for key in evaluate.SCORE_FIELDS + ["seconds", "hole_ratio"]:
            assert np.isfinite(float(row[key])), (key, row)
        assert float(row["psnr"]) > float(row["psnr_hole"])  # outside the hole is exact
    data = json.loads((out / "metrics.json").read_text())
    assert set(data["overall"]) == {"edgefill", "telea", "ns"}
    assert set(data["by_bucket"]) == {"irregular", "box"}
    assert data["overall"]["telea"]["n"] == 8
    assert data["fid"]["all"]["telea"]["n_fake"] == 8 and data["fid"]["all"]["telea"]["n_real"] == 2
    assert np.isfinite(data["fid"]["irregular"]["ns"]["fid"])
    report = (out / "report.md").read_text()
    assert "| 10-20% | telea |" in report and "FID" in report and "KID" in report
    assert "![" in report and "omitted" not in report
    assert summary["config"]["lpips"] is True


def test_rerun_skips_scored_rows_and_redoes_missing_ones(
    assets, tiny_release, tmp_path, monkeypatch
):
    calls: list[str] = []
    real = evaluate.baselines.inpaint

    def counting(name, image, hole, seed=0):
        calls.append(name)
        return real(name, image, hole, seed)

    monkeypatch.setattr(evaluate.baselines, "inpaint", counting)
    out = tmp_path / "report"
    kwargs = dict(
        methods=["telea", "ns"],
        mask_kinds=["irregular"],
        buckets=["20-30"],
        size=32,
        vgg_weights=assets["vgg"],
        fid=False,
        grid=0,
        progress=False,
    )
    run_evaluation(assets["photos"], out, **kwargs)
    first = (out / "per_image.csv").read_text()
    assert len(_rows(out / "per_image.csv")) == 4
    calls.clear()
    run_evaluation(assets["photos"], out, **kwargs)
    assert calls == []  # everything was already scored
    assert (out / "per_image.csv").read_text() == first
    # drop the last two rows, as if the run had been interrupted, then resume
    lines = first.splitlines(keepends=True)
    (out / "per_image.csv").write_text("".join(lines[:-2]))
    run_evaluation(assets["photos"], out, **kwargs)
    assert sorted(set(calls)) == ["ns", "telea"] and len(calls) == 2 + 2  # warm-up + scoring
    rows = _rows(out / "per_image.csv")
    assert len(rows) == 4
    assert len({(r["image"], r["mask"], r["method"]) for r in rows}) == 4
    # adding a method scores only the new method
    calls.clear()
    run_evaluation(assets["photos"], out, **{**kwargs, "methods": ["telea", "ns", "biharmonic"]})
    assert set(calls) == {"biharmonic"}
    assert len(_rows(out / "per_image.csv")) == 6


def test_a_report_folder_refuses_another_size(assets, tmp_path):
    kwargs = dict(methods=["telea"], mask_kinds=["box"], progress=False, limit=1, grid=0)
    kwargs["fid_weights"] = assets["features"]
    run_evaluation(assets["photos"], tmp_path, size=32, vgg_weights=assets["vgg"], **kwargs)
    # one photo: FID/KID are not computed, and the report says why in one line
    assert "need at least 2 photos; this run has 1" in (tmp_path / "report.md").read_text()
    with pytest.raises(EdgefillError, match="size=32"):
        run_evaluation(assets["photos"], tmp_path, size=48, vgg_weights=assets["vgg"], **kwargs)


def test_a_report_folder_keeps_one_model_precision(assets, tiny_release, tmp_path):
    kwargs = dict(methods=["edgefill"], mask_kinds=["box"], size=32, limit=1, grid=0, fid=False)
    kwargs.update(weights=tiny_release, vgg_weights=assets["vgg"], progress=False)
    summary = run_evaluation(assets["photos"], tmp_path, precision="fp32", **kwargs)
    assert summary["config"]["model_info"]["precision"] == "fp32"
    with pytest.raises(EdgefillError, match="precision='fp32', not 'bf16'"):
        run_evaluation(assets["photos"], tmp_path, precision="bf16", **kwargs)
    with pytest.raises(EdgefillError, match="precision must be one of"):
        run_evaluation(assets["photos"], tmp_path / "other", precision="fp64", **kwargs)


def test_the_report_names_the_torch_threads_each_run_had(assets, tmp_path):
    kwargs = dict(mask_kinds=["box"], size=32, limit=1, grid=0, fid=False, progress=False)
    kwargs["vgg_weights"] = assets["vgg"]
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        run_evaluation(assets["photos"], tmp_path, methods=["telea"], **kwargs)
        time.sleep(1.1)  # run ids have a resolution of one second
        torch.set_num_threads(1)  # e.g. a second method scored beside another process
        summary = run_evaluation(assets["photos"], tmp_path, methods=["telea", "ns"], **kwargs)
    finally:
        torch.set_num_threads(before)
    assert "1/2 torch threads" in summary["config"]["device"]
    assert sorted(json.loads((tmp_path / "run.json").read_text())["threads"].values()) == [1, 2]


def test_missing_weights_omit_metrics_instead_of_faking_them(assets, tmp_path):
    out = tmp_path / "report"
    run_evaluation(
        assets["photos"],
        out,
        methods=["telea"],
        mask_kinds=["scratch"],
        size=32,
        vgg_weights=tmp_path / "no-vgg.safetensors",
        fid_weights=tmp_path / "no-inception.pt",
        progress=False,
    )
    rows = _rows(out / "per_image.csv")
    assert rows and all(r["lpips"] == "" and r["lpips_hole"] == "" for r in rows)
    report = (out / "report.md").read_text()
    assert "LPIPS omitted" in report and "FID and KID omitted" in report
    assert "LPIPS |" not in report  # no LPIPS column at all
    data = json.loads((out / "metrics.json").read_text())
    assert data["fid"] is None and data["overall"]["telea"]["lpips"] is None


def test_unknown_method_and_missing_model_weights_are_errors(assets, tmp_path):
    with pytest.raises(EdgefillError, match="unknown method"):
        run_evaluation(assets["photos"], tmp_path, methods=["dalle"], progress=False)
    with pytest.raises(EdgefillError, match="weights not found"):
        run_evaluation(
            assets["photos"],
            tmp_path,
            methods=["edgefill"],
            weights=tmp_path / "nowhere",
            progress=False,
        )


def test_the_edgefill_method_keeps_pixels_outside_the_hole(assets, inpainter):
    (case,) = plan_cases(assets["photos"], [MaskSetting("box", (0.2, 0.3))], limit=1)
    photo, hole = case_arrays(case, 32)
    fn = evaluate._method_functions(["edgefill"], inpainter, 0)["edgefill"]
    out = fn(photo, hole)
    assert out.shape == photo.shape and np.array_equal(out[~hole], photo[~hole])


def test_the_true_edges_method_guides_the_model_with_the_photos_canny_edges(
    assets, inpainter, monkeypatch
):
    (case,) = plan_cases(assets["photos"], [MaskSetting("box", (0.2, 0.3))], limit=1)
    photo, hole = case_arrays(case, 32)
    seen = []
    real = inpainter.inpaint_arrays

    def spy(rgb, h, guide=None, **kw):
        seen.append(guide)
        return real(rgb, h, guide, **kw)

    monkeypatch.setattr(inpainter, "inpaint_arrays", spy)
    fns = evaluate._method_functions(["edgefill", "edgefill-true-edges"], inpainter, 0)
    fns["edgefill"](photo, hole)
    out = fns["edgefill-true-edges"](photo, hole)
    assert seen[0] is None
    want = evaluate.true_edge_guide(photo, inpainter.config.canny_sigma)
    assert want[hole].any() and np.array_equal(seen[1], want)
    assert np.array_equal(out[~hole], photo[~hole])


def test_cli_evaluate(assets, tmp_path, capsys):
    from edgefill.cli import main

    out = tmp_path / "cli-report"
    masks = tmp_path / "masks"
    masks.mkdir()
    for name, (h, w) in {"a_photo": (56, 40), "b_photo": (48, 64)}.items():
        m = np.zeros((h, w), np.uint8)
        m[h // 4 : h // 2, w // 4 : w // 2] = 255
        Image.fromarray(m).save(masks / f"{name}.png")
    argv = ["evaluate", "--images", str(assets["photos"]), "--masks", str(masks)]
    argv += ["--methods", "telea,biharmonic", "--size", "32", "--no-fid", "--quiet"]
    argv += ["--vgg-weights", str(assets["vgg"]), "-o", str(out)]
    assert main(argv) == 0
    assert "report.md" in capsys.readouterr().out
    rows = _rows(out / "per_image.csv")
    assert {r["kind"] for r in rows} == {"file"} and len(rows) == 4
    assert (out / "grid_file.jpg").is_file()
    # an all-black mask file is skipped with a note, not scored
    Image.fromarray(np.zeros((56, 40), np.uint8)).save(masks / "a_photo.png")
    assert main(argv[:-1] + [str(tmp_path / "second")] + ["--methods", "telea"]) == 0
    assert len(_rows(tmp_path / "second" / "per_image.csv")) == 1
    assert "without a hole skipped" in (tmp_path / "second" / "report.md").read_text()
    assert (
        main(["evaluate", "--images", str(assets["photos"]), "--methods", "nope", "-o", str(out)])
        == 2
    )
    assert "unknown method" in capsys.readouterr().err


def test_case_slug_is_a_safe_file_name():
    case = Case("dir/a b.jpg", Path("x"), "irregular_10-20_seed0", "irregular")
    assert case.slug == "dir_a_b.jpg__irregular_10-20_seed0"


def test_a_line_torn_by_a_crash_is_redone(tmp_path):
    path = tmp_path / "per_image.csv"
    record = evaluate.Record(path)
    row = {k: "1" for k in evaluate.FIELDS} | {"image": "a.png", "mask": "m", "method": "ns"}
    record.add(row)
    record.add(row | {"method": "telea"})
    text = path.read_text()
    path.write_text(text[: text.rindex("telea") + 12])  # cut inside the last line
    resumed = evaluate.Record(path)
    assert ("a.png", "m", "ns") in resumed and ("a.png", "m", "telea") not in resumed
    resumed.add(row | {"method": "telea"})
    assert ("a.png", "m", "telea") in evaluate.Record(path)


def test_bar_verdict_of_the_default_benchmark():
    mod = load_repo_script("benchmarks/evaluate_default.py")

    def stats(psnr, lpips, lpips_hole=0.5):
        return {"n": 9, "psnr": psnr, "lpips": lpips, "lpips_hole": lpips_hole}

    summary = {
        "by_bucket": {
            "irregular": {
                "40-50%": {
                    "edgefill": stats(20.0, 0.20, 0.50),
                    "edgefill-true-edges": stats(21.0, 0.15, 0.40),
                    "telea": stats(20.2, 0.30),
                    "patchmatch": stats(19.0, 0.21),
                }
            },
            "box": {"20-30%": {"edgefill": stats(18.0, 0.25), "telea": stats(18.5, 0.30)}},
        },
        "fid": {
            "all": {
                "edgefill": {"fid": 70.0, "kid": 0.002},
                "patchmatch": {"fid": 68.0, "kid": 0.003},
            }
        },
    }
    checks = {name: ok for name, ok, _ in mod.bar_verdict(summary)}
    assert checks["irregular 40-50%: LPIPS below every baseline"]
    assert checks["irregular 40-50%: PSNR >= best classical - 0.3 dB"]  # 20.0 vs 20.2
    assert checks["irregular 40-50%: true edges lower hole-LPIPS by >= 15%"]  # 20 % lower
    assert not checks["box 20-30%: PSNR >= best classical - 0.3 dB"]  # 18.0 vs 18.5
    assert not checks["FID below PatchMatch's"] and checks["KID below PatchMatch's"]
    assert "5 of 7 checks pass." in mod.render_verdict(mod.bar_verdict(summary))
    # edgefill alone (no baseline asked for): only the checks it can judge, no crash.
    alone = {"by_bucket": {"box": {"20-30%": {"edgefill": stats(18.0, 0.25)}}}, "fid": {}}
    assert mod.bar_verdict(alone) == []


def test_default_benchmark_mask_subset():
    mod = load_repo_script("benchmarks/evaluate_default.py")
    assert mod.select_settings(None) == mod.SETTINGS
    got = mod.select_settings("irregular_50-60, scratch,irregular_30-40")
    assert [s.name for s in got] == ["irregular_30-40", "irregular_50-60", "scratch"]
    for bad in ("irregular_55-65", ",", "box"):
        with pytest.raises(
            EdgefillError, match="--mask-settings: unknown.*choose from irregular_10-20"
        ):
            mod.select_settings(bad)
    assert mod.main(["--mask-settings", "nope", "--data", "/nonexistent", "--no-fetch"]) == 2


def test_a_report_folder_keeps_one_flip_average(assets, tiny_release, tmp_path):
    kwargs = dict(methods=["edgefill"], mask_kinds=["box"], size=32, limit=1, grid=0, fid=False)
    kwargs.update(weights=tiny_release, vgg_weights=assets["vgg"], progress=False)
    summary = run_evaluation(assets["photos"], tmp_path, flip_average="always", **kwargs)
    assert summary["config"]["model_info"]["flip_average"] == "always"
    assert "flip average always" in (tmp_path / "report.md").read_text()
    with pytest.raises(EdgefillError, match="flip_average='always', not 'drawn'"):
        run_evaluation(assets["photos"], tmp_path, **kwargs)
