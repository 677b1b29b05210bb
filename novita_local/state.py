"""Everything one running server holds, and the operations routes share (auth, submit, restart)."""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Mapping
from typing import Any, TypeVar

from inpaint_flows.contract import TASK_STATUS_UNKNOWN, InpaintingBody
from novita_local.billing import Balance
from novita_local.catalog import algorithm_for
from novita_local.config import ServerConfig
from novita_local.errors import ApiError
from novita_local.faults import FaultInjector
from novita_local.images import DecodedPair
from novita_local.inpaint import InpaintSettings
from novita_local.ratelimit import RateLimiter, retry_after_header
from novita_local.results import task_result
from novita_local.signing import UrlSigner
from novita_local.stats import Stats
from novita_local.store import Task, TaskStore
from novita_local.webhooks import WebhookSender
from novita_local.worker import ComputeModel, WorkerPool

T = TypeVar("T")

# Defaults for optional fields the contract leaves unset (A1111's defaults where Novita is silent).
DEFAULT_MASK_BLUR = 4
DEFAULT_FULL_RES_PADDING = 8
DEFAULT_STRENGTH = 1.0


class ServerState:
    """Store, workers, limiter, faults, signer and stats of one server."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.faults = FaultInjector(config)
        self.stats = Stats(self.faults.seed)
        self.store = TaskStore()
        self.signer = UrlSigner(config.signing_key) if config.signing_key else UrlSigner.random()
        self.limiter = RateLimiter(config.ipm, window=config.ipm_window_s)
        self.balance = Balance(config.balance)
        self.compute = ComputeModel()
        self.webhooks = WebhookSender(self.stats)
        self.pool = WorkerPool(
            self.store,
            self.signer,
            workers=config.workers,
            image_url_ttl=config.image_url_ttl,
            compute=self.compute,
            on_finished=self._finished,
        )

    def start(self) -> None:
        self.pool.start()
        self.webhooks.start()

    def stop(self) -> None:
        self.pool.stop()
        self.webhooks.stop()

    def restart(self) -> None:
        """Simulate a crash and restart: every task, queued or done, is lost (polls get 404)."""
        self.pool.clear()
        self.store.clear()
        self.limiter.reset()
        self.stats.restarted()

    def authorize(self, headers: Mapping[str, str]) -> None:
        """Check `Authorization: Bearer <key>` when a key is configured; never echo the key.

        A refusal is 400 MISSING_API_KEY / 403 INVALID_API_KEY (the error-code table), or 401
        with the same reason tokens when `auth_status` is 401 (the general error guide, which
        gives 401 for a missing or wrong key and names no token).
        """
        expected = self.config.api_key
        if expected is None:
            return
        status = 401 if self.config.auth_status == 401 else None
        scheme, _, token = headers.get("authorization", "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            self.stats.refuse_auth("MISSING_API_KEY")
            raise ApiError(
                "MISSING_API_KEY",
                "missing API key: send the header `Authorization: Bearer <your key>`",
                status=status,
            )
        if not hmac.compare_digest(token.encode(), expected.encode()):
            self.stats.refuse_auth("INVALID_API_KEY")
            raise ApiError(
                "INVALID_API_KEY", "the API key is not valid for this server", status=status
            )

    def create_task(self, body: InpaintingBody, images: DecodedPair, base_url: str) -> Task:
        """Check the balance and the content, spend rate-limit capacity, then create the task.

        Order (our assumption; Novita's is undocumented): balance, moderation, rate limit. A
        refused submit spends neither balance nor rate-limit capacity.
        """
        request = body.request
        extra = body.extra
        if not self.balance.affords(request.image_num):
            raise ApiError(
                "BILLING_BALANCE_NOT_ENOUGH",
                f"the account's balance is not enough for {request.image_num} image(s) "
                f"({self.balance.left} left); top up the account, then submit again",
            )
        if self.faults.moderated(request.image_base64):
            self.stats.fault("moderation")
            raise ApiError(
                "ILLEGAL_IMAGE_CONTENT",
                "request.image_base64 was refused by the content check (local server: "
                "moderation_rate); this image will be refused again, use another one",
            )
        wait = self.limiter.try_acquire(request.image_num)
        if wait is not None:
            self.stats.limited("ipm")
            raise self._rate_limited(request.image_num, wait)
        self.balance.spend(request.image_num)
        seed = request.seed if request.seed is not None and request.seed >= 0 else None
        settings = InpaintSettings(
            algorithm=algorithm_for(request.model_name),
            mask_blur=_or(request.mask_blur, DEFAULT_MASK_BLUR),
            invert=bool(request.inpainting_mask_invert),
            full_res=bool(request.inpainting_full_res),
            full_res_padding=_or(request.inpainting_full_res_padding, DEFAULT_FULL_RES_PADDING),
            fill=request.inpainting_fill,
            strength=_or(request.strength, DEFAULT_STRENGTH),
            seed=seed if seed is not None else self.faults.random_seed(),
            image_num=request.image_num,
        )
        will_fail, corrupt = self.faults.task()
        if will_fail:
            self.stats.fault("task_failed")
        if corrupt:
            self.stats.fault("corrupt_image")
        pixels = images.image.width * images.image.height * request.image_num
        task = Task(
            task_id=str(uuid.uuid4()),
            settings=settings,
            image_type=(extra.response_image_type if extra else None) or "png",
            base_url=base_url,
            latency=self.faults.latency(),
            estimated_compute=self.compute.predict(pixels),
            will_fail=will_fail,
            corrupt=corrupt,
            enable_nsfw_detection=bool(extra and extra.enable_nsfw_detection),
            webhook_url=extra.webhook.url if extra and extra.webhook else None,
            image=images.image,
            mask=images.mask,
        )
        self.store.add(task)
        self.pool.enqueue(task)
        return task

    def _rate_limited(self, images: int, wait: float) -> ApiError:
        """The 429 for an over-limit submit: `helpful` says when to retry, `novita` does not."""
        message = (
            f"rate limit exceeded: {self.config.ipm} images per minute; this request asks for "
            f"{images} and {self.limiter.used()} were accepted in the last 60 s"
        )
        if not self.config.helpful:
            return ApiError("RATE_LIMIT_EXCEEDED", message)
        retry_after = retry_after_header(wait)
        return ApiError(
            "RATE_LIMIT_EXCEEDED",
            f"{message}; retry after {retry_after} s",
            headers={"Retry-After": retry_after},
        )

    def result_body(self, task: Task) -> dict[str, Any]:
        """The task-result body (also the webhook payload), as the profile shows it.

        `novita`: eta 0, progress 0 and every debug_info time "" at every status, as Novita's
        example of a finished task shows. `helpful`: estimated eta and progress, real timings.
        """
        if not self.config.helpful:
            return task_result(task, 0, 0, timings=False)
        eta, progress = self.pool.estimate(task)
        return task_result(task, eta, progress)

    def poll_body(self, task: Task) -> dict[str, Any]:
        """`result_body` for a poll: an unfinished task may report TASK_STATUS_UNKNOWN."""
        if not task.finished and self.faults.unknown_status():
            self.stats.fault("unknown_status")
            eta, progress = (0, 0) if not self.config.helpful else self.pool.estimate(task)
            return task_result(
                task, eta, progress, timings=self.config.helpful, status=TASK_STATUS_UNKNOWN
            )
        return self.result_body(task)

    def snapshot(self) -> dict[str, Any]:
        return self.stats.snapshot(
            self.store.counts_by_status(),
            profile=self.config.profile,
            balance=self.balance.left,
            spent=self.balance.spent,
        )

    def _finished(self, task: Task) -> None:
        if task.webhook_url:
            self.webhooks.send(task.webhook_url, self.result_body(task))


def _or(value: T | None, default: T) -> T:
    return default if value is None else value
