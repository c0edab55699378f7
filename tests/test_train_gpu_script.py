"""scripts/train_gpu.sh: the one call that turns a lent GPU into weights, run here on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
from train_utils import make_photos

from edgefill.checkpoint import DRAWN_FILE, attach_drawn, read_release_config
from edgefill.config import DataConfig
from edgefill.data import list_images, split
from edgefill.pipeline import Inpainter

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "train_gpu.sh"
TINY = " ".join(
    f"--set {kv}"
    for kv in (
        "data.val_count=2",
        "data.val_size=32",
        "data.val_fraction=0.3",
        "loss.perceptual_weight=0",
        "loss.style_weight=0",
        "train.save_every=2",
        "train.val_every=2",
        "train.threads=1",
    )
)


def _run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = os.environ | {"PYTHON": sys.executable, "DEVICE": "cpu"} | env
    return subprocess.run(
        ["bash", str(SCRIPT), *args], env=full, capture_output=True, text=True, timeout=300
    )


def test_gpu_script_trains_for_its_budget_and_exports_a_release(tmp_path: Path) -> None:
    photos = make_photos(tmp_path / "photos")
    out = tmp_path / "out"
    proc = _run(
        tmp_path, "run", "0.5",
        OUT=str(out), DATA=str(photos), INIT="none", WIDTH="8", BLOCKS="1", BATCH="2",
        CROP="32", WORKERS="1", EXTRA=TINY,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "stage joint for 0.5 min on cpu" in proc.stdout
    inp = Inpainter.from_pretrained(out / "release", precision="fp32")
    assert inp.config.width == 8 and inp.config.exemplar and inp.config.hole_fill == "telea"
    assert (out / "val_log.csv").is_file()

    # Made into a release as the shipped one is: inference settings of its own and a G2 for
    # drawn edges (its own G2 here).
    attach_drawn(out / "release", out / "release")
    doc = json.loads((out / "release" / "config.json").read_text())
    doc["model"] |= {"edge_guide": 0.3, "copy_detail": 0.35, "copy_detail_sigma": 4.0}
    (out / "release" / "config.json").write_text(json.dumps(doc))

    # STAGE=edge (G1 alone) and STAGE=inpaint (G2 on true edges alone, the G2 for drawn edges)
    # from that release: the export keeps the generator the stage does not train as it was.
    for stage, kept, trained in (("edge", "inpaint", "edge"), ("inpaint", "edge", "inpaint")):
        stage_out = tmp_path / stage
        proc = _run(
            tmp_path, "run", "0.3",
            OUT=str(stage_out), DATA=str(photos), INIT=str(out / "release"), STAGE=stage,
            WIDTH="8", BLOCKS="1", BATCH="2", CROP="32", WORKERS="1", EXTRA=TINY,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert f"stage {stage} for 0.3 min on cpu" in proc.stdout
        for name in ("release", "latest"):
            assert (stage_out / name / f"{kept}.safetensors").read_bytes() == (
                out / "release" / f"{kept}.safetensors"
            ).read_bytes()
            assert (stage_out / name / f"{trained}.safetensors").is_file()
            # G1 fine-tuned: the release's settings and G2 for drawn edges stay; a G2 for
            # drawn edges is released with the run's own settings, for attach-drawn.
            model = read_release_config(stage_out / name)[0]
            drawn = stage_out / name / DRAWN_FILE
            if stage == "edge":
                assert (model.edge_guide, model.copy_detail, model.copy_detail_sigma) == (
                    0.3,
                    0.35,
                    4.0,
                )
                assert drawn.read_bytes() == (out / "release" / DRAWN_FILE).read_bytes()
            else:
                assert model.copy_detail == 0.0 and not drawn.exists()


def test_gpu_script_trains_g2_where_opencv_lacks_xphoto(tmp_path: Path) -> None:
    """The device image's OpenCV has no cv2.xphoto (FSR): the script notices and trains the
    exemplar design with train.thin_fsr=false instead of stopping (a sitecustomize on the
    child's path removes xphoto, as that machine lacks it)."""
    photos = make_photos(tmp_path / "photos")
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import sys\nimport cv2\ndel cv2.xphoto\nsys.modules.pop('cv2.xphoto', None)\n"
    )
    out = tmp_path / "out"
    proc = _run(
        tmp_path, "run", "0.3",
        OUT=str(out), DATA=str(photos), INIT="none", WIDTH="8", BLOCKS="1", BATCH="2",
        CROP="32", WORKERS="1", EXTRA=TINY + " --set data.mask_kinds=scratch --set data.mask_weights=1",
        PYTHONPATH=str(site),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "no cv2.xphoto: training with train.thin_fsr=false" in proc.stdout
    assert Inpainter.from_pretrained(out / "release", precision="fp32").config.exemplar


def test_prepare_for_stage_edge_packs_the_photos_alone(tmp_path: Path) -> None:
    """What a G1-only lease needs: the training split and the scored validation photos, shrunk
    to twice the crop on the short side, under their own names; no wheel, no VGG."""
    photos = make_photos(tmp_path / "photos", n=12)
    carry = tmp_path / "carry"
    proc = _run(tmp_path, "prepare", CARRY=str(carry), STAGE="edge", DATA=str(photos), CROP="16")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    train, val = split(list_images(photos), DataConfig.val_fraction)
    expected = sorted(p.name for p in train + val[: DataConfig.val_count])
    packed = sorted(p.name for p in (carry / "data").iterdir())
    assert packed == expected
    for name in packed:
        assert min(cv2.imread(str(carry / "data" / name)).shape[:2]) == 32
    assert sorted(p.name for p in carry.iterdir()) == ["data"]
    assert "travels: tracked files" in proc.stdout


def test_gpu_script_rejects_an_unknown_mode(tmp_path: Path) -> None:
    proc = _run(tmp_path, "fly")
    assert proc.returncode == 2 and "usage: scripts/train_gpu.sh" in proc.stderr
