"""GPU catalog: the shipped file, validation of broken files, NVML matching, the CLI."""
from __future__ import annotations

import copy
import json

import pytest
import yaml

from advisor import CATALOG_PATH
from advisor.catalog import Catalog, load_catalog, validate_catalog_file
from advisor.cli import main
from advisor.errors import AdvisorError
from advisor.fileio import sha256_file

REQUIRED_IDS = {
    "b200-sxm-180gb", "h200-sxm-141gb", "h200-nvl-141gb", "h100-sxm-80gb", "h100-pcie-80gb",
    "h800-sxm-80gb", "h20-96gb", "a100-sxm-40gb", "a100-sxm-80gb", "a100-pcie-40gb",
    "a100-pcie-80gb", "a800-pcie-80gb", "l40s-48gb", "l40-48gb", "l4-24gb", "a10-24gb",
    "a10g-24gb", "t4-16gb", "v100-sxm2-32gb", "rtx-pro-6000-blackwell", "rtx-6000-ada",
    "rtx-a6000", "rtx-5090", "rtx-5080", "rtx-5070-ti", "rtx-5060-ti-16gb", "rtx-4090",
    "rtx-4090d", "rtx-4080-super", "rtx-4070-ti-super", "rtx-4060-ti-16gb", "rtx-3090",
    "rtx-3080-10gb", "rtx-3060-12gb", "mi300x-192gb", "mi325x-256gb",
    "rtx-3090-ti", "rtx-4070-ti", "rtx-4070-super", "rtx-5070", "rtx-5060-ti-8gb", "l20-48gb",
    "a40-48gb", "dgx-spark-gb10",
}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="module")
def shipped_doc() -> dict:
    return yaml.safe_load(CATALOG_PATH.read_text())


def write_catalog(tmp_path, doc) -> str:
    path = tmp_path / "catalog.yaml"
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def two_entry_doc(shipped_doc) -> dict:
    """A small valid catalog: the H100 SXM and RTX 4090 entries of the shipped file."""
    doc = copy.deepcopy(shipped_doc)
    doc["gpus"] = [g for g in doc["gpus"] if g["id"] in ("h100-sxm-80gb", "rtx-4090")]
    return doc


# --------------------------------------------------------------------------- shipped catalog


def test_shipped_catalog_validates(catalog):
    assert validate_catalog_file(CATALOG_PATH) == []
    assert len(catalog.gpus) >= 30
    assert REQUIRED_IDS <= set(catalog.ids())
    assert catalog.sha256 == sha256_file(CATALOG_PATH)


def test_amd_parts_are_not_runnable(catalog):
    for gpu in catalog.gpus:
        assert gpu.runnable == (gpu.vendor == "NVIDIA"), gpu.id
        if gpu.vendor == "AMD":
            assert "ROCm untested by the probe" in gpu.notes


def test_every_price_has_a_date_and_every_entry_a_source(catalog):
    for gpu in catalog.gpus:
        assert gpu.sources, gpu.id
        assert (gpu.purchase_range_usd is None) == (gpu.price_date is None), gpu.id
        assert (gpu.purchase_range_usd is None) == (gpu.price_kind is None), gpu.id
        assert (gpu.cloud_usd_per_hour is None) == (gpu.cloud_price_date is None), gpu.id


def test_datacenter_gpus_have_dated_purchase_prices(catalog):
    """Buy mode covers the datacenter GPUs the sources price (a range where that is what
    exists); the rest are skipped by the planner with the request field that adds a price."""
    priced = {g.id: g.purchase_range_usd for g in catalog.gpus
              if g.segment == "datacenter" and g.purchase_range_usd}
    assert {"b200-sxm-180gb", "h100-sxm-80gb", "a100-sxm-80gb", "a100-sxm-40gb", "l4-24gb",
            "t4-16gb", "a10-24gb", "v100-sxm2-32gb"} <= set(priced)
    assert priced["h100-sxm-80gb"] == (25_000, 30_000)
    assert priced["a10-24gb"] == (2_800, 2_800)
    h100 = catalog.get("h100-sxm-80gb")
    assert (h100.price_kind, h100.price_date) == ("street", "2023-08-16")


