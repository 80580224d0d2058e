"""GPU spec catalog: load, validate and query gpu_catalog.yaml.

Users edit the catalog, so validation reports every problem at once, each naming the file, the
entry (id or index), the field, what was expected and what was found. No torch here.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from advisor import CATALOG_PATH
from advisor.contract import QUANTIZATIONS, compute_precision
from advisor.errors import AdvisorError, describe
from advisor.fileio import sha256_file
from advisor.inputs import load_yaml, read_text

VENDORS = ("NVIDIA", "AMD")
SEGMENTS = ("datacenter", "workstation", "consumer")
TOP_LEVEL_FIELDS = ("version", "units", "gpus")
CATALOG_VERSION = 1

# Tensor-core keys of `dense_tflops` that may be null (the part has no such tensor path);
# fp16 and fp32 exist on every GPU we list.
TFLOPS_KEYS = ("bf16", "fp16", "tf32", "fp8", "int8", "fp32")
NULLABLE_TFLOPS = {"bf16", "tf32", "fp8", "int8"}

# Advisor precision name -> key in `dense_tflops` (a quantized precision runs at its compute
# key's: `GPU.dense_tflops`).
PRECISION_KEYS = {
    "bf16": "bf16",
    "fp16": "fp16",
    "fp32": "fp32",
    "fp32-tf32": "tf32",
    "fp8": "fp8",
    "int8": "int8",
}

# Plausible ranges; values outside are almost always a unit mistake (TB/s for GB/s, sparse
# PFLOPS for dense TFLOPS), so they are reported rather than silently accepted.
RANGES = {
    "memory_gb": (1, 2048, "GB"),
    "memory_bandwidth_gbps": (50, 20000, "GB/s"),
    "tdp_w": (10, 3000, "W"),
    "price_usd": (1, 1_000_000, "USD"),
    "cloud_usd_per_hour": (0.01, 1000, "USD per GPU-hour"),
    "dense_tflops": (0.1, 50000, "TFLOPS"),
    "memory_mib": (1, 2_400_000, "MiB"),
    "usable_memory_gb": (1, 2048, "GB"),
}

STRING_FIELDS = ("name", "architecture", "host_interface", "interconnect")
REQUIRED_FIELDS = (
    "id", "name", "vendor", "architecture", "compute_capability", "memory_gb",
    "memory_bandwidth_gbps", "dense_tflops", "tdp_w", "host_interface", "interconnect",
    "segment", "price_usd", "price_date", "match", "runnable", "sources",
)
OPTIONAL_FIELDS = ("memory_mib", "memory_mib_source", "usable_memory_gb",
                   "usable_memory_gb_source", "achieved_bf16_tflops",
                   "achieved_bf16_tflops_source", "price_usd_low", "price_usd_high", "price_kind",
                   "cloud_usd_per_hour", "cloud_price_date", "no_cloud_offer_date", "notes")
# What a purchase price is: a list price (MSRP, launch or vendor price) or a street price (what
# cards or modules sold for, reported by a dated source).
PRICE_KINDS = ("list", "street")
KNOWN_FIELDS = REQUIRED_FIELDS + OPTIONAL_FIELDS

ID_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
UNIT_SUFFIX_RE = re.compile(r"^\s*[-+]?\d[\d,]*(\.\d+)?\s*[A-Za-z/%]+")
COMPUTE_CAPABILITY_RE = {"NVIDIA": re.compile(r"^\d+\.\d+$"), "AMD": re.compile(r"^gfx[0-9a-f]+$")}
COMPUTE_CAPABILITY_HINT = {"NVIDIA": 'a string like "9.0"', "AMD": 'a gfx target like "gfx942"'}

# A reported memory size this far from the catalog entry's is a different SKU under the same
# NVML name (e.g. RTX 4060 Ti 8GB vs 16GB).
MEMORY_MATCH_TOLERANCE = 0.25

MIB = 2**20
GIB = 2**30
# A measured GEMM rate may exceed the datasheet's dense peak a little (GeForce cards boost past
# the clock the peak is quoted at: an RTX 5090 measured 242 against 209.5), not more.
ACHIEVED_OVER_PEAK = 1.25
# `memory_mib` (the total NVML reports) must lie within this fraction of `memory_gb` GiB: NVIDIA
# builds memory in binary units, and ECC or driver reservations hold back a few percent (an
# L40S with ECC on reports 46,068 of 49,152 MiB), so anything further off is a typo.
MEMORY_MIB_TOLERANCE = 0.10


@dataclass(frozen=True)
class GPU:
    """One catalog entry. `tflops` holds the YAML `dense_tflops` mapping (dense, no sparsity)."""

    id: str
    name: str
    vendor: str
    architecture: str
    compute_capability: str
    memory_gb: float
    memory_bandwidth_gbps: float
    tflops: dict
    tdp_w: float | None
    host_interface: str
    interconnect: str
    segment: str
    price_usd: float | None
    price_date: str | None
    match: tuple[str, ...]
    runnable: bool
    sources: tuple[str, ...]
    memory_mib: float | None = None
    memory_mib_source: str | None = None
    # Memory shared with the CPU (unified): the decimal GB a GPU process can allocate, assumed
    usable_memory_gb: float | None = None
    usable_memory_gb_source: str | None = None
    achieved_bf16_tflops: float | None = None  # a cited large-GEMM microbenchmark
    achieved_bf16_tflops_source: str | None = None
    price_usd_low: float | None = None  # a purchase price range, where no single price exists
    price_usd_high: float | None = None
    price_kind: str | None = None  # one of PRICE_KINDS, with any purchase price
    cloud_usd_per_hour: float | None = None
    cloud_price_date: str | None = None
    # The date a search for an on-demand cloud offer of this GPU found none (no cloud price then)
    no_cloud_offer_date: str | None = None
    notes: str | None = None

    @property
    def capacity_gb(self) -> float:
        """Decimal GB of memory the card really has.

        `memory_mib` (the total NVML / nvidia-smi reports) where the catalog has it; otherwise
        `memory_gb` read as GiB, since NVIDIA builds memory in binary units (a "24 GB" RTX 4090
        reports 24,564 MiB = 25.76e9 bytes). The fallback overestimates a little where ECC or
        driver reservations hold memory back; `memory_mib` removes that. Memory shared with the
        CPU (the DGX Spark's LPDDR5X, sold in decimal GB) counts its `usable_memory_gb`.
        """
        if self.usable_memory_gb is not None:
            return float(self.usable_memory_gb)
        if self.memory_mib is not None:
            return self.memory_mib * MIB / 1e9
        return self.memory_gb * GIB / 1e9

    @property
    def capacity_note(self) -> str:
        """What `capacity_gb` is, in a few words beside the figure."""
        if self.usable_memory_gb is not None:
            return f"usable of the {self.memory_gb:g} GB shared with the CPU (assumed)"
        if self.memory_mib is not None:
            return f"the {self.memory_mib:,.0f} MiB NVML reports; spec {self.memory_gb:g} GB"
        return f"spec {self.memory_gb:g} GB read as GiB"

    @property
    def purchase_range_usd(self) -> tuple[float, float] | None:
        """(low, high) purchase price: the catalog's range, or its single price twice; None
        without a price."""
        if self.price_usd_low is not None:
            return self.price_usd_low, self.price_usd_high
        return None if self.price_usd is None else (self.price_usd, self.price_usd)

    @property
    def capability(self) -> tuple[int, int] | None:
        """CUDA compute capability as (major, minor); None for a part without one (AMD)."""
        match = COMPUTE_CAPABILITY_RE["NVIDIA"].match(self.compute_capability)
        return tuple(int(v) for v in self.compute_capability.split(".")) if match else None

    def dense_tflops(self, precision: str) -> float | None:
        """Dense peak for an advisor precision name (a quantized one: the rate its matmuls run
        at, contract.compute_precision); None where the part has no such path."""
        key = PRECISION_KEYS.get(compute_precision(precision))
        if key is None:
            raise AdvisorError(
                f"unknown precision {precision!r}; expected one of "
                f"{', '.join([*PRECISION_KEYS, *QUANTIZATIONS])}")
        return self.tflops.get(key)

    def to_dict(self) -> dict:
        """The entry as it is written in the YAML (field order kept)."""
        d = dataclasses.asdict(self)
        d["dense_tflops"] = dict(d.pop("tflops"))
        d["match"] = list(self.match)
        d["sources"] = list(self.sources)
        return {k: d[k] for k in KNOWN_FIELDS if k in REQUIRED_FIELDS or d[k] is not None}


@dataclass(frozen=True)
class Catalog:
    path: Path
    gpus: list[GPU]
    sha256: str

    def ids(self) -> list[str]:
        return [g.id for g in self.gpus]

    def get(self, gpu_id: str) -> GPU:
        for gpu in self.gpus:
            if gpu.id == gpu_id.strip().lower():
                return gpu
        close = difflib.get_close_matches(gpu_id.lower(), self.ids(), n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise AdvisorError(
            f"unknown GPU id {gpu_id!r} in {self.path}{hint} "
            "(`advisor catalog list` shows every id)"
        )

    def match_nvml(self, name: str, memory_gb: float | None = None) -> GPU | None:
        """The entry for a device name as NVML reports it, e.g. "NVIDIA H100 80GB HBM3".

        Patterns are case-insensitive regular expressions searched in the name; when several
        entries match, the longest (most specific) matching pattern wins. Pass the reported
        memory to tell apart SKUs that share a name (RTX 4060 Ti 8GB/16GB).
        """
        best: tuple[int, GPU] | None = None
        for gpu in self.gpus:
            if memory_gb is not None and not _memory_close(gpu.memory_gb, memory_gb):
                continue
            for pattern in gpu.match:
                if re.search(pattern, name.strip(), re.IGNORECASE):
                    if best is None or len(pattern) > best[0]:
                        best = (len(pattern), gpu)
        return best[1] if best else None


def _memory_close(catalog_gb: float, reported_gb: float) -> bool:
    return abs(reported_gb - catalog_gb) <= MEMORY_MATCH_TOLERANCE * catalog_gb


# --------------------------------------------------------------------------- loading


def load_catalog(path: str | Path = CATALOG_PATH) -> Catalog:
    """Load and validate; AdvisorError listing every problem if the file is not valid."""
    path = Path(path)
    entries, problems = _parse_and_check(path)
    if problems:
        raise AdvisorError(format_problems(path, problems))
    gpus = [_to_gpu(e) for e in entries]
    return Catalog(path=path, gpus=gpus, sha256=sha256_file(path))


def validate_catalog_file(path: str | Path) -> list[str]:
    """Every problem in the catalog file; an empty list means it is valid."""
    return _parse_and_check(Path(path))[1]


def format_problems(path: Path, problems: list[str]) -> str:
    lines = [f"catalog {path} has {len(problems)} problem(s):"]
    lines += [f"  - {p}" for p in problems]
    return "\n".join(lines)


def _to_gpu(entry: dict) -> GPU:
    fields = {k: entry.get(k) for k in KNOWN_FIELDS}
    fields["tflops"] = dict(fields.pop("dense_tflops"))
    fields["match"] = tuple(fields["match"])
    fields["sources"] = tuple(fields["sources"])
    for key in ("price_date", "cloud_price_date", "no_cloud_offer_date"):
        if fields[key] is not None:
            fields[key] = _as_date(fields[key]).isoformat()
    return GPU(**fields)


def _parse_and_check(path: Path) -> tuple[list[dict], list[str]]:
    """(entries, problems) for the file at `path`; entries are only usable without problems."""
    doc, problems = _read_yaml(path)
    if problems:
        return [], problems
    entries, problems = _check_top_level(doc)
    for index, entry in enumerate(entries):
        problems += _check_entry(index, entry)
    problems += _check_across_entries(entries)
    return entries, problems


def _read_yaml(path: Path) -> tuple[object, list[str]]:
    try:
        text = read_text(path, "catalog")
        if not text.strip():
            return None, ["file is empty; expected a mapping with a 'gpus' list"]
        return load_yaml(text, str(path)), []
    except AdvisorError as exc:
        return None, [str(exc).removeprefix(f"{path}: ")]


def _check_top_level(doc: object) -> tuple[list[dict], list[str]]:
    if not isinstance(doc, dict):
        return [], [
            "top level: expected a mapping with keys version, units, gpus; "
            f"found {describe(doc)}"
        ]
    problems = [_unknown_field("top level", key, TOP_LEVEL_FIELDS) for key in doc
                if key not in TOP_LEVEL_FIELDS]
    if doc.get("version", CATALOG_VERSION) != CATALOG_VERSION:
        problems.append(
            f"top level: field 'version': expected {CATALOG_VERSION}, found {doc['version']!r}"
        )
    if "units" in doc and not isinstance(doc["units"], dict):
        problems.append(
            f"top level: field 'units': expected a mapping, found {describe(doc['units'])}"
        )
    gpus = doc.get("gpus")
    if not isinstance(gpus, list) or not gpus:
        problems.append(
            "top level: field 'gpus': expected a non-empty list of entries, "
            f"found {describe(gpus)}"
        )
        return [], problems
    entries = []
    for index, entry in enumerate(gpus):
        if isinstance(entry, dict):
            entries.append(entry)
        else:
            problems.append(
                f"entry {index}: expected a mapping of fields, found {describe(entry)}"
            )
    return entries, problems


def _check_entry(index: int, entry: dict) -> list[str]:
    label = _entry_label(index, entry)
    problems = [_unknown_field(label, key, KNOWN_FIELDS)
                for key in entry if key not in KNOWN_FIELDS]
    problems += [f"{label}: missing field '{key}'" for key in REQUIRED_FIELDS if key not in entry]

    def err(field: str, expected: str, found: object) -> None:
        problems.append(f"{label}: field '{field}': expected {expected}, found {describe(found)}")

    _check_identity(entry, err)
    _check_numbers(entry, err)
    _check_tflops(entry, label, problems, err)
    _check_memory_mib(entry, label, problems, err)
    _check_achieved(entry, label, problems, err)
    _check_prices(entry, label, problems, err)
    _check_lists(entry, err)
    return problems


def _check_identity(entry: dict, err) -> None:
    if "id" in entry and not (isinstance(entry["id"], str) and ID_RE.match(entry["id"])):
        err("id", "a lowercase slug of letters, digits and single hyphens (e.g. h100-sxm-80gb)",
            entry["id"])
    for key in STRING_FIELDS:
        if key in entry and not (isinstance(entry[key], str) and entry[key].strip()):
            err(key, "a non-empty string", entry[key])
    if "notes" in entry and entry["notes"] is not None and not isinstance(entry["notes"], str):
        err("notes", "a string", entry["notes"])
    vendor = entry.get("vendor")
    if "vendor" in entry and vendor not in VENDORS:
        err("vendor", f"one of {', '.join(VENDORS)}", vendor)
    if "segment" in entry and entry["segment"] not in SEGMENTS:
        err("segment", f"one of {', '.join(SEGMENTS)}", entry["segment"])
    if "runnable" in entry and not isinstance(entry["runnable"], bool):
        err("runnable", "true or false", entry["runnable"])
    if "compute_capability" in entry:
        cc = entry["compute_capability"]
        pattern = COMPUTE_CAPABILITY_RE.get(vendor) if vendor in VENDORS else None
        if not isinstance(cc, str):
            err("compute_capability",
                'a quoted string ("9.0"; unquoted, YAML reads it as a float)', cc)
        elif pattern and not pattern.match(cc):
            err("compute_capability", COMPUTE_CAPABILITY_HINT[vendor], cc)


def _check_numbers(entry: dict, err) -> None:
    for key in ("memory_gb", "memory_bandwidth_gbps", "tdp_w"):
        if key in entry and not (key == "tdp_w" and entry[key] is None):
            _check_number(key, entry[key], err)


def _check_number(field: str, value: object, err, range_key: str | None = None) -> bool:
    """Report a non-number or an out-of-range number; True when the value is fine."""
    lo, hi, unit = RANGES[range_key or field]
    if isinstance(value, str) and UNIT_SUFFIX_RE.match(value):
        err(field, f"a bare number in {unit} (unknown unit: the unit is fixed by the field name)",
            value)
        return False
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        err(field, f"a number in {unit}", value)
        return False
    if value <= 0:
        err(field, f"a positive number in {unit}", value)
        return False
    if not lo <= value <= hi:
        err(field, f"a number in {unit} between {lo:g} and {hi:g} (check the unit)", value)
        return False
    return True


def _check_tflops(entry: dict, label: str, problems: list[str], err) -> None:
    if "dense_tflops" not in entry:
        return
    table = entry["dense_tflops"]
    if not isinstance(table, dict):
        err("dense_tflops", f"a mapping with keys {', '.join(TFLOPS_KEYS)}", table)
        return
    problems += [_unknown_field(f"{label}: field 'dense_tflops'", key, TFLOPS_KEYS)
                 for key in table if key not in TFLOPS_KEYS]
    for key in TFLOPS_KEYS:
        field = f"dense_tflops.{key}"
        if key not in table:
            problems.append(f"{label}: missing field '{field}'"
                            + (" (write null if the part has no such tensor path)"
                               if key in NULLABLE_TFLOPS else ""))
        elif table[key] is None:
            if key not in NULLABLE_TFLOPS:
                err(field, "a number in TFLOPS", None)
        else:
            _check_number(field, table[key], err, range_key="dense_tflops")


def _check_memory_mib(entry: dict, label: str, problems: list[str], err) -> None:
    value = entry.get("memory_mib")
    if value is not None and _check_number("memory_mib", value, err):
        memory_gb = entry.get("memory_gb")
        if _is_positive_number(memory_gb):
            lo = (1 - MEMORY_MIB_TOLERANCE) * memory_gb * 1024
            hi = (1 + MEMORY_MIB_TOLERANCE) * memory_gb * 1024
            if not lo <= value <= hi:
                err("memory_mib",
                    f"the total MiB NVML reports, between {lo:,.0f} and {hi:,.0f} "
                    f"({1 - MEMORY_MIB_TOLERANCE:g} to {1 + MEMORY_MIB_TOLERANCE:g} x memory_gb "
                    f"{memory_gb:g} as GiB; check for a typo)", value)
    _check_source("memory_mib", label, entry, problems, err)
    usable = entry.get("usable_memory_gb")
    if usable is not None and _check_number("usable_memory_gb", usable, err) \
            and _is_positive_number(entry.get("memory_gb")) and usable > entry["memory_gb"]:
        err("usable_memory_gb", f"at most memory_gb ({entry['memory_gb']:g}): the share of the "
            "memory a GPU process can allocate", usable)
    _check_source("usable_memory_gb", label, entry, problems, err)


def _check_achieved(entry: dict, label: str, problems: list[str], err) -> None:
    value = entry.get("achieved_bf16_tflops")
    if value is not None and _check_number("achieved_bf16_tflops", value, err,
                                           range_key="dense_tflops"):
        peak = (entry.get("dense_tflops") or {}).get("bf16") \
            if isinstance(entry.get("dense_tflops"), dict) else None
        if _is_positive_number(peak) and value > ACHIEVED_OVER_PEAK * peak:
            err("achieved_bf16_tflops", f"at most {ACHIEVED_OVER_PEAK:g} x the dense bf16 peak "
                f"({peak:g}; boost clocks above the spec clock allow a little more)", value)
    _check_source("achieved_bf16_tflops", label, entry, problems, err)


def _check_source(field: str, label: str, entry: dict, problems: list[str], err) -> None:
    """A measured figure and `<field>_source` (where it was read): both or neither."""
    value, source_field = entry.get(field), f"{field}_source"
    source = entry.get(source_field)
    if source is not None and not (isinstance(source, str) and source.strip()):
        err(source_field,
            f"a non-empty string: the URL or project record the {field} figure was read from",
            source)
    elif isinstance(source, str) and source.strip().startswith("http") and not _is_url(source):
        err(source_field, "an http(s) URL", source)
    if value is not None and source is None:
        problems.append(f"{label}: field '{source_field}': expected where the figure was read "
                        f"(a URL or a project record) because '{field}' is set")
    if source is not None and value is None:
        problems.append(f"{label}: field '{field}': expected a value because "
                        f"'{source_field}' is set (or remove the source)")


def _check_prices(entry: dict, label: str, problems: list[str], err) -> None:
    for amount, date in (("price_usd", "price_date"), ("cloud_usd_per_hour", "cloud_price_date")):
        value, when = entry.get(amount), entry.get(date)
        if value is not None:
            _check_number(amount, value, err)
        if amount == "price_usd" and value is None:
            value = entry.get("price_usd_low")  # a range is a price too
        if when is not None and _as_date(when) is None:
            err(date, "a date YYYY-MM-DD", when)
        keys_missing = amount in REQUIRED_FIELDS and not (amount in entry and date in entry)
        if (value is None) != (when is None) and not keys_missing:
            missing = date if when is None else amount
            problems.append(
                f"{label}: field '{missing}': expected a value because "
                f"'{amount if missing == date else date}' is set (a price needs its date)"
            )
    searched = entry.get("no_cloud_offer_date")
    if searched is not None:
        if _as_date(searched) is None:
            err("no_cloud_offer_date", "a date YYYY-MM-DD", searched)
        elif entry.get("cloud_usd_per_hour") is not None:
            err("no_cloud_offer_date", "no value: the entry has a cloud price", searched)
    _check_price_range(entry, label, problems, err)


def _check_price_range(entry: dict, label: str, problems: list[str], err) -> None:
    """price_usd_low and price_usd_high come together, low below high, instead of price_usd;
    price_kind (list or street) comes with any purchase price and only with one."""
    low, high = entry.get("price_usd_low"), entry.get("price_usd_high")
    if (low is None) != (high is None):
        missing = "price_usd_low" if low is None else "price_usd_high"
        problems.append(f"{label}: field '{missing}': expected a value because the other end of "
                        "the price range is set")
    elif low is not None:
        ends_ok = _check_number("price_usd_low", low, err, range_key="price_usd") \
            & _check_number("price_usd_high", high, err, range_key="price_usd")
        if ends_ok and not low < high:
            err("price_usd_high", f"a number above price_usd_low ({low:g})", high)
        if entry.get("price_usd") is not None:
            err("price_usd", "null when price_usd_low and price_usd_high give a range",
                entry["price_usd"])
    priced = entry.get("price_usd") is not None or low is not None or high is not None
    kind = entry.get("price_kind")
    if priced and kind not in PRICE_KINDS:
        err("price_kind", f"one of {', '.join(PRICE_KINDS)} (what the purchase price is)", kind)
    elif not priced and kind is not None:
        err("price_kind", "no value: there is no purchase price", kind)


def _check_lists(entry: dict, err) -> None:
    sources = entry.get("sources")
    if "sources" in entry:
        if not isinstance(sources, list) or not sources:
            err("sources", "a non-empty list of URLs", sources)
        else:
            for i, url in enumerate(sources):
                if not _is_url(url):
                    err(f"sources[{i}]", "an http(s) URL", url)
    patterns = entry.get("match")
    if "match" in entry:
        if not isinstance(patterns, list):
            err("match", "a list of name patterns (case-insensitive regular expressions)", patterns)
            return
        for i, pattern in enumerate(patterns):
            if not isinstance(pattern, str) or not pattern.strip():
                err(f"match[{i}]", "a non-empty pattern string", pattern)
                continue
            try:
                re.compile(pattern)
            except re.error as exc:
                err(f"match[{i}]", f"a valid regular expression ({exc})", pattern)


def _check_across_entries(entries: list[dict]) -> list[str]:
    problems = []
    first_index: dict[str, int] = {}
    pattern_owner: dict[str, str] = {}
    for index, entry in enumerate(entries):
        gpu_id = entry.get("id")
        if isinstance(gpu_id, str):
            if gpu_id in first_index:
                problems.append(
                    f"entry {index} (id '{gpu_id}'): field 'id': expected a unique id, "
                    f"found a duplicate of entry {first_index[gpu_id]}"
                )
            else:
                first_index[gpu_id] = index
        patterns = entry.get("match") if isinstance(entry.get("match"), list) else []
        for pattern in patterns:
            if not isinstance(pattern, str):
                continue
            key = pattern.strip().lower()
            owner = pattern_owner.setdefault(key, str(gpu_id))
            if owner != str(gpu_id):
                problems.append(
                    f"{_entry_label(index, entry)}: field 'match': pattern {pattern!r} is also "
                    f"used by '{owner}'; each NVML pattern must belong to one entry"
                )
    return problems


# --------------------------------------------------------------------------- helpers


def _entry_label(index: int, entry: dict) -> str:
    gpu_id = entry.get("id")
    return f"entry {index} (id '{gpu_id}')" if isinstance(gpu_id, str) else f"entry {index}"


def _unknown_field(where: str, key: object, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(str(key), known, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else f"; known fields: {', '.join(known)}"
    return f"{where}: unknown field '{key}'{hint}"


def _as_date(value: object) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            return None
    return None


def _is_positive_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _is_url(value: object) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlparse(value.strip())
    return parts.scheme in ("http", "https") and bool(parts.netloc)
