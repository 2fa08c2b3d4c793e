"""Tests for ``sr3_agent.training.losses``: each loss against values worked out by hand from its formula.

Expected numbers are computed with ``math`` on tiny inputs (2 queries in 2-D, 2-token vocabularies,
single-token sequences), never by re-running the torch code under test.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sr3_agent.training.losses import (
    clipped_policy_loss,
    group_advantages,
    info_nce,
    kl_penalty_k3,
    kl_to_reference,
    lm_loss,
    token_logprobs,
    triplet_margin,
)

LN2, LN3 = math.log(2.0), math.log(3.0)


def t(values, **kwargs) -> torch.Tensor:
    """A float64 tensor (exact enough to compare hand values to 1e-9)."""
    return torch.tensor(values, dtype=torch.float64, **kwargs)


def ce(logits: list[float], label: int) -> float:
    """Cross-entropy of one row, by hand: -z_label + log sum exp z."""
    return -logits[label] + math.log(sum(math.exp(z) for z in logits))


def unit(rows: int, dim: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(rows, dim, generator=g, dtype=torch.float64), dim=-1)


# --------------------------------------------------------------------------------------------------
# info_nce
# --------------------------------------------------------------------------------------------------

# Two queries in 2-D, their positives, one shared hard negative; all unit vectors.
Q = [[1.0, 0.0], [0.0, 1.0]]
P = [[1.0, 0.0], [0.6, 0.8]]
N = [[0.8, 0.6]]
# Dot products q_i . [p_0, p_1, n_0] written out:
#   row 0: [1.0, 0.6, 0.8]    row 1: [0.0, 0.8, 0.6]


def test_info_nce_hand_value_with_hard_negative():
    tau = 0.5
    row0 = [1.0 / tau, 0.6 / tau, 0.8 / tau]
    row1 = [0.0 / tau, 0.8 / tau, 0.6 / tau]
    expected = (ce(row0, 0) + ce(row1, 1)) / 2
    got = info_nce(t(Q), t(P), t(N), temperature=tau)
    assert got.item() == pytest.approx(expected, abs=1e-12)


def test_info_nce_hand_value_in_batch_only():
    tau = 0.25
    expected = (ce([1.0 / tau, 0.6 / tau], 0) + ce([0.0, 0.8 / tau], 1)) / 2
    assert info_nce(t(Q), t(P), temperature=tau).item() == pytest.approx(expected, abs=1e-12)
    # M = 0 hard negatives is the same as None.
    empty = torch.zeros(0, 2, dtype=torch.float64)
    assert info_nce(t(Q), t(P), empty, temperature=tau).item() == pytest.approx(expected, abs=1e-12)


def test_info_nce_default_temperature_is_scale_20():
    q, p, n = unit(4, 8, 0), unit(4, 8, 1), unit(3, 8, 2)
    logits = 20.0 * q @ torch.cat([p, n]).T
    assert info_nce(q, p, n).item() == pytest.approx(F.cross_entropy(logits, torch.arange(4)).item(), abs=1e-10)


def test_info_nce_equals_cross_entropy_on_explicit_logits():
    q, p, n = unit(5, 16, 3), unit(5, 16, 4), unit(7, 16, 5)
    tau = 0.07
    logits = torch.empty(5, 12, dtype=torch.float64)
    cands = torch.cat([p, n])
    for i in range(5):
        for j in range(12):
            logits[i, j] = (q[i] * cands[j]).sum() / tau
    expected = F.cross_entropy(logits, torch.arange(5))
    assert info_nce(q, p, n, temperature=tau).item() == pytest.approx(expected.item(), abs=1e-10)


def test_info_nce_false_negative_mask_hand_value():
    tau = 0.5
    mask = torch.zeros(2, 3, dtype=torch.bool)
    mask[1, 0] = True  # p_0 is also relevant to query 1
    row0 = [1.0 / tau, 0.6 / tau, 0.8 / tau]
    row1_without_col0 = [0.8 / tau, 0.6 / tau]  # the label (column 1) is now at index 0
    expected = (ce(row0, 0) + ce(row1_without_col0, 0)) / 2
    got = info_nce(t(Q), t(P), t(N), temperature=tau, false_negative_mask=mask)
    assert got.item() == pytest.approx(expected, abs=1e-12)


def test_info_nce_false_negative_mask_equals_removing_columns():
    b, m, tau = 4, 3, 0.1
    q, p, n = unit(b, 6, 6), unit(b, 6, 7), unit(m, 6, 8)
    mask = torch.zeros(b, b + m, dtype=torch.bool)
    mask[0, 2] = True
    mask[0, 5] = True
    mask[3, 1] = True
    mask[2, 6] = True
    logits = q @ torch.cat([p, n]).T / tau
    per_row = []
    for i in range(b):
        keep = [j for j in range(b + m) if not mask[i, j]]
        row = logits[i, keep].tolist()
        per_row.append(ce(row, keep.index(i)))
    expected = sum(per_row) / b
    got = info_nce(q, p, n, temperature=tau, false_negative_mask=mask)
    assert got.item() == pytest.approx(expected, abs=1e-10)
    # And it really changed the value.
    assert got.item() != pytest.approx(info_nce(q, p, n, temperature=tau).item(), abs=1e-6)


def test_info_nce_mask_over_label_raises():
    mask = torch.zeros(2, 3, dtype=torch.bool)
    mask[1, 1] = True
    with pytest.raises(ValueError, match="label"):
        info_nce(t(Q), t(P), t(N), false_negative_mask=mask)


def test_info_nce_gradients_flow():
    q = unit(3, 4, 9).requires_grad_()
    p = unit(3, 4, 10).requires_grad_()
    n = unit(2, 4, 11).requires_grad_()
    mask = torch.zeros(3, 5, dtype=torch.bool)
    mask[0, 1] = True
    info_nce(q, p, n, false_negative_mask=mask).backward()
    for x in (q, p, n):
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("kwargs, match", [
    (dict(queries=torch.zeros(2, 3), positives=torch.zeros(3, 3)), "shapes must match"),
    (dict(queries=torch.zeros(2, 3), positives=torch.zeros(2, 4)), "shapes must match"),
    (dict(queries=torch.zeros(3), positives=torch.zeros(3)), r"\(B, D\)"),
    (dict(queries=torch.zeros(2, 3), positives=torch.zeros(2, 3), negatives=torch.zeros(4, 2)), r"\(M, 3\)"),
    (dict(queries=torch.zeros(2, 3), positives=torch.zeros(2, 3), negatives=torch.zeros(4)), r"\(M, D\)"),
    (dict(queries=torch.zeros(2, 3), positives=torch.zeros(2, 3), temperature=0.0), "temperature"),
    (dict(queries=torch.zeros(0, 3), positives=torch.zeros(0, 3)), "B = 0"),
    (dict(queries=torch.zeros(2, 3), positives=torch.zeros(2, 3), negatives=torch.zeros(1, 3),
          false_negative_mask=torch.zeros(2, 2, dtype=torch.bool)), r"\(2, 3\)"),
    (dict(queries=torch.zeros(2, 3), positives=torch.zeros(2, 3),
          false_negative_mask=torch.zeros(2, 2)), "bool"),
])
def test_info_nce_shape_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        info_nce(**kwargs)


# --------------------------------------------------------------------------------------------------
# triplet_margin
# --------------------------------------------------------------------------------------------------

def test_triplet_margin_hand_value():
    # q0=(1,0), p0=(1,0): s=1.  negatives (0,1): s=0 -> relu(.5-1+0)=0; (.6,.8): s=.6 -> relu(.5-1+.6)=.1
    # q1=(0,1), p1=(.6,.8): s=.8. negatives (.8,.6): s=.6 -> relu(.5-.8+.6)=.3; (1,0): s=0 -> relu(.5-.8)=0
    negs = [[[0.0, 1.0], [0.6, 0.8]], [[0.8, 0.6], [1.0, 0.0]]]
    expected = (0.0 + 0.1 + 0.3 + 0.0) / 4
    assert triplet_margin(t(Q), t(P), t(negs), margin=0.5).item() == pytest.approx(expected, abs=1e-12)
    # Cosine similarity: rescaling the vectors changes nothing.
    got = triplet_margin(3 * t(Q), 0.5 * t(P), 7 * t(negs), margin=0.5)
    assert got.item() == pytest.approx(expected, abs=1e-12)


def test_triplet_margin_zero_when_positives_far_closer():
    q = t([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    negs = t([[[0.0, 1.0], [-1.0, 0.0]], [[1.0, 0.0], [0.0, -1.0]]])
    loss = triplet_margin(q, q.detach().clone(), negs, margin=0.2)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(q.grad, torch.zeros_like(q))


def test_triplet_margin_gradients_flow():
    q = t([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    p = t([[1.0, 0.0], [0.6, 0.8]], requires_grad=True)
    negs = t([[[0.6, 0.8]], [[0.8, 0.6]]], requires_grad=True)
    triplet_margin(q, p, negs, margin=0.5).backward()
    assert q.grad.abs().sum() > 0 and p.grad.abs().sum() > 0 and negs.grad.abs().sum() > 0


@pytest.mark.parametrize("q, p, n, match", [
    (torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3), r"\(B, K, D\)"),
    (torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3, 1, 3), r"\(2, K, 3\)"),
    (torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 1, 4), r"\(2, K, 3\)"),
    (torch.zeros(2, 3), torch.zeros(1, 3), torch.zeros(2, 1, 3), "shapes must match"),
    (torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 0, 3), "at least one triplet"),
])
def test_triplet_margin_shape_errors(q, p, n, match):
    with pytest.raises(ValueError, match=match):
        triplet_margin(q, p, n)


# --------------------------------------------------------------------------------------------------
# lm_loss
# --------------------------------------------------------------------------------------------------

def test_lm_loss_shift_with_only_last_label():
    # V = 2, T = 3. Only labels[0, 2] = 1 is set; it is predicted by logits[0, 1] = [0, ln 3],
    # where p(1) = 3/4. logits[0, 2] = [5, -5] would give about 10 nats if the shift were wrong.
    logits = t([[[0.0, 0.0], [0.0, LN3], [5.0, -5.0]]], requires_grad=True)
    labels = torch.tensor([[-100, -100, 1]])
    loss = lm_loss(logits, labels)
    assert loss.item() == pytest.approx(-math.log(0.75), abs=1e-12)
    loss.backward()
    # Only the predicting position gets a gradient: softmax - onehot = [1/4, -1/4].
    assert logits.grad[0, 1].tolist() == pytest.approx([0.25, -0.25], abs=1e-12)
    assert torch.equal(logits.grad[0, 0], torch.zeros(2, dtype=torch.float64))
    assert torch.equal(logits.grad[0, 2], torch.zeros(2, dtype=torch.float64))


def test_lm_loss_ignores_minus_100_and_averages_over_tokens():
    # Sequence a: targets at t=1 (label 0, from logits [ln 2, 0]: p = 2/3) and t=2 (label 1,
    # from [0, ln 3]: p = 3/4). Sequence b: one target at t=2 (label 0, from [0, 0]: p = 1/2).
    # labels[:, 0] is never a target, so b's 1 at t=0 is ignored whatever it is.
    logits = t([[[LN2, 0.0], [0.0, LN3], [9.0, 9.0]],
                [[3.0, -3.0], [0.0, 0.0], [9.0, 9.0]]])
    labels = torch.tensor([[-100, 0, 1], [1, -100, 0]])
    expected = (-math.log(2 / 3) - math.log(3 / 4) - math.log(1 / 2)) / 3  # token mean, not per sequence
    assert lm_loss(logits, labels).item() == pytest.approx(expected, abs=1e-12)


def test_lm_loss_zero_when_nothing_labelled():
    logits = torch.randn(2, 4, 5, requires_grad=True)
    labels = torch.full((2, 4), -100)
    labels[:, 0] = 3  # position 0 is never a target
    loss = lm_loss(logits, labels)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))
    # A single-token sequence has no next-token targets either.
    assert lm_loss(torch.randn(1, 1, 5), torch.tensor([[2]])).item() == 0.0


@pytest.mark.parametrize("logits, labels, match", [
    (torch.zeros(2, 5), torch.zeros(2, dtype=torch.long), r"\(B, T, V\)"),
    (torch.zeros(2, 3, 5), torch.zeros(2, 4, dtype=torch.long), r"\(2, 3\)"),
    (torch.zeros(2, 3, 5), torch.zeros(2, 3), "integer"),
])
def test_lm_loss_shape_errors(logits, labels, match):
    with pytest.raises(ValueError, match=match):
        lm_loss(logits, labels)


# --------------------------------------------------------------------------------------------------
# kl_to_reference
# --------------------------------------------------------------------------------------------------

def test_kl_to_reference_zero_when_equal_and_positive_otherwise():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 7, generator=g, dtype=torch.float64)
    mask = torch.ones(2, 3, dtype=torch.bool)
    assert kl_to_reference(logits, logits.clone(), mask).item() == pytest.approx(0.0, abs=1e-12)
    # Adding a constant per position changes no distribution.
    assert kl_to_reference(logits, logits + 4.0, mask).item() == pytest.approx(0.0, abs=1e-12)
    other = torch.randn(2, 3, 7, generator=g, dtype=torch.float64)
    assert kl_to_reference(logits, other, mask).item() > 0


def test_kl_to_reference_hand_value_two_token_vocab():
    # p = (1/2, 1/2) from [0, 0]; q = (1/4, 3/4) from [0, ln 3].
    # KL(p || q) = 1/2 ln(1/2 / 1/4) + 1/2 ln(1/2 / 3/4) = 1/2 ln 2 + 1/2 ln(2/3).
    kl_hand = 0.5 * LN2 + 0.5 * math.log(2 / 3)
    logits = t([[[0.0, 0.0], [0.0, 0.0], [10.0, -10.0]]], requires_grad=True)
    ref = t([[[0.0, LN3], [0.0, 0.0], [-10.0, 10.0]]], requires_grad=True)
    # Position 1 has KL 0 and position 2 a huge KL, but position 2 is masked out.
    mask = torch.tensor([[True, True, False]])
    loss = kl_to_reference(logits, ref, mask)
    assert loss.item() == pytest.approx((kl_hand + 0.0) / 2, abs=1e-12)
    loss.backward()
    assert ref.grad is None  # the reference is a constant
    assert logits.grad[0, 0].abs().sum() > 0
    assert torch.equal(logits.grad[0, 2], torch.zeros(2, dtype=torch.float64))


def test_kl_to_reference_empty_mask_is_zero_with_graph():
    logits = torch.randn(1, 2, 3, requires_grad=True)
    loss = kl_to_reference(logits, torch.randn(1, 2, 3), torch.zeros(1, 2, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


@pytest.mark.parametrize("logits, ref, mask, match", [
    (torch.zeros(2, 3, 4), torch.zeros(2, 3, 5), torch.ones(2, 3, dtype=torch.bool), "shapes must match"),
    (torch.zeros(2, 3, 4), torch.zeros(2, 3, 4), torch.ones(2, 4, dtype=torch.bool), r"\(2, 3\)"),
    (torch.zeros(2, 3, 4), torch.zeros(2, 3, 4), torch.ones(2, 3), "bool"),
    (torch.zeros(3, 4), torch.zeros(3, 4), torch.ones(3, dtype=torch.bool), r"\(B, T, V\)"),
])
def test_kl_to_reference_shape_errors(logits, ref, mask, match):
    with pytest.raises(ValueError, match=match):
        kl_to_reference(logits, ref, mask)


# --------------------------------------------------------------------------------------------------
# group_advantages
# --------------------------------------------------------------------------------------------------

def test_group_advantages_normalised():
    # Group 0: [1, 0, 0, 1], mean 1/2, population std 1/2 -> (+-1/2) / (1/2 + eps).
    # Group 1: [2, 2, 2, 2], all equal -> zeros.
    eps = 1e-6
    a = 0.5 / (0.5 + eps)
    got = group_advantages(t([1, 0, 0, 1, 2, 2, 2, 2]), 4, eps=eps)
    assert got.shape == (8,)
    assert got.tolist() == pytest.approx([a, -a, -a, a, 0, 0, 0, 0], abs=1e-12)


def test_group_advantages_centred_only():
    got = group_advantages(t([1, 0, 0, 1, 2, 2, 2, 2]), 4, normalise_std=False)
    assert got.tolist() == pytest.approx([0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0], abs=1e-12)


def test_group_advantages_integer_rewards_and_group_of_one():
    got = group_advantages(torch.tensor([1, 0, 0, 1, 2, 2, 2, 2]), 4)
    assert got.dtype.is_floating_point
    assert got[:4].tolist() == pytest.approx([1, -1, -1, 1], abs=1e-5)
    assert group_advantages(t([3.0, -1.0]), 1).tolist() == [0.0, 0.0]


@pytest.mark.parametrize("rewards, size, match", [
    (torch.zeros(7), 4, "multiple of group_size"),
    (torch.zeros(2, 4), 4, r"\(B \* G,\)"),
    (torch.zeros(8), 0, "positive int"),
    (torch.zeros(8), 2.0, "positive int"),
])
def test_group_advantages_errors(rewards, size, match):
    with pytest.raises(ValueError, match=match):
        group_advantages(rewards, size)


# --------------------------------------------------------------------------------------------------
# token_logprobs
# --------------------------------------------------------------------------------------------------

def test_token_logprobs_hand_value():
    # [0, ln 3] -> p = (1/4, 3/4); [ln 2, 0] -> p = (2/3, 1/3).
    logits = t([[[0.0, LN3], [LN2, 0.0]], [[0.0, 0.0], [0.0, LN3]]], requires_grad=True)
    tokens = torch.tensor([[1, 0], [0, 0]])
    got = token_logprobs(logits, tokens)
    assert got.shape == (2, 2)
    expected = [[math.log(3 / 4), math.log(2 / 3)], [math.log(1 / 2), math.log(1 / 4)]]
    assert got.tolist()[0] == pytest.approx(expected[0], abs=1e-12)
    assert got.tolist()[1] == pytest.approx(expected[1], abs=1e-12)
    got.sum().backward()
    assert logits.grad.abs().sum() > 0


@pytest.mark.parametrize("logits, tokens, match", [
    (torch.zeros(2, 3, 4), torch.zeros(2, 2, dtype=torch.long), r"\(2, 3\)"),
    (torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long), r"\(N, T, V\)"),
    (torch.zeros(2, 3, 4), torch.zeros(2, 3), "integer"),
    (torch.zeros(1, 2, 4), torch.tensor([[0, 4]]), r"\[0, 4\)"),
    (torch.zeros(1, 2, 4), torch.tensor([[-100, 1]]), r"\[0, 4\)"),
])
def test_token_logprobs_errors(logits, tokens, match):
    with pytest.raises(ValueError, match=match):
        token_logprobs(logits, tokens)


# --------------------------------------------------------------------------------------------------
# clipped_policy_loss
# --------------------------------------------------------------------------------------------------

ONE = torch.ones(1, 1, dtype=torch.bool)


@pytest.mark.parametrize("ratio, adv, loss, grad", [
    # inside [0.8, 1.2]: -ratio * A, gradient d/dlogprob = -ratio * A
    (1.0, 1.0, -1.0, -1.0),
    (1.1, -2.0, 2.2, 2.2),
    # A > 0, ratio above 1 + clip: clipped value -1.2 * A, no gradient
    (1.5, 1.0, -1.2, 0.0),
    # A < 0, ratio above 1 + clip: min picks the unclipped -1.5 * A (still pushed down)
    (1.5, -1.0, 1.5, 1.5),
    # A > 0, ratio below 1 - clip: min picks the unclipped 0.5 * A (still pushed up)
    (0.5, 1.0, -0.5, -0.5),
    # A < 0, ratio below 1 - clip: clipped value -0.8 * A, no gradient
    (0.5, -1.0, 0.8, 0.0),
])
def test_clipped_policy_loss_single_token(ratio, adv, loss, grad):
    old = t([[0.3]])
    lp = (old + math.log(ratio)).clone().requires_grad_()
    got = clipped_policy_loss(lp, old, t([adv]), ONE, clip=0.2)
    assert got.item() == pytest.approx(loss, abs=1e-12)
    got.backward()
    assert lp.grad.item() == pytest.approx(grad, abs=1e-12)


def test_clipped_policy_loss_averages_per_sequence_then_over_sequences():
    # Ratio 1 everywhere, so per-token loss = -A. Sequence 0: 2 tokens, A = 1 -> mean -1.
    # Sequence 1: 1 token, A = 2 -> -2. Sequence 2: no tokens -> excluded.
    # Per-sequence mean: (-1 - 2) / 2 = -1.5 (a token mean would give -4/3).
    lp = torch.zeros(3, 3, dtype=torch.float64)
    mask = torch.tensor([[True, True, False], [False, True, False], [False, False, False]])
    got = clipped_policy_loss(lp, lp.clone(), t([1.0, 2.0, 100.0]), mask)
    assert got.item() == pytest.approx(-1.5, abs=1e-12)


def test_clipped_policy_loss_batched_equals_mean_of_per_sample():
    g = torch.Generator().manual_seed(1)
    lp = (torch.randn(3, 5, generator=g, dtype=torch.float64) * 0.3 - 1.0).requires_grad_()
    old = lp.detach() + torch.randn(3, 5, generator=g, dtype=torch.float64) * 0.3
    adv = t([1.0, -0.5, 2.0])
    mask = torch.tensor([[True, True, True, False, False],
                         [True, True, True, True, True],
                         [False, True, False, False, False]])
    batched = clipped_policy_loss(lp, old, adv, mask)
    singles = [clipped_policy_loss(lp[i:i + 1], old[i:i + 1], adv[i:i + 1], mask[i:i + 1]) for i in range(3)]
    assert batched.item() == pytest.approx(sum(s.item() for s in singles) / 3, abs=1e-12)
    # Padding values beyond the mask do not matter, even non-finite ones.
    lp_padded = lp.detach().clone()
    lp_padded[~mask] = float("nan")
    assert clipped_policy_loss(lp_padded, old, adv, mask).item() == pytest.approx(batched.item(), abs=1e-12)
    batched.backward()
    assert torch.equal(lp.grad[~mask], torch.zeros_like(lp.grad[~mask]))
    assert lp.grad[mask].abs().sum() > 0


def test_clipped_policy_loss_no_tokens_is_zero_with_graph():
    lp = torch.zeros(2, 3, requires_grad=True)
    loss = clipped_policy_loss(lp, torch.zeros(2, 3), torch.ones(2), torch.zeros(2, 3, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(lp.grad, torch.zeros_like(lp))


def test_clipped_policy_loss_old_logprobs_and_advantages_are_constants():
    lp = torch.zeros(1, 2, requires_grad=True)
    old = torch.zeros(1, 2, requires_grad=True)
    adv = torch.ones(1, requires_grad=True)
    clipped_policy_loss(lp, old, adv, torch.ones(1, 2, dtype=torch.bool)).backward()
    assert old.grad is None and adv.grad is None and lp.grad is not None


@pytest.mark.parametrize("lp, old, adv, mask, match", [
    (torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2), torch.ones(2, 3, dtype=torch.bool), "shapes must match"),
    (torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3), torch.ones(2, 3, dtype=torch.bool), r"\(2,\)"),
    (torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 1), torch.ones(2, 3, dtype=torch.bool), r"\(N,\)"),
    (torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2), torch.ones(2, 3), "bool"),
    (torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2), torch.ones(3, 2, dtype=torch.bool), "shapes must match"),
    (torch.zeros(3), torch.zeros(3), torch.zeros(1), torch.ones(3, dtype=torch.bool), r"\(N, T\)"),
])
def test_clipped_policy_loss_shape_errors(lp, old, adv, mask, match):
    with pytest.raises(ValueError, match=match):
        clipped_policy_loss(lp, old, adv, mask)


# --------------------------------------------------------------------------------------------------
# kl_penalty_k3
# --------------------------------------------------------------------------------------------------

def test_kl_penalty_k3_hand_value_and_per_sequence_mean():
    # d = ref - lp. Sequence 0: tokens with d = ln(1/2) and d = 0 -> k3 = (1/2 + ln 2 - 1) and 0.
    # Sequence 1: one token with d = ln 2 -> k3 = 2 - ln 2 - 1. Padding (d = 5) is masked out.
    k_half = 0.5 - math.log(0.5) - 1
    k_two = 2.0 - LN2 - 1
    lp = t([[0.0, -1.0, 0.0], [-1.0, 0.0, 0.0]], requires_grad=True)
    ref = t([[-LN2, -1.0, 5.0], [-1.0 + LN2, 0.0, 5.0]], requires_grad=True)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    got = kl_penalty_k3(lp, ref, mask)
    assert got.item() == pytest.approx(((k_half + 0.0) / 2 + k_two) / 2, abs=1e-12)
    got.backward()
    assert ref.grad is None
    # d/dlp of exp(ref - lp) - (ref - lp) - 1 = 1 - exp(ref - lp); token (0, 0): 1 - 1/2, weight 1/4.
    assert lp.grad[0, 0].item() == pytest.approx(0.5 / 4, abs=1e-12)


def test_kl_penalty_k3_zero_when_equal_nonnegative_otherwise_and_empty():
    g = torch.Generator().manual_seed(2)
    lp = torch.randn(3, 4, generator=g, dtype=torch.float64)
    mask = torch.ones(3, 4, dtype=torch.bool)
    assert kl_penalty_k3(lp, lp.clone(), mask).item() == pytest.approx(0.0, abs=1e-15)
    assert kl_penalty_k3(lp, torch.randn(3, 4, generator=g, dtype=torch.float64), mask).item() > 0
    x = torch.zeros(2, 2, requires_grad=True)
    loss = kl_penalty_k3(x, torch.ones(2, 2), torch.zeros(2, 2, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()


@pytest.mark.parametrize("lp, ref, mask, match", [
    (torch.zeros(2, 3), torch.zeros(2, 4), torch.ones(2, 3, dtype=torch.bool), "shapes must match"),
    (torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.long), "bool"),
    (torch.zeros(2, 3, 1), torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.bool), r"\(N, T\)"),
])
def test_kl_penalty_k3_shape_errors(lp, ref, mask, match):
    with pytest.raises(ValueError, match=match):
        kl_penalty_k3(lp, ref, mask)


def test_an_extreme_value_off_the_mask_gives_finite_zero_gradients():
    """A padded or unmarked position may hold any log-prob (-1e4, -inf): the loss ignores it and so must the
    backward pass (where() alone gives 0 x inf = NaN there; RL step 2 of a GPU run showed NaN gradients)."""
    mask = torch.tensor([[False, True, True], [True, True, False]])
    for extreme in (-1e4, float("-inf")):
        logprobs = torch.tensor([[extreme, -1.0, -2.0], [-0.5, -1.5, extreme]], requires_grad=True)
        ref = torch.tensor([[0.0, -1.2, -1.9], [-0.4, -1.5, 0.0]])
        advantages = torch.tensor([1.0, -0.5])
        for loss in (clipped_policy_loss(logprobs, ref, advantages, mask), kl_penalty_k3(logprobs, ref, mask)):
            logprobs.grad = None
            loss.backward()
            assert torch.isfinite(loss) and torch.isfinite(logprobs.grad).all(), (extreme, logprobs.grad)
            assert (logprobs.grad[~mask] == 0).all()
        # the same values as on the masked tokens alone (the extreme replaced by anything finite)
        tame = torch.where(mask, logprobs.detach(), torch.zeros(()))
        assert kl_penalty_k3(logprobs, ref, mask).item() == pytest.approx(kl_penalty_k3(tame, ref, mask).item())
        assert clipped_policy_loss(logprobs, ref, advantages, mask).item() == pytest.approx(
            clipped_policy_loss(tame, ref, advantages, mask).item())


def test_kl_to_reference_ignores_what_is_off_the_mask_in_the_backward_pass_too():
    logits = torch.randn(2, 3, 5, requires_grad=True)
    ref = torch.randn(2, 3, 5)
    mask = torch.tensor([[True, True, False], [False, True, True]])
    expected = kl_to_reference(logits, ref, mask).item()
    ref[0, 2] = float("-inf")  # a padded position of the reference
    ref[1, 0, 1] = float("-inf")
    loss = kl_to_reference(logits, ref, mask)
    loss.backward()
    assert loss.item() == pytest.approx(expected)
    assert torch.isfinite(logits.grad).all() and (logits.grad[~mask] == 0).all()


def test_the_zero_of_an_empty_mask_keeps_the_graph_even_over_nan():
    logits = torch.full((1, 2, 3), float("nan"), requires_grad=True)
    loss = kl_to_reference(logits, torch.zeros(1, 2, 3), torch.zeros(1, 2, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and (logits.grad == 0).all()
