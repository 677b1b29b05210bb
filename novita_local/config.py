"""How a local server behaves: profile, address, auth, speed, limits, billing and injected faults.

Profiles (README "Profiles"): `novita` (the default) answers as Novita's docs show, helping a
client no more than the real API does: `eta` and `progress_percent` 0, `debug_info` times "",
no `Retry-After`, model names checked against the catalogue, sides capped at 2048 px.
`helpful` keeps the richer answers (estimated eta and progress, real timings, `Retry-After`, any
model name, no side cap) for tests that exercise a client's use of them.

One frozen dataclass, shared by the Python API (`LocalServer(ServerConfig(...))`) and the CLI
flags (`novita_local.cli`). Every fault is a probability drawn from one `random.Random(seed)`, so a
run with the same seed and the same request sequence meets the same faults.

Fault bands: each submit draws one number that falls in at most one of drop / 429 / 500 / 503, and
each task-result poll draws one that falls in at most one of drop / 429 / 500; so each route's
rates must add up to at most 1. Each created task also draws whether it will fail and whether its
images will be served corrupt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, get_args

from inpaint_flows.contract import AUTH_STATUSES, NOVITA_MAX_SIDE

DEFAULT_MAX_BODY_BYTES = 96 * 1024 * 1024  # two 30 MB images as base64 (2 x 40 MiB) fit

Profile = Literal["novita", "helpful"]
PROFILES: tuple[str, ...] = get_args(Profile)
AuthStatus = Literal[401, 403]


@dataclass(frozen=True)
class ServerConfig:
    """Settings of one local Novita-compatible server.

    Args:
        profile: `novita` (default): answers as Novita's docs show; `helpful`: adds estimated
            eta/progress, debug_info timings and Retry-After, accepts any model name and has
            no side cap (see the module docstring).
        host: Interface to bind (`LocalServer` and the CLI); loopback by default.
        port: TCP port; 0 picks a free one (`LocalServer.port` tells which).
        api_key: When set, `Authorization: Bearer <api_key>` is required on /v3 routes; when
            None, any key or none is accepted. Never logged or shown in `repr`.
        auth_status: HTTP status of a refused key: 403 (default; the error-code table: wrong
            key 403 INVALID_API_KEY, missing key 400 MISSING_API_KEY) or 401 (the general error
            guide: 401 for a missing or wrong key, with the same two reason tokens).
        ipm: Images per minute (sliding 60 s window, counting `image_num`); None = unlimited.
        ipm_window_s: The sliding window `ipm` is counted over: 60 s as Novita; a shorter one
            (for short tests) admits `ipm x window / 60` images per window.
            Novita's default for inpainting is 10.
        latency: Simulated processing time per task in seconds, fixed or a (min, max) range
            drawn per task. Added to the real compute time.
        workers: Tasks processed concurrently; the rest wait QUEUED.
        submit_429_rate / submit_500_rate / submit_503_rate: Share of submits answered 429
            RATE_LIMIT_EXCEEDED, 500 CREATE_TASK_FAILED or 503 SERVICE_UNAVAILABLE without
            creating a task.
        drop_submit_rate: Share of submits whose connection is closed without any response.
        drop_after_create: With a dropped submit, False (default) drops before any task exists;
            True processes the submit fully (a valid one creates a task) and then drops: the
            client never learns the task id of a task that runs and is billed.
        result_500_rate / result_429_rate: Share of task-result polls answered 500
            GET_RESULT_FAILED or 429 RATE_LIMIT_EXCEEDED.
        drop_poll_rate: Share of task-result polls whose connection is closed without response.
        task_fail_rate: Share of created tasks that end TASK_STATUS_FAILED with a reason.
        corrupt_image_rate: Share of created tasks whose image files are served truncated.
        image_url_ttl: Seconds a result URL stays valid after the task completes.
        max_side: Largest width or height accepted, in pixels (400 INVALID_IMAGE_SIZE above
            it; no minimum). None = the profile's default (novita 2048, helpful none); 0 = none.
        balance: Images the account can still pay for; each accepted task spends `image_num`,
            and a submit the rest cannot pay is refused 400 BILLING_BALANCE_NOT_ENOUGH.
            None = unlimited. A restart keeps what was spent (it is the account's money).
        moderation_rate: Share of input images refused 400 ILLEGAL_IMAGE_CONTENT. Decided per
            image (a seeded hash of its base64), so resubmitting the same image is refused
            again, as a real content check would.
        unknown_status_rate: Share of polls of an unfinished task answered with status
            TASK_STATUS_UNKNOWN (transient: the next poll draws again).
        seed: Seed of the fault / random-seed / latency generators; None picks one (reported in
            `/_local/stats` as `fault_seed` so the run can be reproduced).
        max_body_bytes: Largest request body accepted; larger ones get 400
            IMAGE_FILE_EXCEEDS_MAX_SIZE before being read into memory.
        request_timeout: Upper bound in seconds on handling one request, body upload included.
        access_log: Let uvicorn log one line per request (method, path, status; no headers).
        signing_key: HMAC key for result URLs; None = random per server.
    """

    profile: Profile = "novita"
    host: str = "127.0.0.1"
    port: int = 0
    api_key: str | None = field(default=None, repr=False)
    auth_status: AuthStatus = 403
    ipm: int | None = None
    ipm_window_s: float = 60.0
    latency: float | tuple[float, float] = 0.0
    workers: int = 2
    submit_429_rate: float = 0.0
    submit_500_rate: float = 0.0
    submit_503_rate: float = 0.0
    drop_submit_rate: float = 0.0
    drop_after_create: bool = False
    result_500_rate: float = 0.0
    result_429_rate: float = 0.0
    drop_poll_rate: float = 0.0
    task_fail_rate: float = 0.0
    corrupt_image_rate: float = 0.0
    image_url_ttl: int = 3600
    max_side: int | None = None
    balance: int | None = None
    moderation_rate: float = 0.0
    unknown_status_rate: float = 0.0
    seed: int | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    request_timeout: float = 60.0
    access_log: bool = False
    signing_key: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"profile must be one of {', '.join(PROFILES)}; got {self.profile!r}")
        if self.auth_status not in AUTH_STATUSES:
            raise ValueError(f"auth_status must be 401 or 403; got {self.auth_status!r}")
        if self.max_side is not None and self.max_side < 0:
            raise ValueError(
                f"max_side must be >= 1 pixel, 0 for no limit, or None for the profile's "
                f"default; got {self.max_side}"
            )
        if self.balance is not None and self.balance < 0:
            raise ValueError(
                f"balance must be >= 0 images (or None for unlimited); got {self.balance}"
            )
        rates = {
            name: getattr(self, name)
            for name in (
                "submit_429_rate",
                "submit_500_rate",
                "submit_503_rate",
                "drop_submit_rate",
                "result_500_rate",
                "result_429_rate",
                "drop_poll_rate",
                "task_fail_rate",
                "corrupt_image_rate",
                "moderation_rate",
                "unknown_status_rate",
            )
        }
        for name, rate in rates.items():
            if not (isinstance(rate, int | float) and 0.0 <= rate <= 1.0):
                raise ValueError(f"{name} must be a probability from 0 to 1; got {rate!r}")
        submit = sum(rates[n] for n in ("submit_429_rate", "submit_500_rate", "submit_503_rate"))
        if submit + self.drop_submit_rate > 1.0 + 1e-9:
            raise ValueError("submit fault rates (429 + 500 + 503 + drop) must add up to <= 1")
        poll = self.result_500_rate + self.result_429_rate + self.drop_poll_rate
        if poll > 1.0 + 1e-9:
            raise ValueError("task-result fault rates (500 + 429 + drop) must add up to <= 1")
        low, high = self.latency_range
        if not (math.isfinite(low) and math.isfinite(high) and 0 <= low <= high):
            raise ValueError(
                f"latency must be >= 0 seconds, or a (min, max) range; got {self.latency!r}"
            )
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1; got {self.workers}")
        if self.ipm is not None and self.ipm < 1:
            raise ValueError(f"ipm must be at least 1 (or None for no limit); got {self.ipm}")
        if self.image_url_ttl < 0:
            raise ValueError(f"image_url_ttl must be >= 0 seconds; got {self.image_url_ttl}")
        if self.max_body_bytes < 1024:
            raise ValueError(f"max_body_bytes must be at least 1024; got {self.max_body_bytes}")
        if not self.request_timeout > 0:
            raise ValueError(f"request_timeout must be > 0 seconds; got {self.request_timeout}")
        if self.api_key == "":
            raise ValueError("api_key must be None (accept any key) or a non-empty string")

    @property
    def helpful(self) -> bool:
        """True under the `helpful` profile (richer answers than Novita gives)."""
        return self.profile == "helpful"

    @property
    def side_limit(self) -> int | None:
        """The per-side cap in force, in pixels; None when there is none."""
        if self.max_side is None:
            return None if self.helpful else NOVITA_MAX_SIDE
        return self.max_side or None

    @property
    def latency_range(self) -> tuple[float, float]:
        """`latency` as (min, max) seconds."""
        if isinstance(self.latency, tuple):
            low, high = self.latency
            return float(low), float(high)
        return float(self.latency), float(self.latency)


def parse_latency(text: str) -> float | tuple[float, float]:
    """`"0.5"` -> 0.5 and `"0.2-1.5"` -> (0.2, 1.5), as the CLI's `--latency` takes it."""
    low, sep, high = text.strip().partition("-")
    try:
        if not sep:
            return float(low)
        return float(low), float(high)
    except ValueError:
        raise ValueError(f"latency must be seconds (2.5) or a range (1-3); got {text!r}") from None
