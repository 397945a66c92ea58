"""Webhooks: JSON POSTs in a Slack-compatible shape (``{"text": ...}`` plus fields), retried
with exponential back-off a bounded number of times.

Every call goes through one ``httpx.Client``; tests hand it a transport (or point it at a
real receiver on 127.0.0.1) and a ``sleep`` that does not wait. Deliveries run on one
background thread, so an alert's rollback and audit event never wait on a slow receiver.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = ["Delivery", "WebhookSender", "backoff_delays"]

log = logging.getLogger(__name__)

FailureHook = Callable[["Delivery", Mapping[str, Any]], None]


def backoff_delays(attempts: int, base_s: float, cap_s: float) -> list[float]:
    """The waits between ``attempts`` tries: base, 2·base, 4·base, … each at most cap."""
    return [min(base_s * 2**i, cap_s) for i in range(max(attempts - 1, 0))]


@dataclass(frozen=True)
class Delivery:
    url: str
    ok: bool
    attempts: int
    status: int | None  # the last HTTP status, None when no answer came
    error: str | None = None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None


class WebhookSender:
    def __init__(
        self,
        *,
        attempts: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        timeout_s: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], Any] | None = None,
        on_failure: FailureHook | None = None,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._closing = threading.Event()
        self.sleep = sleep or self._closing.wait  # a close cuts the waits short
        self.on_failure = on_failure
        self.client = httpx.Client(transport=transport, timeout=timeout_s,
                                   headers={"user-agent": "changeover-alerts"})
        self.deliveries: list[Delivery] = []  # the latest outcomes, newest last (bounded)
        self._queue: queue.Queue[tuple[str, Mapping[str, Any]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def send(self, url: str, payload: Mapping[str, Any]) -> Delivery:
        """POST ``payload`` now, retrying connection failures, timeouts, 5xx and 429 with
        back-off (other 4xx will not get better and stop at once)."""
        delays = backoff_delays(self.attempts, self.backoff_s, self.max_backoff_s)
        status: int | None = None
        error: str | None = None
        made = 0
        for attempt in range(1, self.attempts + 1):
            if attempt > 1 and self._closing.is_set():
                error = f"{error}; no retry: the sender closed"
                break
            wait = delays[attempt - 1] if attempt <= len(delays) else 0.0
            made = attempt
            try:
                response = self.client.post(url, json=dict(payload))
                status = response.status_code
                if response.is_success:
                    return self._done(Delivery(url, True, made, status), payload)
                error = f"HTTP {status}"
                if status != 429 and status < 500:
                    break
                hinted = _retry_after(response)
                if hinted is not None:
                    wait = min(hinted, self.max_backoff_s)
            except httpx.HTTPError as exc:
                status, error = None, f"{type(exc).__name__}: {exc}"
            if attempt < self.attempts:
                log.info("webhook %s failed (%s), attempt %d of %d; next in %.2fs", url, error, attempt,
                         self.attempts, wait)
                self.sleep(wait)
        return self._done(Delivery(url, False, made, status, error), payload)

    def _done(self, delivery: Delivery, payload: Mapping[str, Any]) -> Delivery:
        with self._lock:
            self.deliveries = [*self.deliveries[-99:], delivery]
        if not delivery.ok:
            log.warning("webhook %s gave up after %d attempts: %s", delivery.url, delivery.attempts, delivery.error)
            if self.on_failure is not None:
                try:
                    self.on_failure(delivery, payload)
                except Exception:  # a failing hook must not kill the delivery thread
                    log.exception("webhook failure hook raised")
        return delivery

    def submit(self, urls: Iterable[str], payload: Mapping[str, Any]) -> None:
        """Deliver in the background, to each URL in turn."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="changeover-webhooks", daemon=True)
                self._thread.start()
        for url in urls:
            self._queue.put((url, payload))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self.send(*item)
            except Exception:
                log.exception("webhook delivery failed")
            finally:
                self._queue.task_done()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything submitted so far was delivered or given up."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Stop: deliveries under way get no more retries; what is still queued is dropped."""
        self._closing.set()
        with self._lock:
            thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=timeout)
        self.client.close()
