"""Weight interpolation toward a stage's starting model (WiSE-FT): the mix of two state dicts, the mixed embedder,
the dev curve and the choice of alpha."""

import copy

import numpy as np
import pytest
import torch

from sr3_agent.config import ConfigError
from sr3_agent.training.interpolation import best_alpha, chosen_mix, interpolate_weights, interpolation_curve, mix
from sr3_agent.training.selection import DevEvaluator, DevScores
from sr3_env import load_dataset


def _scores(rate=None, **ndcg):
    return DevScores(0, ndcg, {way: (v - 0.1, v + 0.1) for way, v in ndcg.items()}, queries=6, embed_token_rate=rate)


def test_interpolation_gives_the_ends_at_0_and_1_and_the_straight_line_between():
    start = {"w": torch.zeros(3, 2), "b": torch.ones(2, dtype=torch.bfloat16), "steps": torch.tensor([4])}
    end = {"w": torch.full((3, 2), 2.0), "b": torch.full((2,), 3.0, dtype=torch.bfloat16), "steps": torch.tensor([9])}
    assert torch.equal(interpolate_weights(start, end, 0.0)["w"], start["w"])
    assert torch.equal(interpolate_weights(start, end, 1.0)["w"], end["w"])
    half = interpolate_weights(start, end, 0.25)
    assert torch.allclose(half["w"], torch.full((3, 2), 0.5))
    assert half["b"].dtype == torch.bfloat16 and torch.allclose(half["b"].float(), torch.full((2,), 1.5))
    assert torch.equal(half["steps"], end["steps"])  # integer buffers come from the stage's model
    assert torch.equal(start["w"], torch.zeros(3, 2)) and torch.equal(end["w"], torch.full((3, 2), 2.0))  # inputs kept


def test_interpolation_refuses_other_architectures_and_alphas_outside_0_1():
    start, end = {"w": torch.zeros(3, 2)}, {"w": torch.zeros(4, 2)}
    with pytest.raises(ConfigError, match="shape"):
        interpolate_weights(start, end, 0.5)
    with pytest.raises(ConfigError, match="names differ"):
        interpolate_weights({"w": torch.zeros(1)}, {"v": torch.zeros(1)}, 0.5)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        interpolate_weights(start, start, 1.5)


def test_mixed_embedder_lies_between_its_ends_and_leaves_them_unchanged(tiny_embedder):
    start = tiny_embedder
    end = copy.deepcopy(start)
    with torch.no_grad():
        for p in end.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    before = [p.clone() for p in end.model.parameters()]
    mixed = mix(start, end, 0.5)
    for a, b, m in zip(start.model.parameters(), end.model.parameters(), mixed.model.parameters()):
        assert torch.allclose(m, (a + b) / 2, atol=1e-6)
    assert all(torch.equal(p, q) for p, q in zip(end.model.parameters(), before))
    assert mixed.version != end.version and mixed.selection is None
    texts = ["a short document about rivers", "another about mountains"]
    assert np.allclose(mix(start, end, 0.0).encode_documents(texts), start.encode_documents(texts), atol=1e-5)


def test_curve_scores_both_ends_and_each_alpha_on_dev(tiny_embedder):
    dev = load_dataset("python-docstrings", split="dev").subset(num_queries=4, num_docs=12, seed=0)
    end = copy.deepcopy(tiny_embedder)
    with torch.no_grad():
        for p in end.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    curve = interpolation_curve(tiny_embedder, end, DevEvaluator(dev, ("direct",)), alphas=[0.5])
    assert [alpha for alpha, _ in curve] == [0.0, 0.5, 1.0]
    assert all(0 <= scores.ndcg["direct"] <= 1 and scores.queries == 4 for _, scores in curve)
    alpha, chosen = chosen_mix(tiny_embedder, end, curve, "direct", 1.0, fingerprint="dev-set")
    assert chosen.selection["alpha"] == alpha == best_alpha(curve, "direct", direct_tolerance=1.0)
    assert chosen.selection["dev_ndcg@10"] == round(dict(curve)[alpha].ndcg["direct"], 4)
    assert chosen.selection["dev_fingerprint"] == "dev-set" and chosen.selection["query_way"] == "direct"
    known = _scores(direct=0.5)  # the starting model's scores from an earlier evaluation on this dev set are reused
    assert interpolation_curve(tiny_embedder, end, DevEvaluator(dev, ("direct",)), [], start_scores=known)[0][1] is known
    fewer = interpolation_curve(tiny_embedder, end, DevEvaluator(dev, ("direct", "fused")), [], start_scores=known)
    assert fewer[0][1] is not known and set(fewer[0][1].ndcg) == {"direct", "fused"}  # not every way: evaluated


def test_best_alpha_ranks_like_a_checkpoint_and_ties_keep_the_starting_side():
    curve = [(0.0, _scores(direct=0.60, rate=0.0)), (0.5, _scores(direct=0.58, rate=0.95)),
             (1.0, _scores(direct=0.55, rate=1.0))]
    assert best_alpha(curve, "direct") == 0.0
    assert best_alpha(curve, "direct", min_token_rate=0.9) == 0.5  # the format first, as for checkpoints
    assert best_alpha([(0.0, _scores(direct=0.5)), (0.5, _scores(direct=0.5))], "direct") == 0.0


def test_with_a_direct_tolerance_the_mix_may_not_cost_the_direct_embedding():
    curve = [(0.0, _scores(direct=0.645, fused=0.554)), (0.5, _scores(direct=0.642, fused=0.587)),
             (0.75, _scores(direct=0.620, fused=0.590)), (1.0, _scores(direct=0.611, fused=0.591))]
    assert best_alpha(curve, "fused") == 1.0
    assert best_alpha(curve, "fused", direct_tolerance=0.01) == 0.5  # 0.75 and 1 lose more than 0.01 of direct
    assert best_alpha(curve, "fused", direct_tolerance=0.0) == 0.0
    with pytest.raises(KeyError):
        best_alpha(curve[1:], "fused", direct_tolerance=0.01)  # the starting model must be on the curve