def test_dense_rates_are_physically_ordered(catalog):
    # Tensor paths beat the vector FP32 rate, and fp8 doubles 16-bit: a sparse figure left
    # undivided, or a vector rate typed as tensor, breaks one of these.
    for gpu in catalog.gpus:
        fp16, fp32 = gpu.dense_tflops("fp16"), gpu.dense_tflops("fp32")
        assert fp16 >= fp32, gpu.id
        if gpu.dense_tflops("fp8") is not None:
            assert gpu.dense_tflops("fp8") == pytest.approx(2 * fp16, rel=0.02), gpu.id
        if gpu.dense_tflops("fp32-tf32") is not None:
            assert gpu.dense_tflops("fp32-tf32") <= gpu.dense_tflops("bf16"), gpu.id


def test_dense_tflops_by_precision(catalog):
    h100 = catalog.get("h100-sxm-80gb")
    assert h100.dense_tflops("bf16") == 989.4
    assert h100.dense_tflops("fp16") == 989.4
    assert h100.dense_tflops("fp32-tf32") == 494.7
    assert h100.dense_tflops("fp32") == 66.9
    assert h100.dense_tflops("fp8") == 1978.9
    assert h100.dense_tflops("int8") == 1978.9
    t4 = catalog.get("t4-16gb")
    assert t4.dense_tflops("bf16") is None and t4.dense_tflops("fp8") is None
    assert catalog.get("rtx-4090").dense_tflops("bf16") == 165.2  # FP32-accumulate rate
    with pytest.raises(AdvisorError, match="unknown precision 'int4'"):
        h100.dense_tflops("int4")


def test_get_unknown_id_names_close_ids(catalog):
    with pytest.raises(AdvisorError) as exc:
        catalog.get("h100")
    assert "h100-sxm-80gb" in str(exc.value) and "h100-pcie-80gb" in str(exc.value)


# --------------------------------------------------------------------------- memory capacity


def test_capacity_gb_from_memory_mib(catalog):
    # The project's measurement note: an RTX 4090 ("24 GB") shows 24,564 MiB = 25.76e9 bytes.
    rtx4090 = catalog.get("rtx-4090")
    assert rtx4090.memory_mib == 24564
    assert rtx4090.capacity_gb == pytest.approx(25.757, abs=1e-3)
    assert catalog.get("h100-sxm-80gb").capacity_gb == pytest.approx(81559 * 2**20 / 1e9)
    assert catalog.get("h200-sxm-141gb").capacity_gb == pytest.approx(150.755, abs=1e-3)
    # the A10G reports the A10's total: the same need fits both or neither
    assert catalog.get("a10g-24gb").capacity_gb == catalog.get("a10-24gb").capacity_gb


def test_capacity_gb_without_memory_mib_reads_memory_gb_as_gib(catalog):
    gpu = catalog.get("rtx-5080")
    assert gpu.memory_mib is None
    assert gpu.capacity_gb == pytest.approx(16 * 2**30 / 1e9)  # 17.18 GB, not 16


def test_the_dgx_spark_counts_its_usable_share_of_128_gb_shared_with_the_cpu(catalog):
    from advisor.features import GpuSpec

    spark = catalog.get("dgx-spark-gb10")
    # 128 GB of LPDDR5X (decimal, not GiB: 137.4 GB), of which a GPU process gets less
    assert spark.memory_gb == 128 and spark.capacity_gb == pytest.approx(108.7)
    assert spark.capacity_note == "usable of the 128 GB shared with the CPU (assumed)"
    source = GpuSpec.from_catalog(spark).capacity_source
    assert "(assumed: the least CUDA free memory" in source and "101.3 GiB" in source
    assert "issues/47" in source
    h100 = catalog.get("h100-sxm-80gb")
    assert h100.capacity_note == "the 81,559 MiB NVML reports; spec 80 GB"


