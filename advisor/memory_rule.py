"""The one rule that says whether a config fits a GPU's memory.

Every `fits` the advisor prints (predict, recommend, check-claim, the dashboard) comes from
`verdict`, applied by the fitted models to each prediction:

1. Measurements decide where they exist: a config of the same family (every setting but shape
   and batch) that ran out of memory on this GPU at no more pixels and no larger batch means
   this one does not fit; one that ran at no fewer pixels and no smaller batch means it fits.
   Pixels and batch are compared apart, not as their product: activation memory is not a
   function of pixels x batch alone (a 2048x2048 batch-8 OOM says nothing of 1024x1024
   batch 32, which ran).
2. Otherwise the prediction decides: what a run needs (`needed_gb`: the smallest allocator cap
   it runs under, measured by `advisor probe --min-cap` or predicted, plus the CUDA context or
   the margin) within the card's capacity.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from advisor.contract import Config

# Headroom a predicted config must leave beyond torch's peak allocated memory, at least:
# allocator fragmentation and other processes' memory vary from run to run. A plan request may
# ask for more (`memory_margin_gb`).
DEFAULT_MARGIN_GB = 1.0


@dataclass(frozen=True)
class MeasuredRun:
    """One measured run: its config, `ok` or `oom`, and where it was measured."""

    config: Config
    status: str
    where: str

    @classmethod
    def of_record(cls, record: dict) -> "MeasuredRun":
        return cls(Config.from_record(record["config"]), record["status"],
                   record.get("_source", "record"))

    @cached_property
    def family(self) -> tuple:
        """Its config's family, computed once: every verdict of its GPU compares with it."""
        return self.config.family()


def needed_gb(min_cap_gb: float, context_gb: float,
              margin_gb: float = DEFAULT_MARGIN_GB) -> float:
    """What a run needs on the card: the smallest allocator cap it runs under (its upper bound
    when predicted) plus the CUDA context, or plus `margin_gb` if that is more."""
    return min_cap_gb + max(margin_gb, context_gb)


def verdict(config: Config, needed: float, capacity_gb: float, outcomes: list[MeasuredRun],
            basis: str = "") -> tuple[bool, str]:
    """(fits, reason) for `config` on a GPU with `capacity_gb`, given the measured `outcomes`
    of that GPU (any family: the rule picks the config's own); `basis` says where `needed`
    comes from, for the reason."""
    own = config.family()
    family = [o for o in outcomes if o.family == own]
    for o in family:
        if (o.config.height, o.config.width, o.config.batch) == (config.height, config.width,
                                                                  config.batch):
            return (o.status == "ok",
                    f"measured: this config {'ran' if o.status == 'ok' else 'ran out of memory'}"
                    f" ({o.where})")
    for o in family:
        if o.status == "oom" and config.pixels >= o.config.pixels \
                and config.batch >= o.config.batch:
            return False, (f"measured out of memory at {o.config.shape_label()} batch "
                           f"{o.config.batch} ({o.where}), no larger than this config")
    for o in family:
        if o.status == "ok" and config.pixels <= o.config.pixels \
                and config.batch <= o.config.batch:
            return True, (f"measured: {o.config.shape_label()} batch {o.config.batch} ran "
                          f"({o.where}), no smaller than this config")
    fits = needed <= capacity_gb
    return fits, (f"needs {needed:.1f} GB{f' ({basis})' if basis else ''}, "
                  f"{'within' if fits else 'over'} {capacity_gb:.1f} GB")
