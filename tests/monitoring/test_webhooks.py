"""Webhooks against a real HTTP receiver on 127.0.0.1: retries with back-off, bounded."""

from __future__ import annotations

import time

import pytest
from monhelpers import Receiver, free_port

from changeover.monitoring.webhooks import Delivery, WebhookSender, backoff_delays


def test_backoff_doubles_up_to_the_cap() -> None:
    assert backoff_delays(6, 0.5, 3.0) == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff_delays(1, 0.5, 3.0) == []


def test_retries_after_a_server_error() -> None:
    waits: list[float] = []
    with Receiver([500]) as receiver:
        sender = WebhookSender(attempts=4, backoff_s=0.5, sleep=waits.append)
        delivery = sender.send(receiver.url, {"text": "hello"})
        sender.close()
    assert delivery == Delivery(receiver.url, True, 2, 200)
    assert receiver.answered == [500, 200] and receiver.received == [{"text": "hello"}] * 2
    assert waits == [0.5]


def test_gives_up_after_the_bounded_attempts() -> None:
    waits: list[float] = []
    failures: list[Delivery] = []
    with Receiver([503] * 10) as receiver:
        sender = WebhookSender(attempts=3, backoff_s=0.25, sleep=waits.append, on_failure=lambda d, p: failures.append(d))
        delivery = sender.send(receiver.url, {"text": "x"})
        sender.close()
    assert not delivery.ok and delivery.attempts == 3 and delivery.status == 503
    assert len(receiver.received) == 3 and waits == [0.25, 0.5]
    assert failures == [delivery]


def test_a_client_error_is_not_retried() -> None:
    waits: list[float] = []
    with Receiver([404]) as receiver:
        sender = WebhookSender(attempts=5, sleep=waits.append)
        delivery = sender.send(receiver.url, {"text": "x"})
        sender.close()
    assert (delivery.ok, delivery.attempts, delivery.status) == (False, 1, 404) and waits == []


def test_an_unreachable_receiver_is_retried() -> None:
    waits: list[float] = []
    sender = WebhookSender(attempts=3, backoff_s=0.1, timeout_s=1, sleep=waits.append)
    delivery = sender.send(f"http://127.0.0.1:{free_port()}/hook", {"text": "x"})
    sender.close()
    assert not delivery.ok and delivery.status is None and "ConnectError" in (delivery.error or "")
    assert waits == [0.1, 0.2]


def test_background_delivery_reaches_every_url() -> None:
    with Receiver([500]) as one, Receiver() as two:
        sender = WebhookSender(attempts=3, backoff_s=0.01)
        sender.submit([one.url, two.url], {"text": "fire"})
        assert sender.flush(timeout=10)
        sender.close()
    assert one.ok() == [{"text": "fire"}] and two.ok() == [{"text": "fire"}]
    assert [d.ok for d in sender.deliveries] == [True, True]


def test_attempts_must_be_positive() -> None:
    with pytest.raises(ValueError):
        WebhookSender(attempts=0)


def test_close_cuts_the_back_off_short() -> None:
    with Receiver([503] * 10) as receiver:
        sender = WebhookSender(attempts=5, backoff_s=30.0)  # waits on its own event, not time.sleep
        sender.submit([receiver.url], {"text": "x"})
        deadline = time.monotonic() + 10
        while not receiver.received:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        started = time.monotonic()
        sender.close()
        assert time.monotonic() - started < 3
    (delivery,) = sender.deliveries
    assert not delivery.ok and delivery.attempts == 1 and "closed" in (delivery.error or "")
