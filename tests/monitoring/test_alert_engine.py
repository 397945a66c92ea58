"""The alert engine over a real store: a rule that holds long enough fires once and resolves
once, each written to the audit log and sent to a real local receiver (which fails the first
delivery), and a rule with ``rollback: true`` asks for the rollback."""

from __future__ import annotations

import math
import time
from typing import Any

from monhelpers import Receiver, add_feedback, add_request, add_window, push
from sqlalchemy import insert, select

from changeover.monitoring.alerts import parse_rules
from changeover.monitoring.engine import AlertEngine, Figure, FigureQuery
from changeover.monitoring.figures import StoreFigures, rollback_on_alert
from changeover.monitoring.webhooks import WebhookSender
from changeover.store import tables as t
from changeover.store.store import Store


class Figures:
    """A provider whose values the test sets."""

    def __init__(self) -> None:
        self.values: dict[str, float | None] = {}
        self.queries: list[FigureQuery] = []

    def __call__(self, q: FigureQuery) -> Figure:
        self.queries.append(q)
        return Figure(self.values.get(q.metric), 1, {"seen": q.metric})


def alert_events(store: Store) -> list[dict[str, Any]]:
    return [e for e in store.events(limit=1000) if e["kind"].startswith("alert")]


def test_fires_once_resolves_once_with_webhooks_and_rollback(store: Store) -> None:
    push(store, "ranker", 1)
    figures = Figures()
    rollbacks: list[tuple[str, int | None, str]] = []
    with Receiver([500]) as receiver:
        config = parse_rules({"webhooks": [receiver.url], "rules": [
            {"name": "ranker-errors", "metric": "error_rate", "condition": ">", "threshold": 0.05, "for": "60s",
             "model": "ranker", "rollback": True}]})
        sender = WebhookSender(attempts=3, backoff_s=0.01)
        engine = AlertEngine(store, config, figures, webhooks=sender,
                             on_rollback=lambda m, v, reason, ev: rollbacks.append((m, v, reason)))
        timeline = [(0, 0.01), (10, 0.2), (40, 0.2), (70, 0.2), (100, 0.3), (130, 0.01), (160, 0.01), (190, None)]
        changes = []
        for offset, value in timeline:
            figures.values["error_rate"] = value
            changes += [c["transition"] for c in engine.evaluate(1000.0 + offset)]
        assert sender.flush(timeout=10)
        sender.close()
        assert changes == ["pending", "firing", "resolved"]
        kinds = [e["kind"] for e in alert_events(store)]
        assert kinds == ["alert_firing", "alert_resolved"]
        firing = alert_events(store)[0]
        assert firing["model"] == "ranker" and firing["evidence"]["value"] == 0.2
        assert firing["evidence"]["since"] == 1010.0 and firing["evidence"]["episode"] == 1
        assert receiver.answered == [500, 200, 200]  # the first delivery failed and was retried
        bodies = receiver.ok()
        assert [b["status"] for b in bodies] == ["firing", "resolved"]
        assert bodies[0]["text"].startswith(":rotating_light: FIRING") and "error_rate = 0.2 > 0.05" in bodies[0]["text"]
        assert bodies[0]["rule"] == "ranker-errors" and bodies[0]["rollback"] is True
        assert rollbacks == [("ranker", 1, "alert ranker-errors is firing")]
    state = engine.state()
    (instance,) = state["instances"]
    assert instance["state"] == "resolved" and instance["episode"] == 1 and state["evaluations"] == len(timeline)


def test_a_second_engine_does_not_announce_again(store: Store) -> None:
    push(store, "ranker", 1)
    config = parse_rules([{"name": "drifting", "metric": "drift_share", "condition": ">=", "threshold": 0.5}])
    figures = Figures()
    figures.values["drift_share"] = 1.0
    first = AlertEngine(store, config, figures)
    assert [c["transition"] for c in first.evaluate(100.0)] == ["firing"]
    # a restart (or another replica taking the lead) rebuilds the firing state from the audit log
    second = AlertEngine(store, config, figures)
    assert second.evaluate(200.0) == []
    assert second.state()["instances"][0]["state"] == "firing"
    figures.values["drift_share"] = 0.0
    assert [c["transition"] for c in second.evaluate(300.0)] == ["resolved"]
    assert first.evaluate(300.0) == [{"rule": "drifting", "model": "ranker", "transition": "resolved",
                                      "value": 0.0, "at": 300.0}]
    assert [e["kind"] for e in alert_events(store)] == ["alert_firing", "alert_resolved"]  # dedup: written once