@pytest.mark.parametrize("fields, message", [
    ({"usable_memory_gb": 20.0}, "field 'usable_memory_gb_source': expected where"),
    ({"usable_memory_gb": 30.0, "usable_memory_gb_source": "x"},
     "field 'usable_memory_gb': expected at most memory_gb (24)"),
])
def test_usable_memory_comes_with_its_source_and_within_the_memory(tmp_path, fields, message):
    import yaml

    doc = yaml.safe_load(CATALOG_PATH.read_text())
    next(g for g in doc["gpus"] if g["id"] == "rtx-4090").update(fields)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert any(message in p for p in validate_catalog_file(path))


def test_memory_mib_is_at_most_memory_gb_as_gib(catalog):
    # ECC and driver reservations only take memory away from the binary capacity.
    for gpu in catalog.gpus:
        if gpu.memory_mib is not None:
            assert gpu.memory_mib <= gpu.memory_gb * 1024, gpu.id
            assert gpu.capacity_gb <= gpu.memory_gb * 2**30 / 1e9, gpu.id


def test_memory_mib_agrees_with_the_probe_records(catalog):
    folder = CATALOG_PATH.parent / "data" / "measurements"
    checked = set()
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            gpu = json.loads(line)["gpu"]
            if gpu.get("catalog_id") and gpu.get("memory_mb"):
                assert catalog.get(gpu["catalog_id"]).memory_mib == gpu["memory_mb"], path.name
                checked.add(gpu["catalog_id"])
    assert {"h100-sxm-80gb", "h200-sxm-141gb"} <= checked


def test_every_memory_mib_has_a_source(catalog):
    for gpu in catalog.gpus:
        assert (gpu.memory_mib is None) == (gpu.memory_mib_source is None), gpu.id
        if gpu.memory_mib_source and gpu.memory_mib_source.startswith("data/"):
            record = gpu.memory_mib_source.split()[0]
            assert (CATALOG_PATH.parent / record).is_file(), gpu.id


# --------------------------------------------------------------------------- NVML matching


@pytest.mark.parametrize("name, expected", [
    ("NVIDIA H100 80GB HBM3", "h100-sxm-80gb"),
    ("NVIDIA H100 PCIe", "h100-pcie-80gb"),
    ("NVIDIA H100 NVL", "h100-nvl-94gb"),
    ("NVIDIA H200", "h200-sxm-141gb"),
    ("NVIDIA H200 NVL", "h200-nvl-141gb"),
    ("NVIDIA H20", "h20-96gb"),
    ("NVIDIA H800", "h800-sxm-80gb"),
    ("NVIDIA B200", "b200-sxm-180gb"),
    ("NVIDIA GeForce RTX 4090", "rtx-4090"),
    ("NVIDIA GeForce RTX 4090 D", "rtx-4090d"),
    ("NVIDIA A100-SXM4-40GB", "a100-sxm-40gb"),
    ("NVIDIA A100-SXM4-80GB", "a100-sxm-80gb"),
    ("NVIDIA A100-PCIE-40GB", "a100-pcie-40gb"),
    ("NVIDIA A100 80GB PCIe", "a100-pcie-80gb"),
    ("NVIDIA L40S", "l40s-48gb"),
    ("NVIDIA L40", "l40-48gb"),
    ("NVIDIA L4", "l4-24gb"),
    ("NVIDIA A10", "a10-24gb"),
    ("NVIDIA A10G", "a10g-24gb"),
    ("Tesla T4", "t4-16gb"),
    ("NVIDIA RTX 6000 Ada Generation", "rtx-6000-ada"),
    ("NVIDIA GeForce RTX 4070 Ti SUPER", "rtx-4070-ti-super"),
    ("NVIDIA GeForce RTX 4070 Ti", "rtx-4070-ti"),
    ("NVIDIA GeForce RTX 4070 SUPER", "rtx-4070-super"),
    ("NVIDIA GeForce RTX 4070", None),
    ("AMD Instinct MI300X", "mi300x-192gb"),
    ("NVIDIA GeForce RTX 3090 Ti", "rtx-3090-ti"),
    ("NVIDIA GeForce RTX 3090", "rtx-3090"),
    ("NVIDIA GeForce RTX 5070", "rtx-5070"),
    ("NVIDIA GeForce RTX 5070 Ti", "rtx-5070-ti"),
    ("NVIDIA GeForce RTX 5060 Ti", "rtx-5060-ti-16gb"),  # no memory given: the 16 GB card
    ("NVIDIA L20", "l20-48gb"),
    ("NVIDIA A40", "a40-48gb"),
    ("NVIDIA GB10", "dgx-spark-gb10"),
    ("NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition", None),
    ("Some Unknown Accelerator", None),
])
def test_match_nvml(catalog, name, expected):
    gpu = catalog.match_nvml(name)
    assert (gpu.id if gpu else None) == expected


