"""The JSON API of a served plan, without any server: a request body checked into a `Job`, and
the error every unservable request gets (status, message naming the field). docs/serving.md
documents the API; `advisor.serve.ingress` puts it behind HTTP.

POST /generate {"prompt": str, "height": int, "width": int, "seed": int?, "steps": int?,
"output": "png" | "size"?} answers {"id", "height", "width", "steps", "seed", "replica",
"batch", "batch_size", "png_bytes", "image_png_base64" (output "png" only), "timings": {...}}.
"""
from __future__ import annotations

import json
import re
import uuid
from dataclasses import asdict, dataclass

from advisor.errors import describe

MAX_BODY_BYTES = 64 * 1024
MAX_PROMPT_CHARS = 4000
MAX_STEPS = 50
MAX_SEED = 2**63 - 1
OUTPUTS = ("png", "size")
FIELDS = ("prompt", "height", "width", "seed", "steps", "output")
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class ApiError(Exception):
    """A request the server answers with `status` and a message instead of an image."""

    def __init__(self, status: int, message: str, retry_after_s: int | None = None):
        super().__init__(message)
        self.status, self.message, self.retry_after_s = status, message, retry_after_s

    def __reduce__(self):  # raised in a replica, it travels to the front pickled
        return ApiError, (self.status, self.message, self.retry_after_s)


@dataclass(frozen=True)
class Job:
    id: str
    prompt: str
    height: int
    width: int
    seed: int
    steps: int
    output: str = "png"

    @property
    def key(self) -> tuple[int, int, int]:
        """What a batch shares: one resolution and one step count."""
        return (self.height, self.width, self.steps)

    def as_dict(self) -> dict:
        return asdict(self)


def request_id(header: str | None) -> str:
    """The client's X-Request-Id when it is a plain token, else a fresh one."""
    if header and REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


def parse_job(body: bytes, rid: str, sizes: set[tuple[int, int]], default_steps: int,
              seed_source) -> Job:
    """The checked job of a request body; ApiError 400 (malformed), 413 (too large) or 422 (a
    size the plan does not cover). `seed_source()` draws a seed when none is given."""
    if len(body) > MAX_BODY_BYTES:
        raise ApiError(413, f"request body of {len(body):,} bytes: at most {MAX_BODY_BYTES:,}")
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"request body: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"request body: expected a JSON object, found {describe(data)}")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise ApiError(400, f"unknown field(s) {', '.join(unknown)}; known: {', '.join(FIELDS)}")
    prompt = data.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > MAX_PROMPT_CHARS:
        raise ApiError(400, f"field 'prompt': expected a non-empty string of at most "
                            f"{MAX_PROMPT_CHARS} characters, found {describe(prompt)}")
    height, width = (_integer(data, name, 1, 8192) for name in ("height", "width"))
    if (height, width) not in sizes:
        served = ", ".join(f"{h}x{w}" for h, w in sorted(sizes))
        raise ApiError(422, f"size {height}x{width} is not served: the plan covers {served}")
    steps = _integer(data, "steps", 1, MAX_STEPS) if "steps" in data else default_steps
    seed = _integer(data, "seed", 0, MAX_SEED) if "seed" in data else seed_source()
    output = data.get("output", "png")
    if output not in OUTPUTS:
        raise ApiError(400, f"field 'output': expected one of {', '.join(OUTPUTS)}, found "
                            f"{describe(output)}")
    return Job(rid, prompt, height, width, seed, steps, output)


def _integer(data: dict, name: str, low: int, high: int) -> int:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ApiError(400, f"field {name!r}: expected an integer {low}..{high}, found "
                            f"{describe(value)}")
    return value


def error_body(rid: str, error: ApiError) -> bytes:
    return json.dumps({"id": rid, "error": error.message, "status": error.status}).encode()