def test_only_the_leader_evaluates(store: Store) -> None:
    push(store, "m", 1)
    config = parse_rules([{"name": "r", "metric": "requests", "condition": ">", "threshold": 0}])
    figures = Figures()
    figures.values["requests"] = 5.0
    leading = False
    engine = AlertEngine(store, config, figures, leading=lambda: leading)
    assert engine.evaluate(1.0) == [] and figures.queries == []
    leading = True
    assert [c["transition"] for c in engine.evaluate(2.0)] == ["firing"]


def test_a_failing_figure_is_reported_not_raised(store: Store) -> None:
    push(store, "m", 1)
    config = parse_rules([{"name": "r", "metric": "requests", "condition": ">", "threshold": 0}])

    def broken(q: FigureQuery) -> Figure:
        raise RuntimeError("store away")

    engine = AlertEngine(store, config, broken)
    assert engine.evaluate(1.0) == []
    assert engine.state()["instances"][0]["error"] == "RuntimeError: store away"


def test_store_figures_read_the_windows_of_the_champion(store: Store) -> None:
    push(store, "m", 1)
    push(store, "m", 2)
    store.set_alias("m", "champion", 2, actor="test")
    now = time.time()
    add_window(store, "m", 2, now - 20, now - 10, requests=100, errors=10, latencies=[1.0, 2.0, 3.0, 50.0])
    add_window(store, "m", 1, now - 20, now - 10, requests=100, errors=0, latencies=[1.0])
    provider = StoreFigures(store)
    fig = provider(FigureQuery("m", "champion", "error_rate", 60.0, 0.0, now))
    assert fig is not None and fig.version == 2 and fig.value == 0.1
    p99 = provider(FigureQuery("m", "champion", "latency_p99_ms", 60.0, 0.0, now))
    assert p99 is not None and p99.value == 50.0
    missing = provider(FigureQuery("m", "candidate", "error_rate", 60.0, 0.0, now))
    assert missing is not None and missing.value is None and "candidate" in missing.evidence["reason"]
    nothing = provider(FigureQuery("m", "1", "error_rate", 5.0, 0.0, now))  # no window in the last 5 s
    assert nothing is not None and nothing.value is None


def test_a_rule_on_a_rankers_ndcg_reads_its_clicks(store: Store) -> None:
    push(store, "recs", 1)
    store.set_alias("recs", "champion", 1, actor="test")
    now = time.time()
    served = list(range(1001, 1011))
    for i, clicked in enumerate([[1001], [1010], [1010], []]):  # NDCG@10 1, 0.289, 0.289, undefined
        rid = add_request(store, "recs", 1, now - 30 + i, output={"ranking": served})
        add_feedback(store, rid, "recs", now - 20, now - 30 + i, label=clicked)
    config = parse_rules([{"name": "recs-ndcg", "metric": "ndcg_at_10", "condition": "<", "threshold": 0.6,
                           "model": "recs", "window": "5m"},
                          {"name": "recs-ctr", "metric": "ctr_at_10", "condition": "<", "threshold": 0.5,
                           "model": "recs", "window": "5m"}])
    provider = StoreFigures(store)
    ndcg = provider(FigureQuery("recs", "champion", "ndcg_at_10", 300.0, 0.0, now))
    assert ndcg is not None and ndcg.version == 1 and ndcg.value is not None
    assert abs(ndcg.value - (1 + 2 / math.log2(11)) / 3) < 1e-9
    engine = AlertEngine(store, config, provider)
    engine.evaluate(now)
    firing = {i["rule"]: i["state"] for i in engine.state()["instances"]}
    assert firing == {"recs-ndcg": "firing", "recs-ctr": "inactive"}  # 3 clicks in 4 requests: CTR 0.75


def test_rollback_hook_asks_the_watching_rollout_to_roll_back(store: Store) -> None:
    push(store, "m", 1)
    woken: list[bool] = []
    hook = rollback_on_alert(store, lambda: woken.append(True))
    assert hook("m", 1, "alert x is firing", {"rule": {"name": "x"}}) is False  # no rollout in watch
    with store.tx() as conn:
        conn.execute(insert(t.rollouts).values(model="m", spec={"candidate": "1"}, status={"phase": "watching"},
                                               active=True, command=None, created_at=0.0, updated_at=0.0))
    assert hook("m", 1, "alert x is firing", {"rule": {"name": "x"}}) is True
    with store.engine.connect() as conn:
        assert conn.execute(select(t.rollouts.c.command)).scalar() == "rollback-alert"  # an alert rule's, not a person's
    assert woken == [True]
    requested = [e["evidence"]["requested"] for e in store.events("m") if e["kind"] == "alert_rollback"]
    assert requested == [False, True]
