"""What traffic policy the desired state asks for when no rollout runs. Pure."""

from __future__ import annotations

from collections.abc import Mapping

from changeover.domain.policy import Shadow, TrafficPolicy


def policy_for_aliases(model: str, current: TrafficPolicy | None, aliases: Mapping[str, int],
                       shadows: tuple[Shadow, ...] = ()) -> TrafficPolicy | None:
    """The next policy when the champion alias moved or the shadows changed (None when nothing
    needs to change).

    All traffic goes to ``champion``; the version under ``previous`` stays warm, so a move
    back is instant; the desired shadows see a copy.
    """
    champion = aliases.get("champion")
    if champion is None:
        return None
    previous = aliases.get("previous")
    warm = (previous,) if previous is not None and previous != champion else ()
    shadows = tuple(s for s in shadows if s.version != champion)
    base = current or TrafficPolicy(model=model)
    if base.champion == champion and not base.weights and base.warm == warm and base.shadows == shadows:
        return None
    return base.evolve(champion=champion, weights={}, warm=warm, shadows=shadows)
