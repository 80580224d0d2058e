"""What a fleet costs: the price of a GPU (request, else catalog), the monthly cost, capex and
power of N GPUs, and the request's budget limits."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from advisor.errors import AdvisorError
from advisor.request import Request

HOURS_PER_MONTH = 730.0  # 8,760 h / 12


@dataclass(frozen=True)
class Price:
    usd: float  # per GPU-hour (cloud) or per GPU (owned)
    unit: str  # "usd_per_gpu_hour" | "gpu_price_usd"
    source: str


@dataclass(frozen=True)
class NoPrice:
    """Why a GPU has no price in the request's mode, and the request field that gives one. The
    GPU is still sized (its fleet and latency stand without a price)."""

    reason: str
    field: str  # e.g. "prices.rtx-4090.cloud_usd_per_hour"
    unrented: bool = False  # cloud mode: a search of cloud price lists found no offer


def gpu_price(gpu, request: Request) -> Price | NoPrice:
    """The price the cost uses, with its source: the buyer's price sheet, else the request's
    deployment overrides, else the catalog; or why there is none."""
    d, sheet = request.deployment, request.prices.get(gpu.id)
    if d.mode == "cloud":
        if sheet and sheet.cloud_usd_per_hour is not None:
            return Price(sheet.cloud_usd_per_hour, "usd_per_gpu_hour", sheet.describe())
        if gpu.id in d.usd_per_gpu_hour:
            return Price(d.usd_per_gpu_hour[gpu.id], "usd_per_gpu_hour",
                         f"request deployment.cloud.usd_per_gpu_hour.{gpu.id}")
        if gpu.cloud_usd_per_hour:
            return Price(gpu.cloud_usd_per_hour, "usd_per_gpu_hour",
                         f"catalog {gpu.id} cloud_usd_per_hour ({gpu.cloud_price_date})")
        field = f"prices.{gpu.id}.cloud_usd_per_hour"
        if gpu.no_cloud_offer_date:
            return NoPrice(f"no cloud rents it: no on-demand offer in the price lists searched "
                           f"on {gpu.no_cloud_offer_date} (catalog notes); a quote of yours "
                           f"goes in {field}", field, unrented=True)
        return NoPrice(f"no cloud price: the catalog has none; set {field}", field)
    if sheet and sheet.buy_usd is not None:
        return Price(sheet.buy_usd, "gpu_price_usd", sheet.describe())
    if gpu.id in d.gpu_price_usd:
        return Price(d.gpu_price_usd[gpu.id], "gpu_price_usd",
                     f"request deployment.owned.gpu_price_usd.{gpu.id}")
    if gpu.purchase_range_usd:
        low, high = gpu.purchase_range_usd
        where = f"{gpu.price_kind} price, {gpu.price_date}"
        return Price(high, "gpu_price_usd", f"catalog {gpu.id} price_usd ({where})"
                     if low == high else f"catalog {gpu.id} price range ${low:,.0f}-${high:,.0f} "
                     f"({where}), high end used")
    field = f"prices.{gpu.id}.buy_usd"
    return NoPrice(f"no purchase price: the catalog has no dated source for one; set {field} "
                   "(USD per GPU) in the request or a --prices sheet", field)


@dataclass(frozen=True)
class FleetCost:
    """What a fleet costs a month (None without a price), up front, and its power."""

    usd_per_month: float | None
    usd_per_1k_images: float | None
    capex_usd: float | None
    power_kw: float | None
    servers: int
    price: Price | None
    price_needed: NoPrice | None = None  # the GPU has no price: why, and the field to set

    def as_dict(self) -> dict:
        out = {"usd_per_month": self.usd_per_month, "usd_per_1k_images": self.usd_per_1k_images,
               "capex_usd": self.capex_usd, "power_kw": self.power_kw, "servers": self.servers,
               "price": None if self.price is None else asdict(self.price)}
        if self.price_needed is not None:
            out["price_needed"] = asdict(self.price_needed)
        return out


def fleet_cost(request: Request, price: Price | NoPrice, gpu_w: float | None,
               n_gpus: int) -> FleetCost:
    """Monthly cost, capex, power and cost per 1,000 images of `n_gpus` GPUs running all month
    (the fleet is sized for the peak and not scaled down off-peak). Without a price the money
    figures are None and `price_needed` says which request field gives one."""
    d = request.deployment
    servers = math.ceil(n_gpus / d.gpus_per_server)
    power_kw = None if gpu_w is None else (n_gpus * gpu_w + servers * d.server_w) * d.pue / 1e3
    if isinstance(price, NoPrice):
        return FleetCost(None, None, None, power_kw, servers, None, price)
    if d.mode == "cloud":
        capex, usd_per_month = 0.0, n_gpus * price.usd * HOURS_PER_MONTH
    elif power_kw is None:
        raise AdvisorError(f"{price.source}: owned cost needs the GPU's power; the catalog has "
                           "no tdp_w for it and no measured power is known")
    else:
        capex = n_gpus * price.usd + servers * d.server_usd
        usd_per_month = capex / (12 * d.amortization_years) \
            + power_kw * HOURS_PER_MONTH * d.usd_per_kwh
    images_per_month = request.images_per_s * HOURS_PER_MONTH * 3600
    return FleetCost(usd_per_month, usd_per_month / images_per_month * 1000, capex, power_kw,
                     servers, price)


def budget_problems(cost: FleetCost, request: Request) -> list[str]:
    """The request's cost limits that `cost` breaks, each as a sentence."""
    out = []
    if request.max_usd_per_month is not None and cost.usd_per_month > request.max_usd_per_month:
        out.append(f"${cost.usd_per_month:,.0f}/month over the "
                   f"${request.max_usd_per_month:,.0f} budget")
    if request.max_capex_usd is not None and cost.capex_usd > request.max_capex_usd:
        out.append(f"capex ${cost.capex_usd:,.0f} over the ${request.max_capex_usd:,.0f} limit")
    return out


def gpus_within(usd_per_month: float, request: Request, price: Price, gpu_w: float | None,
                n_lower: int) -> int | None:
    """The most serving GPUs (at least `n_lower` - 1) whose fleet costs at most `usd_per_month`
    (None: no limit). The cost grows with the fleet: doubling steps up from the lower bound,
    then bisection."""
    if usd_per_month == math.inf:
        return None

    def within(n: int) -> bool:
        return fleet_cost(request, price, gpu_w, n + request.n_plus_one).usd_per_month \
            <= usd_per_month

    n, step = n_lower - 1, 1
    while within(n + step):
        n, step = n + step, step * 2
    while step > 1:  # n is within, n + step is not
        step //= 2
        if within(n + step):
            n += step
    return n
