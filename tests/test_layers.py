"""The import-linter contract (pyproject.toml, run by `make lint`) names every module."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

if sys.version_info < (3, 11):
    pytest.skip("tomllib needs Python 3.11", allow_module_level=True)
import tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_every_module_has_a_layer() -> None:
    """A new module outside the layers would be unchecked: place it in a layer when adding it."""
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(c for c in cfg["contracts"] if c["type"] == "layers")["layers"]
    named = {m.strip() for layer in layers for m in layer.replace(":", "|").split("|")}
    modules = {
        f"edgefill.{p.stem}"
        for p in (ROOT / "src" / "edgefill").glob("*.py")
        if p.stem != "__init__"
    }
    assert modules - named == set(), "add these modules to a layer in pyproject.toml"
    assert named - modules == set(), "these layer entries name no module"
