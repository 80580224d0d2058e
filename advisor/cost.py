"""What a fleet costs: the price of a GPU (request, else catalog), the monthly cost, capex and
power of N GPUs, and the request's budget limits."""
from __future__ import annotations

import math
from dataclasses import dataclass

from advisor.errors import AdvisorError
from advisor.request import Request

HOURS_PER_MONTH = 730.0  # 8,760 h / 12


@dataclass(frozen=True)
class Price:
    usd: float  # per GPU-hour (cloud) or per GPU (owned)
    unit: str  # "usd_per_gpu_hour" | "gpu_price_usd"
    source: str


def gpu_price(gpu, request: Request) -> Price | str:
    """The price the cost uses, with its source, or why there is none."""
    d = request.deployment
    if d.mode == "cloud":
        if gpu.id in d.usd_per_gpu_hour:
            return Price(d.usd_per_gpu_hour[gpu.id], "usd_per_gpu_hour",
                         f"request deployment.cloud.usd_per_gpu_hour.{gpu.id}")
        if gpu.cloud_usd_per_hour:
            return Price(gpu.cloud_usd_per_hour, "usd_per_gpu_hour",
                         f"catalog {gpu.id} cloud_usd_per_hour ({gpu.cloud_price_date})")
        return (f"no cloud price: the catalog has none; set "
                f"deployment.cloud.usd_per_gpu_hour.{gpu.id}")
    if gpu.id in d.gpu_price_usd:
        return Price(d.gpu_price_usd[gpu.id], "gpu_price_usd",
                     f"request deployment.owned.gpu_price_usd.{gpu.id}")
    if gpu.purchase_range_usd:
        low, high = gpu.purchase_range_usd
        where = f"{gpu.price_kind} price, {gpu.price_date}"
        return Price(high, "gpu_price_usd", f"catalog {gpu.id} price_usd ({where})"
                     if low == high else f"catalog {gpu.id} price range ${low:,.0f}-${high:,.0f} "
                     f"({where}), high end used")
    return (f"no purchase price: the catalog has no dated source for one; add it as "
            f"deployment.owned.gpu_price_usd.{gpu.id} in the request (USD per GPU), or add "
            "price_usd, price_date and price_kind to its catalog entry")


def fleet_cost(request: Request, price: Price, gpu_w: float | None, n_gpus: int) -> dict:
    """Monthly cost, capex, power and cost per 1,000 images of `n_gpus` GPUs running all month
    (the fleet is sized for the peak and not scaled down off-peak)."""
    d = request.deployment
    servers = math.ceil(n_gpus / d.gpus_per_server)
    power_kw = None if gpu_w is None else (n_gpus * gpu_w + servers * d.server_w) * d.pue / 1e3
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
    return {"usd_per_month": usd_per_month, "usd_per_1k_images": usd_per_month
            / images_per_month * 1000, "capex_usd": capex, "power_kw": power_kw,
            "servers": servers, "price": {"usd": price.usd, "unit": price.unit,
                                          "source": price.source}}


def budget_problems(cost: dict, request: Request) -> list[str]:
    """The request's cost limits that `cost` breaks, each as a sentence."""
    out = []
    if request.max_usd_per_month is not None and cost["usd_per_month"] > request.max_usd_per_month:
        out.append(f"${cost['usd_per_month']:,.0f}/month over the "
                   f"${request.max_usd_per_month:,.0f} budget")
    if request.max_capex_usd is not None and cost["capex_usd"] > request.max_capex_usd:
        out.append(f"capex ${cost['capex_usd']:,.0f} over the ${request.max_capex_usd:,.0f} limit")
    return out


def gpus_within(usd_per_month: float, request: Request, price: Price, gpu_w: float | None,
                n_lower: int) -> int | None:
    """The most serving GPUs (at least `n_lower` - 1) whose fleet costs at most `usd_per_month`
    (None: no limit). The cost grows with the fleet: doubling steps up from the lower bound,
    then bisection."""
    if usd_per_month == math.inf:
        return None

    def within(n: int) -> bool:
        return fleet_cost(request, price, gpu_w, n + request.n_plus_one)["usd_per_month"] \
            <= usd_per_month

    n, step = n_lower - 1, 1
    while within(n + step):
        n, step = n + step, step * 2
    while step > 1:  # n is within, n + step is not
        step //= 2
        if within(n + step):
            n += step
    return n
