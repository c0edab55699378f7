"""Configuration: reference defaults, YAML + key=value overrides, unknown keys are errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from edgefill.config import (
    Config,
    ModelConfig,
    apply_overrides,
    from_dict,
    load_config,
    same_architecture,
    to_dict,
)
from edgefill.errors import EdgefillError


def test_defaults_are_the_reference_hyperparameters() -> None:
    cfg = Config()
    # knazeri/edge-connect config.yml.example
    assert cfg.train.lr == 1e-4 and cfg.train.d2g_lr == 0.1
    assert (cfg.train.beta1, cfg.train.beta2) == (0.0, 0.9)
    assert cfg.train.batch_size == 8 and cfg.train.seed == 10
    assert cfg.model.canny_sigma == 2.0
    assert cfg.model.width == 64 and cfg.model.edge_blocks == 8 and cfg.model.inpaint_blocks == 8
    assert cfg.data.crop_size == 256
    assert cfg.loss.gan_loss == "nsgan"
    assert cfg.loss.l1_weight == 1.0 and cfg.loss.fm_weight == 10.0
    assert cfg.loss.style_weight == 250.0 and cfg.loss.perceptual_weight == 0.1
    assert cfg.loss.inpaint_adv_weight == 0.1 and cfg.loss.edge_adv_weight == 1.0


def test_config_is_frozen() -> None:
    cfg = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.lr = 1.0  # type: ignore[misc]


def test_yaml_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 2.0e-4\n  batch_size: 4\nmodel:\n  width: 32\n")
    cfg = load_config(path, ["train.lr=5e-5", "model.edge_threshold=0.5", "data.hflip=false"])
    assert cfg.train.lr == 5e-5  # the override wins over the file
    assert cfg.train.batch_size == 4 and cfg.model.width == 32
    assert cfg.model.edge_threshold == 0.5 and cfg.data.hflip is False
    assert cfg.loss == Config().loss  # untouched sections keep their defaults
    assert load_config(None, ["model.edge_threshold=none"]).model.edge_threshold is None


def test_round_trip_through_dict() -> None:
    cfg = load_config(None, ["train.lr=3e-4", "data.mask_dir=/tmp/m"])
    assert from_dict(to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    "overrides,match",
    [
        (["train.learning_rate=1"], "unknown config key.*train.*learning_rate"),
        (["trian.lr=1"], "unknown config key.*trian"),
        (["train.batch_size=abc"], "train.batch_size"),
        (["train.batch_size=2.5"], "train.batch_size"),
        (["data.hflip=maybe"], "data.hflip"),
        (["lr"], "key=value"),
        (["loss.gan_loss=wgan"], "gan_loss"),
        (["data.crop_size=30"], "crop_size"),
        (["train.amp=fp8"], "amp"),
        (["data.mask_weights=1,2"], "same length"),
        (["model.width=0"], "width"),
        (["model.attention=yes"], "model.attention"),
        (["train.attention_lr=0"], "attention_lr"),
        (["loss.l1_hole_weight=-1"], "l1_hole_weight"),
        (["loss.gradient_weight=-0.5"], "gradient_weight"),
        (["train.val_every=0"], "val_every must be >= 1"),
        (["train.log_every=0"], "log_every must be >= 1"),
        (["model.attention=true"], "attention needs a pre-filled G2"),
        (["model.exemplar=yes"], "model.exemplar"),
        (["model.exemplar=true"], "exemplar .*needs hole_fill telea"),
        (["model.exemplar=true", "model.hole_fill=patchmatch"], "needs hole_fill telea"),
        (["model.deep_blend=1"], "model.deep_blend"),
        (["train.thin_fsr=maybe"], "train.thin_fsr"),
        (["model.deep_blend=true"], "deep_blend .*needs exemplar"),
        (["model.copy_detail=-1"], "model.copy_detail"),
        (["model.copy_detail=1"], "copy_detail .*needs exemplar"),
        (["model.drawn_copy_detail=5"], "model.drawn_copy_detail"),
        (["model.drawn_copy_detail=0.2"], "drawn_copy_detail .*needs exemplar"),
        (["model.copy_detail_sigma=0"], "model.copy_detail_sigma"),
        (["model.copy_detail_sigma=wide"], "model.copy_detail_sigma"),
        (["train.lr.x=1"], "train.lr"),
        (["train.x=1", "train.x.y=2"], "not a config section"),
    ],
)
def test_bad_overrides(overrides: list[str], match: str) -> None:
    with pytest.raises(EdgefillError, match=match):
        load_config(None, overrides)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(EdgefillError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(EdgefillError, match="not valid YAML"):
        load_config(bad)
    notmap = tmp_path / "list.yaml"
    notmap.write_text("- 1\n- 2\n")
    with pytest.raises(EdgefillError, match="mapping"):
        load_config(notmap)
    section = tmp_path / "section.yaml"
    section.write_text("train: 3\n")
    with pytest.raises(EdgefillError, match="train"):
        load_config(section)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_config(empty) == Config()


def test_apply_overrides_does_not_mutate_its_input() -> None:
    base = {"train": {"lr": 1.0}}
    out = apply_overrides(base, ["train.lr=2"])
    assert base == {"train": {"lr": 1.0}} and out["train"]["lr"] == 2


def test_model_config_is_what_releases_store() -> None:
    m = ModelConfig(width=4, edge_blocks=1, inpaint_blocks=1)
    assert ModelConfig(**dict(m.__dict__)) == m


def test_a_retired_key_loads_when_off_and_is_refused_when_on(tmp_path: Path) -> None:
    """Runs and releases made while ``model.drawn_flag`` existed (session 31) wrote it out."""
    assert from_dict({"model": {"drawn_flag": False, "width": 8}}).model.width == 8
    with pytest.raises(EdgefillError, match="'model.drawn_flag' was removed.*True"):
        from_dict({"model": {"drawn_flag": True}})
    from edgefill.checkpoint import read_release_config, save_release
    from edgefill.networks import EdgeGenerator, InpaintGenerator

    cfg = ModelConfig(width=4, edge_blocks=1, inpaint_blocks=1)
    rel = save_release(
        tmp_path / "rel", EdgeGenerator(4, 1).state_dict(), InpaintGenerator(4, 1).state_dict(), cfg
    )
    doc = (rel / "config.json").read_text().replace('"width": 4', '"drawn_flag": false, "width": 4')
    (rel / "config.json").write_text(doc)
    assert read_release_config(rel)[0] == cfg
    (rel / "config.json").write_text(doc.replace("false", "true"))
    with pytest.raises(EdgefillError, match="not a valid edgefill release config.*removed"):
        read_release_config(rel)


def test_same_architecture_ignores_only_the_settings_a_release_may_change() -> None:
    a = ModelConfig(width=8, exemplar=True, hole_fill="telea")
    release_settings = {
        "edge_guide": 0.3,
        "copy_detail": 1.0,
        "drawn_copy_detail": 0.2,
        "copy_detail_sigma": 4.0,
    }
    assert same_architecture(a, dataclasses.replace(a, **release_settings))
    assert not same_architecture(a, dataclasses.replace(a, deep_blend=True))
