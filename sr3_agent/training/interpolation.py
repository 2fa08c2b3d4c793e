"""Weight interpolation back toward a stage's starting model (WiSE-FT: Wortsman et al., "Robust fine-tuning of
zero-shot models", CVPR 2022; model soups: Wortsman et al., ICML 2022).

A stage that trains text (rejection sampling, RL) can lower the direct embedding its starting model had. The weights
``(1 - alpha) * start + alpha * end`` often keep most of what the stage taught and most of what it cost, at no
inference cost. ``alpha`` is chosen on the dev split, as a checkpoint is (`sr3_agent.training.selection`):

    start, end = ReasoningEmbedder.from_pretrained(sft), ReasoningEmbedder.from_pretrained(rl)
    curve = interpolation_curve(start, end, evaluator, alphas=(0.25, 0.5, 0.75))
    alpha = best_alpha(curve, select_by="best", min_token_rate=0.9)
    mix(start, end, alpha).save_pretrained(out)

Both models must share one architecture and one vocabulary (a stage's start and end always do).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence

import torch

from sr3_agent.config import ConfigError
from sr3_agent.model.embedder import ReasoningEmbedder
from sr3_agent.training.selection import DevEvaluator, DevScores, rank, scores_record

logger = logging.getLogger(__name__)


def interpolate_weights(start: Mapping[str, torch.Tensor], end: Mapping[str, torch.Tensor],
                        alpha: float) -> dict[str, torch.Tensor]:
    """``(1 - alpha) * start + alpha * end`` for every floating-point tensor (others, e.g. integer buffers, are
    taken from ``end``). alpha 0 gives ``start``, 1 gives ``end``. Computed in fp32, returned in ``end``'s dtypes."""
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha={alpha}: the interpolation weight must lie in [0, 1] (0 = the starting model, "
                          "1 = the stage's model).")
    if set(start) != set(end):
        differ = sorted(set(start) ^ set(end))
        raise ConfigError(f"The two models have different weights ({len(differ)} names differ, e.g. {differ[:3]}): "
                          "interpolate a stage's model with the model that stage started from.")
    mixed = {}
    for name, last in end.items():
        first = start[name]
        if first.shape != last.shape:
            raise ConfigError(f"Weight {name} has shape {tuple(first.shape)} in the starting model and "
                              f"{tuple(last.shape)} in the other: they are not one architecture and vocabulary.")
        if not last.is_floating_point():
            mixed[name] = last.clone()
            continue
        value = torch.lerp(first.float().to(last.device), last.float(), alpha)  # start + alpha * (end - start)
        mixed[name] = value.to(last.dtype)
    return mixed


def mix(start: ReasoningEmbedder, end: ReasoningEmbedder, alpha: float) -> ReasoningEmbedder:
    """A new embedder with ``end``'s settings and the interpolated weights (neither input changes)."""
    mixed = copy.deepcopy(end)
    mixed.model.load_state_dict(interpolate_weights(start.model.state_dict(), end.model.state_dict(), alpha))
    mixed.bump_version()
    mixed.selection = None
    return mixed


def interpolation_curve(start: ReasoningEmbedder, end: ReasoningEmbedder, evaluator: DevEvaluator,
                        alphas: Sequence[float], start_scores: DevScores | None = None) -> list[tuple[float, DevScores]]:
    """Dev scores of the mixed models at each of ``alphas``, plus the two ends (from the scores the models recorded
    on this dev set where they have them, or ``start_scores`` for the starting model, else evaluated)."""
    curve = []
    for alpha in sorted({0.0, 1.0, *alphas}):
        model = start if alpha == 0 else end if alpha == 1 else None
        scores = evaluator.known(model) if model is not None else None
        if alpha == 0 and scores is None and start_scores is not None and set(evaluator.ways) <= set(start_scores.ndcg):
            scores = start_scores
        if scores is None:
            scores = evaluator(model if model is not None else mix(start, end, alpha), step=0)
        logger.info("alpha %.2f: %s", alpha, scores.line())
        curve.append((alpha, scores))
    return curve


def best_alpha(curve: Sequence[tuple[float, DevScores]], select_by: str, min_token_rate: float = 0.0,
               direct_tolerance: float | None = None) -> float:
    """The alpha whose dev scores rank highest (`selection.rank`); ties keep the smaller alpha (closer to the
    starting model). With ``direct_tolerance``, only alphas whose direct dev nDCG@10 is at most that much below the
    starting model's (alpha 0, always one of them) are candidates: the mix may not cost the direct embedding."""
    start = dict(curve)[0.0] if direct_tolerance is not None else None
    candidates = [(alpha, scores) for alpha, scores in curve
                  if start is None or scores.ndcg["direct"] >= start.ndcg["direct"] - direct_tolerance]
    best_value, best_scores = candidates[0]
    for alpha, scores in candidates[1:]:
        if rank(scores, select_by, min_token_rate) > rank(best_scores, select_by, min_token_rate):
            best_value, best_scores = alpha, scores
    return best_value


def chosen_mix(start: ReasoningEmbedder, end: ReasoningEmbedder, curve: Sequence[tuple[float, DevScores]],
               select_by: str, direct_tolerance: float, fingerprint: str | None = None) -> tuple[float, ReasoningEmbedder]:
    """The weight `best_alpha` picks on ``curve`` and the mixed embedder at it, which records its dev scores (the way to
    serve among them), the weight and the dev set's ``fingerprint`` as any stage's final model does."""
    alpha = best_alpha(curve, select_by, direct_tolerance=direct_tolerance)
    model = mix(start, end, alpha)
    model.selection = {**scores_record(dict(curve)[alpha], select_by, fingerprint), "alpha": alpha}
    return alpha, model
