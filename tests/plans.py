"""A saved plan of the shipped request, made quickly with the fake models."""
from __future__ import annotations

from pathlib import Path

from advisor.cli import main
from tests.fake_models import FakeModels


def saved_plan(path: Path, gpu: str = "h100-sxm-80gb") -> Path:
    import advisor.commands.recommend as recommend
    from advisor.catalog import load_catalog

    models = FakeModels(load_catalog())
    original = recommend.models_from_args
    recommend.models_from_args = lambda args: models
    try:
        assert main(["recommend", "--request", "examples/request.yaml", "--gpus", gpu,
                     "--out", str(path)]) == 0
    finally:
        recommend.models_from_args = original
    return path
