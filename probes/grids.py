"""Probe grids: which configs a sweep measures. Built-in grids below; the same format in YAML for
`--grid FILE.yaml`:

    name: my-grid
    defaults: {steps: 9, caption_tokens: 64}     # optional, applies to every group
    groups:
      - shapes: [[1024, 1024], [768, 1344]]      # height x width, multiples of 16
        batch: [1, 2, 4]
      - precision: [fp16, fp32]
        shapes: [[1024, 1024]]
        end_to_end: true                         # also time full runs to check the composition

A group is the cartesian product of its list-valued keys. Keys: `shapes`, the config fields
(`batch`, `steps`, `guidance_scale`, `precision`, `attention`, `compile`, `offload` (also
`group`), `caption_tokens`, `max_sequence_length`, `vae`, `quant_scope`, `compile_mode`,
`vae_compile`, `vae_channels_last`, `parallel`: a mapping `{mode: data | ulysses | ring, gpus:
N}` or a list of them, see probes/replicas.py), `end_to_end`, `check_equality` (also run the
config once against its plain setting on the same weights: probes.measure) and `max_megapixels`
(drop configs whose height x width x batch exceeds it, in units of 2^20 pixels: a bound on one
config's work). A config listed twice is measured once (end to end, or checked, if either
listing asks). The memory cap is not a grid key: `advisor probe --memory-cap-gib/--emulate/
--min-cap` set it. A grid's top-level `order: listed` runs its groups in the order listed (most
valuable first, for a sweep under a time limit); by default the sweep orders every config by the
pipeline it needs (probes.sweep.order).
"""
from __future__ import annotations

import itertools
from dataclasses import fields, replace
from pathlib import Path

from advisor.contract import CHOICES, CONFIG_FIELDS, Config, Parallel, setting_problem
from advisor.errors import AdvisorError
from advisor.inputs import load_yaml, read_text

MEGAPIXEL = 2**20


SQUARE = [[512, 512], [768, 768], [1024, 1024], [1280, 1280], [1536, 1536], [2048, 2048]]
NON_SQUARE = [[1024, 768], [768, 1344], [1536, 1024]]
AT_1024 = [[1024, 1024]]

BUILT_IN = {
    # Every code path once, small shapes: a new machine's smoke test (~3 minutes on an H100,
    # mostly model offload and compilation). On CPU only the bf16/fp32 native ones run.
    "quick": {
        "defaults": {"shapes": [[512, 512]]},
        "groups": [
            {"batch": [1, 2]},
            {"shapes": [[512, 512], [1024, 1024]], "end_to_end": True},
            {"attention": ["cudnn", "flash"]},
            {"guidance_scale": 4.0},
            {"precision": ["fp16", "fp32", "fp32-tf32"]},
            {"compile": True},
            {"offload": ["model", "sequential"]},
        ],
    },
    # The shipped data set: ~8 minutes on an H100 including loads and compilation.
    # Ordered by pipeline (see sweep.order), not as listed here.
    # Work per config is capped at 16 x 1024^2 pixels (batch 16 at 1024, 4 at 2048).
    "standard": {
        "defaults": {"max_megapixels": 16},
        "groups": [
            {"shapes": SQUARE + NON_SQUARE, "batch": [1, 2, 4, 8, 16]},
            {"shapes": [[512, 512], [1024, 1024], [2048, 2048]], "end_to_end": True},
            {"shapes": AT_1024, "batch": 4, "end_to_end": True},
            {"precision": ["fp16", "fp32", "fp32-tf32"], "shapes": [[512, 512], [1024, 1024]],
             "batch": [1, 4]},
            {"attention": ["cudnn", "flash"], "shapes": AT_1024, "batch": [1, 4]},
            {"compile": True, "shapes": AT_1024, "batch": [1, 4]},
            {"compile": True, "shapes": AT_1024, "end_to_end": True},
            {"offload": ["model", "sequential"], "shapes": AT_1024},
            {"guidance_scale": 4.0, "shapes": AT_1024, "batch": [1, 4]},
            {"caption_tokens": 512, "shapes": AT_1024, "batch": [1, 4]},
        ],
    },
    # A wider characterisation (about an hour on an H100): every shape for every precision,
    # backend and compile; batches to 32; caption lengths; step counts checked end to end.
    "full": {
        "groups": [
            {"shapes": SQUARE + NON_SQUARE, "batch": [1, 2, 4, 8, 16, 32],
             "precision": ["bf16", "fp16", "fp32-tf32"]},
            {"shapes": SQUARE + NON_SQUARE, "batch": [1, 4], "precision": "fp32"},
            {"shapes": SQUARE + NON_SQUARE, "batch": [1, 2, 4, 8, 16],
             "attention": ["cudnn", "flash"]},
            {"shapes": SQUARE + NON_SQUARE, "batch": [1, 2, 4, 8, 16], "compile": True},
            {"shapes": SQUARE, "batch": [1, 2, 4], "offload": ["model", "sequential"]},
            {"shapes": SQUARE, "batch": [1, 2, 4, 8], "guidance_scale": 4.0},
            {"shapes": SQUARE, "batch": [1, 4], "caption_tokens": [16, 128, 256, 512]},
            {"shapes": SQUARE, "steps": [4, 8, 9], "end_to_end": True},
            {"shapes": SQUARE, "batch": 4, "end_to_end": True},
        ],
    },
}

GRID_FIELDS = [name for name in CONFIG_FIELDS if name != "memory_cap_gib"]
GROUP_KEYS = {"shapes", "end_to_end", "check_equality", "max_megapixels"} | set(GRID_FIELDS) \
    - {"height", "width"}
ORDERS = ("pipeline", "listed")


