"""A buyer's price sheet: their own quotes per GPU, which override the catalog's prices.

    prices:
      rtx-4090: {buy_usd: 1999, cloud_usd_per_hour: 0.69, date: 2026-12-01, note: our quote}

The same mapping is accepted as a request's `prices` field and as a file given to
`advisor recommend --prices FILE` (whose entries win over the request's). Each entry needs at
least one of `buy_usd` (purchase, USD per GPU) and `cloud_usd_per_hour` (USD per GPU-hour);
`date` and `note` say where the figure came from and travel into the saved plan.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from advisor.errors import AdvisorError, describe
from advisor.inputs import is_number, load_yaml, read_text

ENTRY_KEYS = ("buy_usd", "cloud_usd_per_hour", "date", "note")
LIMITS = {"buy_usd": 1_000_000.0, "cloud_usd_per_hour": 1000.0}  # as the catalog's ranges
MAX_NOTE = 500


@dataclass(frozen=True)
class SheetPrice:
    """One GPU's prices from a buyer's sheet; `where` names the sheet and entry."""

    buy_usd: float | None
    cloud_usd_per_hour: float | None
    date: str | None
    note: str | None
    where: str

    def describe(self) -> str:
        """Where the price came from, in words: "prices.yaml prices.rtx-4090 (our quote,
        2026-12-01)"."""
        said = ", ".join(x for x in (self.note, self.date) if x)
        return f"{self.where}{f' ({said})' if said else ''}"

    def to_dict(self) -> dict:
        return {"buy_usd": self.buy_usd, "cloud_usd_per_hour": self.cloud_usd_per_hour,
                "date": self.date, "note": self.note}


def parse_sheet(value, source: str) -> dict[str, SheetPrice]:
    """{GPU id: SheetPrice} from a `prices` mapping; AdvisorError naming `source`, the entry
    and the field. GPU ids are checked against the catalog by the planner."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise AdvisorError(f"{source}: field 'prices': expected a mapping of GPU id to "
                           f"{{buy_usd, cloud_usd_per_hour, date, note}}, found {describe(value)}")
    out = {}
    for gpu_id, entry in value.items():
        path = f"prices.{gpu_id}"
        if not isinstance(gpu_id, str) or not gpu_id.strip():
            raise AdvisorError(f"{source}: field 'prices': expected GPU ids as keys, found "
                               f"{describe(gpu_id)}")
        if not isinstance(entry, dict):
            raise AdvisorError(f"{source}: field '{path}': expected a mapping with "
                               f"{', '.join(ENTRY_KEYS)}, found {describe(entry)}")
        unknown = [k for k in entry if k not in ENTRY_KEYS]
        if unknown:
            raise AdvisorError(f"{source}: unknown field '{path}.{unknown[0]}'; known: "
                               f"{', '.join(ENTRY_KEYS)}")
        amounts = {k: _amount(entry, k, f"{source}: field '{path}.{k}'") for k in LIMITS}
        if all(v is None for v in amounts.values()):
            raise AdvisorError(f"{source}: field '{path}': expected buy_usd or "
                               "cloud_usd_per_hour (or both), found neither")
        out[gpu_id.strip().lower()] = SheetPrice(
            **amounts, date=_date(entry.get("date"), f"{source}: field '{path}.date'"),
            note=_note(entry.get("note"), f"{source}: field '{path}.note'"),
            where=f"{source} {path}")
    return out


def load_sheet(path: str | Path) -> dict[str, SheetPrice]:
    """A price-sheet file: a mapping with a `prices` key (or the mapping of GPU ids itself)."""
    doc = load_yaml(read_text(path, "price sheet"), str(path))
    if isinstance(doc, dict) and set(doc) == {"prices"}:
        doc = doc["prices"]
    if not isinstance(doc, dict) or not doc:
        raise AdvisorError(f"{path}: expected a price sheet: a mapping `prices:` of GPU id to "
                           f"{{buy_usd, cloud_usd_per_hour, date, note}}, found {describe(doc)}")
    return parse_sheet(doc, str(path))


def _amount(entry: dict, key: str, where: str) -> float | None:
    value = entry.get(key)
    if value is None:
        return None
    if not (is_number(value) and 0 < value <= LIMITS[key]):
        raise AdvisorError(f"{where}: expected a number > 0 and <= {LIMITS[key]:g}, found "
                           f"{describe(value)}")
    return float(value)


def _date(value, where: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        value = value.date()
    if isinstance(value, dt.date):
        return value.isoformat()
    try:
        return dt.date.fromisoformat(str(value)).isoformat()
    except ValueError:
        raise AdvisorError(f"{where}: expected a date YYYY-MM-DD, found {describe(value)}") \
            from None


def _note(value, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_NOTE:
        raise AdvisorError(f"{where}: expected text of at most {MAX_NOTE} characters, found "
                           f"{describe(value)}")
    return " ".join(value.split()) or None
