"""Everything one running server holds, and the operations routes share (auth, submit, restart)."""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Mapping
from typing import Any, TypeVar

from inpaint_flows.contract import InpaintingBody
from novita_local.config import ServerConfig
from novita_local.errors import ApiError
from novita_local.faults import FaultInjector
from novita_local.images import DecodedPair
from novita_local.inpaint import InpaintSettings, resolve_algorithm
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
        self.limiter = RateLimiter(config.ipm)
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
        """Check `Authorization: Bearer <key>` when a key is configured; never echo the key."""
        expected = self.config.api_key
        if expected is None:
            return
        scheme, _, token = headers.get("authorization", "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiError(
                "MISSING_API_KEY",
                "missing API key: send the header `Authorization: Bearer <your key>`",
            )
        if not hmac.compare_digest(token.encode(), expected.encode()):
            raise ApiError("INVALID_API_KEY", "the API key is not valid for this server")

    def create_task(self, body: InpaintingBody, images: DecodedPair, base_url: str) -> Task:
        """Spend rate-limit capacity, then create and queue the task."""
        request = body.request
        extra = body.extra
        wait = self.limiter.try_acquire(request.image_num)
        if wait is not None:
            self.stats.limited("ipm")
            raise ApiError(
                "RATE_LIMIT_EXCEEDED",
                f"rate limit exceeded: {self.config.ipm} images per minute; this request asks "
                f"for {request.image_num} and {self.limiter.used()} were accepted in the last "
                f"60 s; retry after {retry_after_header(wait)} s",
                headers={"Retry-After": retry_after_header(wait)},
            )
        seed = request.seed if request.seed is not None and request.seed >= 0 else None
        settings = InpaintSettings(
            algorithm=resolve_algorithm(request.model_name),
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

    def result_body(self, task: Task) -> dict[str, Any]:
        eta, progress = self.pool.estimate(task)
        return task_result(task, eta, progress)

    def snapshot(self) -> dict[str, Any]:
        return self.stats.snapshot(self.store.counts_by_status())

    def _finished(self, task: Task) -> None:
        if task.webhook_url:
            self.webhooks.send(task.webhook_url, self.result_body(task))


def _or(value: T | None, default: T) -> T:
    return default if value is None else value