def load_grid(grid: str) -> tuple[str, list[Config]]:
    """(name, configs) of a built-in grid or a YAML grid file."""
    if grid in BUILT_IN:
        return grid, expand(BUILT_IN[grid], f"built-in grid {grid!r}")
    path = Path(grid)
    if not path.is_file():
        raise AdvisorError(f"--grid {grid}: expected {', '.join(BUILT_IN)} or a YAML grid file")
    doc = load_yaml(read_text(path, "grid"), str(path))  # bounded: no alias bomb, no /dev/zero
    if not isinstance(doc, dict):
        raise AdvisorError(f"{path}: expected a mapping with `groups`, got {type(doc).__name__}")
    return str(doc.get("name", path.stem)), expand(doc, str(path))


def expand(grid: dict, where: str) -> list[Config]:
    """Configs of a grid, duplicates merged, in grid order."""
    groups = grid.get("groups")
    if not isinstance(groups, list) or not groups:
        raise AdvisorError(f"{where}: groups: expected a non-empty list of mappings")
    defaults = grid.get("defaults") or {}
    _check_keys(defaults, f"{where}: defaults")
    ordering = grid.get("order", ORDERS[0])
    if ordering not in ORDERS:
        raise AdvisorError(f"{where}: order: expected one of {', '.join(ORDERS)}, "
                           f"got {ordering!r}")
    merged: dict[Config, Config] = {}
    for index, group in enumerate(groups, start=1):
        label = f"{where}: group {index}"
        if not isinstance(group, dict):
            raise AdvisorError(f"{label}: expected a mapping, got {group!r}")
        _check_keys(group, label)
        for config in _group_configs({**defaults, **group}, label):
            if ordering == "listed":
                config = replace(config, priority=index)
            old = merged.get(config, config)
            merged[config] = replace(config, priority=min(old.priority, config.priority),
                                     end_to_end=old.end_to_end or config.end_to_end,
                                     check_equality=old.check_equality or config.check_equality)
    return list(merged.values())


def _check_keys(group: dict, label: str) -> None:
    if not isinstance(group, dict):
        raise AdvisorError(f"{label}: expected a mapping, got {group!r}")
    unknown = sorted(set(group) - GROUP_KEYS)
    if unknown:
        raise AdvisorError(f"{label}: unknown key {unknown[0]!r}; expected one of "
                           f"{', '.join(sorted(GROUP_KEYS))}")


def _group_configs(group: dict, label: str) -> list[Config]:
    shapes = group.get("shapes")
    if not isinstance(shapes, list) or not shapes:
        raise AdvisorError(f"{label}: shapes: expected a list of [height, width], got {shapes!r}")
    for shape in shapes:
        if not (isinstance(shape, list) and len(shape) == 2):
            raise AdvisorError(f"{label}: shapes: expected [height, width], got {shape!r}")
    axes = {k: v if isinstance(v, list) else [v] for k, v in group.items() if k in GRID_FIELDS}
    limit = group.get("max_megapixels")
    configs = []
    for shape in shapes:
        for values in itertools.product(*axes.values()):
            settings = dict(zip(axes, values), height=shape[0], width=shape[1])
            if "parallel" in settings:
                settings["parallel"] = _parallel(settings["parallel"], label)
            config = replace(Config(0, 0), **settings, end_to_end=bool(group.get("end_to_end")),
                             check_equality=bool(group.get("check_equality")))
            _check_config(config, label)
            config = replace(config, guidance_scale=float(config.guidance_scale))  # YAML 4 -> 4.0
            if limit is None or config.pixels * config.batch <= limit * MEGAPIXEL:
                configs.append(config)
    return configs


def _parallel(value, label: str) -> Parallel:
    if not (isinstance(value, dict) and set(value) == {"mode", "gpus"}
            and isinstance(value["mode"], str) and type(value["gpus"]) is int):
        raise AdvisorError(f"{label}: parallel: expected {{mode: data|ulysses|ring, gpus: N}}, "
                           f"got {value!r}")
    layout = Parallel(value["mode"], value["gpus"])
    if layout.problem():
        raise AdvisorError(f"{label}: parallel: {layout.problem()}")
    return layout


def _check_config(config: Config, label: str) -> None:
    types = {f.name: f.type for f in fields(Config)}
    for name in set(GRID_FIELDS) - {"parallel"}:  # checked by _parallel
        value = getattr(config, name)
        expected = {"int": int, "float": (int, float), "str": str, "bool": bool}[types[name]]
        if not isinstance(value, expected) or (isinstance(value, bool) and types[name] != "bool"):
            raise AdvisorError(f"{label}: {name}: expected {types[name]}, got {value!r}")
    for name in ("height", "width"):
        if getattr(config, name) <= 0 or getattr(config, name) % 16:
            raise AdvisorError(f"{label}: {name}: expected a positive multiple of 16, "
                               f"got {getattr(config, name)}")
    for name in ("batch", "steps", "max_sequence_length"):
        if getattr(config, name) < 1:
            raise AdvisorError(f"{label}: {name}: expected >= 1, got {getattr(config, name)}")
    if not 1 <= config.caption_tokens <= config.max_sequence_length:
        raise AdvisorError(f"{label}: caption_tokens: expected 1..max_sequence_length "
                           f"({config.max_sequence_length}), got {config.caption_tokens}")
    if config.guidance_scale < 0:
        raise AdvisorError(f"{label}: guidance_scale: expected >= 0, got {config.guidance_scale}")
    for name, allowed in CHOICES.items():
        if getattr(config, name) not in allowed:
            raise AdvisorError(f"{label}: {name}: expected one of {', '.join(allowed)}, "
                               f"got {getattr(config, name)!r}")
    problem = setting_problem(config)
    if problem:
        raise AdvisorError(f"{label}: {problem}")