def test_match_nvml_uses_memory_to_split_shared_names(catalog):
    # NVML reports binary-ish totals (an H100 80GB shows ~85.5 GB); 8 GB is another SKU.
    assert catalog.match_nvml("NVIDIA H100 80GB HBM3", memory_gb=85.5).id == "h100-sxm-80gb"
    assert catalog.match_nvml("NVIDIA GeForce RTX 4060 Ti", memory_gb=17.2).id == "rtx-4060-ti-16gb"
    assert catalog.match_nvml("NVIDIA GeForce RTX 4060 Ti", memory_gb=8.6) is None
    assert catalog.match_nvml("NVIDIA GeForce RTX 5060 Ti", memory_gb=8.6).id == "rtx-5060-ti-8gb"
    assert catalog.match_nvml("NVIDIA GeForce RTX 5060 Ti", memory_gb=17.1).id == "rtx-5060-ti-16gb"


def test_dgx_spark_says_its_memory_is_shared_and_its_tensor_rates_derived(catalog):
    spark = catalog.get("dgx-spark-gb10")
    assert spark.memory_mib is None  # nvidia-smi reports no total for the GB10
    assert "shares with the CPU and the OS" in spark.notes and "derived" in spark.notes
    # 1 PFLOP FP4 with sparsity: dense FP4 500, FP8 250, BF16 125 (full-rate FP32 accumulate).
    assert spark.dense_tflops("fp8") == 250 and spark.dense_tflops("bf16") == 125


# --------------------------------------------------------------------------- broken catalogs


def _set(field, value, index=0):
    def mutate(doc):
        doc["gpus"][index][field] = value
    return mutate


def _delete(field):
    def mutate(doc):
        del doc["gpus"][0][field]
    return mutate


def _duplicate_id(doc):
    doc["gpus"][1]["id"] = doc["gpus"][0]["id"]


def _rename(old, new):
    def mutate(doc):
        doc["gpus"][0][new] = doc["gpus"][0].pop(old)
    return mutate


def _set_tflops(key, value):
    def mutate(doc):
        doc["gpus"][0]["dense_tflops"][key] = value
    return mutate


def _share_pattern(doc):
    doc["gpus"][1]["match"] = list(doc["gpus"][0]["match"])


