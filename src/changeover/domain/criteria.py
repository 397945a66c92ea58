"""From a rollout spec to the judge's criteria, for the canary and for the watch. Pure.

Alpha is spent per criterion over the rollout's comparative stages: each canary step (one
always-valid sequence from the step's start, nested looks; a new step is a new sequence,
because the arms' shares of the time change from step to step, and under a drift a
sequence across steps would compare different hours) and the watch when it keeps a holdback. Each stage reads its intervals at alpha / stages, so for each criterion
the chance of *ever* failing an equal candidate, over the whole rollout, is at most alpha / 2
(each interval is two-sided at its level; a fail is one side). Across criteria the chances
add: the family-wise bound is the sum of the criteria's alpha / 2 (the default two, error
rate and latency, at 0.05 each: 5%). Guards are spent the same way.
"""

from __future__ import annotations

from changeover.domain.judge import Criterion, Guard, JudgeConfig
from changeover.domain.spec import GuardsSpec, JudgeSpec, RolloutSpec

__all__ = ["canary_config", "family_alpha", "stages", "watch_config"]


def _criteria(j: JudgeSpec) -> tuple[Criterion, ...]:
    out: list[Criterion] = []
    if j.error_rate is not None:
        out.append(Criterion("error_rate", j.error_rate.max_increase, alpha=j.error_rate.alpha))
    if j.latency_p99_ms is not None:
        out.append(Criterion("latency_p99_ms", j.latency_p99_ms.max_ratio, alpha=j.latency_p99_ms.alpha))
    if j.label_accuracy is not None:
        la = j.label_accuracy
        out.append(Criterion("label_accuracy", la.max_decrease, alpha=la.alpha, sequential=la.sequential))
    for name in ("mae", "rmse"):
        reg = getattr(j, name)
        if reg is not None:
            relative = None if reg.max_ratio is None else reg.max_ratio - 1.0
            out.append(Criterion(name, reg.max_increase, relative, alpha=reg.alpha))
    if j.reward is not None:
        r = j.reward
        out.append(Criterion("reward", r.max_decrease, r.max_relative_decrease, alpha=r.alpha, cap=r.cap))
    elif j.reward_by_default:
        out.append(Criterion("reward", None, 0.05, named=False))
    if j.ranking is not None:
        rk = j.ranking
        out.append(Criterion("ranking", rk.max_decrease, rk.max_relative_decrease, alpha=rk.alpha,
                             metric=rk.metric))
    elif j.ranking_by_default:
        out.append(Criterion("ranking", None, 0.05, named=False, metric="ndcg_at_10"))
    return tuple(out)


def _guards(g: GuardsSpec) -> tuple[Guard, ...]:
    out = []
    if g.error_rate is not None:
        out.append(Guard("error_rate", g.error_rate.max, g.error_rate.alpha))
    if g.latency_p99_ms is not None:
        out.append(Guard("latency_p99_ms", g.latency_p99_ms.max, g.latency_p99_ms.alpha))
    return tuple(out)


def _judge_spec(spec: RolloutSpec) -> JudgeSpec:
    return spec.canary.judge if spec.canary is not None else JudgeSpec()


def canary_config(spec: RolloutSpec) -> JudgeConfig:
    j = _judge_spec(spec)
    return JudgeConfig(criteria=_criteria(j), guards=_guards(j.guards), power=j.power,
                       min_requests=j.min_requests, min_labels=j.min_labels)


def watch_config(spec: RolloutSpec) -> JudgeConfig:
    """The canary's criteria against the holdback, and the watch's own guards (the only
    judges when there is no holdback)."""
    j = _judge_spec(spec)
    return JudgeConfig(criteria=_criteria(j), guards=_guards(spec.watch.guards), power=j.power,
                       min_requests=j.min_requests, min_labels=j.min_labels)


def stages(spec: RolloutSpec) -> int:
    """The comparative stages alpha is spent over: each canary step (its looks are nested
    within the step), and a watch with holdback."""
    count = len(spec.canary.steps) if spec.canary is not None else 0
    if spec.watch.duration > 0 and spec.watch.holdback > 0:
        count += 1
    return max(count, 1)


def family_alpha(spec: RolloutSpec) -> float:
    """The bound on the chance that an equal candidate is ever failed in this rollout."""
    config = canary_config(spec)
    total = sum(c.alpha / 2 for c in config.criteria) + sum(g.alpha / 2 for g in config.guards)
    total += sum(g.alpha / 2 for g in watch_config(spec).guards)
    return min(total, 1.0)
