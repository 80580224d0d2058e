"""The GPUs page's table of what fits each card (advisor.app.gpus.fit_limits)."""
from __future__ import annotations

from advisor.app.gpus import fit_limits
from advisor.catalog import load_catalog
from tests.fake_models import FakeModels


def test_largest_batch_and_size_follow_the_fits_verdict():
    catalog = load_catalog()
    models = FakeModels(catalog)
    limits = fit_limits(models, catalog)
    row = limits[(limits.gpu == "h100-sxm-80gb") & (limits.offload == "none")].iloc[0]
    # fake law: 20.6 GB of bf16 weights + 2 GB per megapixel-image + 1 GB margin, on 85.5 GB
    assert row.batch_1024 == 16  # 20.6 + 32 + 1 = 53.6 fits; batch 32: 85.6 does not
    assert row.side_b1 == 4096  # 20.6 + 32 + 1 fits
    assert row.batch_1024_source == "fake law"
    tiny = limits[(limits.gpu == "rtx-5060-ti-8gb") & (limits.offload == "none")].iloc[0]
    assert tiny.batch_1024 is None or tiny.batch_1024 != tiny.batch_1024  # None / NaN
    assert tiny.batch_1024_source.startswith("nothing fits: needs")