BROKEN = {
    "missing field": (_delete("memory_bandwidth_gbps"),
                      ["entry 0 (id 'h100-sxm-80gb')", "missing field 'memory_bandwidth_gbps'"]),
    "negative bandwidth": (_set("memory_bandwidth_gbps", -3350),
                           ["entry 0 (id 'h100-sxm-80gb')", "'memory_bandwidth_gbps'",
                            "positive", "-3350"]),
    "bandwidth in TB/s": (_set("memory_bandwidth_gbps", 3.35),
                          ["'memory_bandwidth_gbps'", "between 50 and 20000", "check the unit"]),
    "unknown unit": (_set("memory_gb", "80 GB"),
                     ["entry 0 (id 'h100-sxm-80gb')", "'memory_gb'", "unknown unit", "'80 GB'"]),
    "unknown field": (_rename("memory_gb", "memroy_gb"),
                      ["entry 0 (id 'h100-sxm-80gb')", "unknown field 'memroy_gb'",
                       "did you mean 'memory_gb'"]),
    "duplicate id": (_duplicate_id, ["entry 1 (id 'h100-sxm-80gb')", "field 'id'", "duplicate"]),
    "wrong type": (_set("tdp_w", "lots"),
                   ["entry 0 (id 'h100-sxm-80gb')", "'tdp_w'", "a number in W", "'lots'"]),
    "boolean as string": (_set("runnable", "yes"), ["'runnable'", "true or false", "'yes'"]),
    "bad id slug": (_set("id", "H100_SXM"), ["entry 0", "'id'", "lowercase slug", "'H100_SXM'"]),
    "unknown segment": (_set("segment", "server"), ["'segment'", "datacenter", "'server'"]),
    "unknown vendor": (_set("vendor", "Nvidia Corp"), ["'vendor'", "NVIDIA, AMD"]),
    "bad date": (_set("price_date", "2024-13-01", index=1),
                 ["entry 1 (id 'rtx-4090')", "'price_date'", "YYYY-MM-DD"]),
    "price without date": (_set("price_date", None, index=1),
                           ["entry 1 (id 'rtx-4090')", "'price_date'", "a price needs its date"]),
    "empty sources": (_set("sources", []), ["'sources'", "non-empty list of URLs"]),
    "source not a URL": (_set("sources", ["NVIDIA datasheet"]), ["'sources[0]'", "http(s) URL"]),
    "unquoted compute capability": (_set("compute_capability", 9.0),
                                    ["'compute_capability'", "quoted string"]),
    "missing tflops key": (lambda doc: doc["gpus"][0]["dense_tflops"].pop("fp8"),
                           ["missing field 'dense_tflops.fp8'", "write null"]),
    "null fp32": (_set_tflops("fp32", None), ["'dense_tflops.fp32'", "a number in TFLOPS"]),
    "sparse PFLOPS typo": (_set_tflops("bf16", 1e6), ["'dense_tflops.bf16'", "between"]),
    "unknown precision key": (_set_tflops("fp4", 1000),
                              ["'dense_tflops'", "unknown field 'fp4'"]),
    "bad regex": (_set("match", ["H100 (SXM"]), ["'match[0]'", "regular expression"]),
    "pattern shared by two entries": (_share_pattern,
                                      ["entry 1 (id 'rtx-4090')", "'match'", "also used by"]),
    "memory_mib typo": (_set("memory_mib", 815590),
                        ["entry 0 (id 'h100-sxm-80gb')", "'memory_mib'",
                         "between 73,728 and 90,112", "memory_gb 80", "typo", "815590"]),
    "memory_mib in GB": (_set("memory_mib", 85.5, index=1),
                         ["entry 1 (id 'rtx-4090')", "'memory_mib'", "between 22,118 and 27,034"]),
    "memory_mib with a unit": (_set("memory_mib", "81559 MiB"),
                               ["'memory_mib'", "unknown unit", "'81559 MiB'"]),
    "negative memory_mib": (_set("memory_mib", -81559), ["'memory_mib'", "positive"]),
    "memory_mib without its source": (lambda doc: doc["gpus"][0].pop("memory_mib_source"),
                                      ["entry 0 (id 'h100-sxm-80gb')", "'memory_mib_source'",
                                       "because 'memory_mib' is set"]),
    "memory_mib source without a value": (lambda doc: doc["gpus"][0].pop("memory_mib"),
                                          ["entry 0 (id 'h100-sxm-80gb')", "'memory_mib'",
                                           "because 'memory_mib_source' is set"]),
    "empty memory_mib source": (_set("memory_mib_source", " "),
                                ["'memory_mib_source'", "non-empty string"]),
    "price without its kind": (lambda doc: doc["gpus"][1].pop("price_kind"),
                               ["entry 1 (id 'rtx-4090')", "'price_kind'", "list, street"]),
    "unknown price kind": (_set("price_kind", "msrp", index=1),
                           ["'price_kind'", "one of list, street", "'msrp'"]),
    "price kind without a price": (lambda doc: doc["gpus"][0].update(
        price_usd_low=None, price_usd_high=None, price_date=None),
                                   ["entry 0 (id 'h100-sxm-80gb')", "'price_kind'",
                                    "no purchase price"]),
    "range with one end": (lambda doc: doc["gpus"][0].pop("price_usd_high"),
                           ["entry 0 (id 'h100-sxm-80gb')", "'price_usd_high'",
                            "other end of the price range"]),
    "range upside down": (_set("price_usd_low", 40_000),
                          ["'price_usd_high'", "a number above price_usd_low (40000)"]),
    "range beside a price": (_set("price_usd", 28_000),
                             ["'price_usd'", "null when price_usd_low and price_usd_high"]),
    "range in thousands": (_set("price_usd_high", "30k"), ["'price_usd_high'", "a bare number"]),
    "range without date": (_set("price_date", None),
                           ["entry 0 (id 'h100-sxm-80gb')", "'price_date'",
                            "a price needs its date"]),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_catalog_names_entry_and_field(tmp_path, shipped_doc, case):
    mutate, expected = BROKEN[case]
    doc = two_entry_doc(shipped_doc)
    mutate(doc)
    path = write_catalog(tmp_path, doc)
    message = "\n".join(validate_catalog_file(path))
    for part in expected:
        assert part in message, f"{part!r} not in:\n{message}"


RAW_BROKEN = {
    "bad YAML": ("gpus:\n  - id: h100-sxm-80gb\n    name: [unclosed\n    vendor: NVIDIA\n",
                 ["invalid YAML", "line "]),
    "empty file": ("  \n", ["file is empty"]),
    "top level is a list": ("- id: h100-sxm-80gb\n", ["top level", "expected a mapping"]),
    "no gpus": ("version: 1\n", ["field 'gpus'", "non-empty list"]),
    "entry not a mapping": ("version: 1\ngpus:\n  - h100\n", ["entry 0", "mapping of fields"]),
}


@pytest.mark.parametrize("case", sorted(RAW_BROKEN))
def test_broken_file_structure(tmp_path, case):
    text, expected = RAW_BROKEN[case]
    message = "\n".join(validate_catalog_file(write_catalog(tmp_path, text)))
    for part in expected:
        assert part in message, f"{part!r} not in:\n{message}"


def test_bad_yaml_reports_the_line(tmp_path):
    text = "version: 1\ngpus:\n  - id: x\n   name: misindented\n"
    (problem,) = validate_catalog_file(write_catalog(tmp_path, text))
    assert problem.startswith("line 4")


def test_file_not_found(tmp_path):
    assert validate_catalog_file(tmp_path / "nope.yaml") == ["catalog file not found"]


def test_load_catalog_lists_every_problem(tmp_path, shipped_doc):
    doc = two_entry_doc(shipped_doc)
    doc["gpus"][0]["memory_gb"] = "80 GB"
    doc["gpus"][1]["tdp_w"] = -450
    path = write_catalog(tmp_path, doc)
    with pytest.raises(AdvisorError) as exc:
        load_catalog(path)
    message = str(exc.value)
    assert "2 problem(s)" in message and path in message
    assert "'memory_gb'" in message and "'tdp_w'" in message


def test_valid_small_catalog_loads(tmp_path, shipped_doc):
    catalog = load_catalog(write_catalog(tmp_path, two_entry_doc(shipped_doc)))
    assert catalog.ids() == ["h100-sxm-80gb", "rtx-4090"]
    assert catalog.get("rtx-4090").price_date == "2022-10-12"


# --------------------------------------------------------------------------- CLI


def test_cli_validate_ok(capsys):
    assert main(["catalog", "validate"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK: ") and "entries" in out


@pytest.mark.parametrize("case", ["missing field", "negative bandwidth", "unknown unit",
                                  "duplicate id", "wrong type"])
def test_cli_validate_broken(tmp_path, shipped_doc, capsys, case):
    mutate, expected = BROKEN[case]
    doc = two_entry_doc(shipped_doc)
    mutate(doc)
    assert main(["catalog", "validate", write_catalog(tmp_path, doc)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: catalog ") and "Traceback" not in err
    for part in expected:
        assert part in err


@pytest.mark.parametrize("text", ["", "gpus: [unclosed\n"])
def test_cli_validate_unparsable(tmp_path, capsys, text):
    assert main(["catalog", "validate", write_catalog(tmp_path, text)]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err


def test_cli_validate_missing_file(tmp_path, capsys):
    assert main(["catalog", "validate", str(tmp_path / "missing.yaml")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_cli_list_table_fits_100_columns(capsys):
    assert main(["catalog", "list"]) == 0
    out = capsys.readouterr().out
    assert "h100-sxm-80gb" in out and "rtx-4090d" in out
    assert max(len(line) for line in out.splitlines()) <= 100


def test_cli_list_json_and_segment(capsys):
    assert main(["catalog", "list", "--format", "json", "--segment", "consumer"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert entries and {e["segment"] for e in entries} == {"consumer"}
    assert "dense_tflops" in entries[0] and entries[0]["sources"]


def test_cli_show(capsys):
    assert main(["catalog", "show", "rtx-4090", "--format", "json"]) == 0
    entry = json.loads(capsys.readouterr().out)
    assert entry["id"] == "rtx-4090" and entry["dense_tflops"]["bf16"] == 165.2
    assert entry["memory_mib"] == 24564 and entry["memory_mib_source"]
    assert main(["catalog", "show", "h200-sxm-141gb"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["memory_gb"] == 141 and shown["sources"]
    assert main(["catalog", "show", "rtx-5080", "--format", "json"]) == 0
    assert "memory_mib" not in json.loads(capsys.readouterr().out)  # optional, left out when unset


def test_cli_show_unknown_id(capsys):
    assert main(["catalog", "show", "rtx4090"]) == 2
    err = capsys.readouterr().err
    assert "unknown GPU id 'rtx4090'" in err and "rtx-4090" in err and "Traceback" not in err


@pytest.mark.parametrize("fields, message", [
    ({"achieved_bf16_tflops": 160.2}, "field 'achieved_bf16_tflops_source': expected where"),
    ({"achieved_bf16_tflops_source": "somewhere"}, "field 'achieved_bf16_tflops': expected a value"),
    ({"achieved_bf16_tflops": 400.0, "achieved_bf16_tflops_source": "x"},
     "field 'achieved_bf16_tflops': expected at most 1.25 x the dense bf16 peak"),
    ({"achieved_bf16_tflops": "160 TFLOPS", "achieved_bf16_tflops_source": "x"},
     "field 'achieved_bf16_tflops': expected a bare number"),
])
def test_achieved_matmul_rate_comes_with_its_source_and_below_the_peak(tmp_path, fields,
                                                                        message):
    import yaml

    doc = yaml.safe_load(CATALOG_PATH.read_text())
    entry = next(g for g in doc["gpus"] if g["id"] == "rtx-4090")
    for key in ("achieved_bf16_tflops", "achieved_bf16_tflops_source"):
        entry.pop(key, None)
    entry.update(fields)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert any(message in p for p in validate_catalog_file(path))


def test_gpus_without_a_cited_matmul_rate_borrow_their_architectures(catalog):
    from advisor.features import specs_of

    specs = specs_of(catalog.gpus)
    assert specs["rtx-4090"].gemm_tflops == 160.17
    assert specs["rtx-4090"].gemm_source == "measured, cited in the catalog"
    borrowed = specs["rtx-4080-super"]
    assert borrowed.gemm_source.startswith("assumed:") and "Ada Lovelace" in borrowed.gemm_source


def test_list_says_none_where_no_cloud_rents_a_gpu(capsys):
    from advisor.cli import main

    assert main(["catalog", "list"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:]
            if line.strip()}
    assert rows["h800-sxm-80gb"].split()[-2] == "none"  # no_cloud_offer_date in the catalog
    assert rows["h100-sxm-80gb"].split()[-2] == "2.95"
