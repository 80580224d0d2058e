"""`advisor catalog`: validate, list and show the GPU spec catalog (gpu_catalog.yaml)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from advisor import CATALOG_PATH
from advisor.catalog import SEGMENTS, load_catalog
from advisor.commands.common import add_catalog_arg, add_format_arg


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "catalog",
        help="check, list or show GPU specs",
        description="The GPU spec catalog: dense tensor TFLOPS, memory, bandwidth, power, "
        "prices and the source of every figure. Edit gpu_catalog.yaml, then validate it.",
    )
    sub = p.add_subparsers(dest="catalog_command", metavar="SUBCOMMAND", required=True)

    v = sub.add_parser("validate", help="check a catalog file and report every problem",
                       description="Check types, units, ranges, ids and sources; exit 2 on "
                       "any problem, naming the entry and field.")
    v.add_argument("path", nargs="?", type=Path, default=CATALOG_PATH,
                   help=f"catalog file (default {CATALOG_PATH.name} in the repository)")
    v.set_defaults(func=run_validate)

    ls = sub.add_parser("list", help="one line per GPU", description="List catalog entries.")
    add_format_arg(ls)
    ls.add_argument("--segment", choices=SEGMENTS, help="only this market segment")
    add_catalog_arg(ls)
    ls.set_defaults(func=run_list)

    show = sub.add_parser("show", help="every field of one GPU, with sources",
                          description="Print one catalog entry.")
    show.add_argument("id", help="catalog id, e.g. h100-sxm-80gb (see `advisor catalog list`)")
    add_format_arg(show, ("yaml", "json"))
    add_catalog_arg(show)
    show.set_defaults(func=run_show)


def run_validate(args: argparse.Namespace) -> int:
    # load_catalog raises AdvisorError listing every problem; the CLI prints it and exits 2.
    print(f"OK: {len(load_catalog(args.path).gpus)} entries in {args.path}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    catalog = load_catalog(args.catalog)
    gpus = [g for g in catalog.gpus if args.segment in (None, g.segment)]
    if args.format == "json":
        print(json.dumps([g.to_dict() for g in gpus], indent=2))
    else:
        print(format_table(gpus))
        print(f"\n{len(gpus)} GPUs from {catalog.path} (sha256 {catalog.sha256[:12]})")
        print("TFLOPS are dense peaks; buy $ is the purchase price per GPU (a range where the "
              "sources give one),\n$/h the cloud price per GPU-hour (none: no on-demand offer "
              "found); `advisor catalog show ID`\ngives their dates, sources and notes.")
    return 0


def run_show(args: argparse.Namespace) -> int:
    import yaml

    entry = load_catalog(args.catalog).get(args.id).to_dict()
    if args.format == "json":
        print(json.dumps(entry, indent=2))
    else:
        print(yaml.safe_dump(entry, sort_keys=False, allow_unicode=True, width=96), end="")
    return 0


COLUMNS = (  # header, width, cell
    ("id", 23, lambda g: g.id),
    ("segment", 11, lambda g: g.segment),
    ("mem GB", 6, lambda g: _num(g.memory_gb)),
    ("BW GB/s", 7, lambda g: _num(g.memory_bandwidth_gbps)),
    ("bf16", 6, lambda g: _num(g.dense_tflops("bf16"))),
    ("fp8", 6, lambda g: _num(g.dense_tflops("fp8"))),
    ("fp32", 5, lambda g: _num(g.dense_tflops("fp32"))),
    ("TDP W", 5, lambda g: _num(g.tdp_w)),
    ("buy $", 7, lambda g: _price(g.purchase_range_usd)),
    ("$/h", 5, lambda g: f"{g.cloud_usd_per_hour:.2f}" if g.cloud_usd_per_hour is not None
     else "none" if g.no_cloud_offer_date else "-"),
    ("probe", 5, lambda g: "yes" if g.runnable else "no"),
)


def format_table(gpus) -> str:
    """Fixed-width table; fits a 100-column terminal."""
    def row(cells):
        first, *rest = cells
        return f"{first:<{COLUMNS[0][1]}}" + "".join(
            f" {c:>{w}}" for c, (_, w, _) in zip(rest, COLUMNS[1:])
        )

    header = row([h for h, _, _ in COLUMNS])
    units = row(["", "", "", "", "TFLOPS", "TFLOPS", "TFLOPS", "", "", "cloud", ""])
    return "\n".join([header, units] + [row([cell(g) for _, _, cell in COLUMNS]) for g in gpus])


def _price(bounds: tuple[float, float] | None) -> str:
    """A purchase price: "1,599", or a range in thousands: "25-30k"; "-" without one."""
    if bounds is None:
        return "-"
    low, high = bounds
    return _num(low) if low == high else f"{low / 1000:g}-{high / 1000:g}k"


def _num(value) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:g}"
