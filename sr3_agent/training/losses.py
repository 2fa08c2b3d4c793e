"""Loss functions for the two training stages of the reasoning embedder.

Stage 1 (contrastive SFT) teaches the language model to emit a search embedding:

* :func:`info_nce` -- in-batch-negatives contrastive loss (the loss of sentence-transformers'
  ``MultipleNegativesRankingLoss``), with optional shared hard negatives and a false-negative mask;
* :func:`triplet_margin` -- a hinge on cosine similarities against per-query hard negatives;
* :func:`lm_loss` -- the causal language-model loss that keeps the reasoning text fluent;
* :func:`kl_to_reference` -- exact per-token KL to a frozen reference model over the whole vocabulary.

Stage 2 (GRPO-style RL) optimises the policy on retrieval rewards:

* :func:`group_advantages` -- rewards normalised within each group of samples of the same query;
* :func:`token_logprobs` -- log-probabilities of the sampled tokens;
* :func:`clipped_policy_loss` -- the PPO clipped surrogate, averaged per sequence then over sequences;
* :func:`kl_penalty_k3` -- the k3 estimator of KL(policy || reference) from sampled-token log-probs.

Every function is a pure function of tensors: no state, no normalisation behind the caller's back,
and shapes are checked at the boundary (``ValueError`` with the offending shape in the message).
Each returns a scalar tensor that is differentiable with respect to its non-reference inputs, even
when there is nothing to average (it is then an exact zero that still belongs to the graph, so that
``loss.backward()`` never fails on an empty batch).

Notation for shapes: ``B`` batch, ``D`` embedding dimension, ``M`` shared hard negatives, ``K`` hard
negatives per query, ``T`` tokens, ``V`` vocabulary, ``G`` group size, ``N`` sampled sequences.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "info_nce",
    "triplet_margin",
    "lm_loss",
    "kl_to_reference",
    "group_advantages",
    "clipped_policy_loss",
    "token_logprobs",
    "kl_penalty_k3",
]

IGNORE_INDEX = -100
"""Label value that :func:`lm_loss` skips (the convention of ``torch.nn.functional.cross_entropy``
and Hugging Face tokenizers' collators)."""


# --------------------------------------------------------------------------------------------------
# Boundary checks
# --------------------------------------------------------------------------------------------------

def _check_ndim(name: str, tensor: Tensor, ndim: int, layout: str) -> None:
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dim() != ndim:
        raise ValueError(f"{name} must have shape {layout}, got {tuple(tensor.shape)}")


def _check_same_shape(names: Sequence[str], tensors: Sequence[Tensor]) -> None:
    shapes = [tuple(t.shape) for t in tensors]
    if any(s != shapes[0] for s in shapes[1:]):
        listed = ", ".join(f"{n} {s}" for n, s in zip(names, shapes))
        raise ValueError(f"shapes must match: {listed}")


def _check_bool(name: str, tensor: Tensor) -> None:
    if tensor.dtype != torch.bool:
        raise ValueError(f"{name} must be a bool tensor, got dtype {tensor.dtype}")


def _check_integer(name: str, tensor: Tensor) -> None:
    if tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor of token ids, got dtype {tensor.dtype}")


def _zero_with_graph(tensor: Tensor) -> Tensor:
    """An exact scalar zero connected to ``tensor``'s graph (``backward`` works, gradients are 0), also where
    ``tensor`` holds NaN or inf."""
    return torch.nan_to_num(tensor, nan=0.0, posinf=0.0, neginf=0.0).sum() * 0.0


def _masked_sequence_mean(per_token: Tensor, mask: Tensor) -> Tensor:
    """Average ``per_token`` over each row's masked tokens, then over the rows that have any.

    per_token: (N, T) float; mask: (N, T) bool. Rows without a masked token are left out of the
    outer mean; with no masked token at all the result is a zero that keeps the graph.
    """
    counts = mask.sum(dim=1)                                                      # (N,)
    # where(), not multiplication: a NaN/inf at a padded position must not leak into the sum. (The callers
    # also mask the inputs of their exp(): where() alone gives 0 x inf = NaN in the backward pass.)
    sums = torch.where(mask, per_token, torch.zeros_like(per_token)).sum(dim=1)   # (N,)
    has_tokens = counts > 0                                                       # (N,)
    if not bool(has_tokens.any()):
        return _zero_with_graph(per_token)
    per_sequence = sums[has_tokens] / counts[has_tokens].to(per_token.dtype)     # (N',)
    return per_sequence.mean()


# --------------------------------------------------------------------------------------------------
# Stage 1: contrastive SFT
# --------------------------------------------------------------------------------------------------

def info_nce(
    queries: Tensor,
    positives: Tensor,
    negatives: Tensor | None = None,
    *,
    temperature: float = 0.05,
    false_negative_mask: Tensor | None = None,
) -> Tensor:
    """InfoNCE with in-batch negatives (``MultipleNegativesRankingLoss``) and shared hard negatives.

    Given a batch of ``(query_i, positive_i)`` pairs and optionally ``M`` hard negatives, every query
    is scored against every candidate::

        candidates = cat([positives, negatives])         # (B + M, D)
        logits     = queries @ candidates.T / temperature  # (B, B + M)
        loss       = cross_entropy(logits, labels=[0, 1, ..., B - 1])

    so the label of row ``i`` is column ``i`` (its own positive), and its negatives are the other
    ``B - 1`` positives of the batch plus all ``M`` hard negatives, which are shared by every query.

    All embeddings are assumed to be **L2-normalised already** (the dot product is then the cosine
    similarity, in ``[-1, 1]``); this function does not normalise them. ``temperature`` divides the
    similarities, which is the same as sentence-transformers' ``scale`` multiplying them:
    ``scale = 1 / temperature``, so the default ``temperature=0.05`` is their default ``scale=20``.
    Smaller temperatures give sharper softmaxes and harder-focused gradients.

    Args:
        queries: (B, D) query embeddings, L2-normalised.
        positives: (B, D) embeddings of the relevant document of each query, L2-normalised;
            ``positives[i]`` is the label of ``queries[i]``.
        negatives: (M, D) hard-negative embeddings shared across the batch, L2-normalised, or
            ``None`` for in-batch negatives only. ``M = 0`` is allowed.
        temperature: softmax temperature, > 0.
        false_negative_mask: optional (B, B + M) bool; ``True`` where a column is *also* relevant to
            that row's query but is not its label (e.g. two queries of the batch share a document,
            or a "hard negative" is in fact relevant). Those logits are set to ``-inf`` before the
            cross-entropy, which is exactly the loss with those columns removed from that row. It
            must never mark a row's label column (``[i, i]``).

    Returns:
        Scalar: the cross-entropy averaged over the ``B`` queries.

    Raises:
        ValueError: on mismatched shapes, a non-positive temperature, a mask of the wrong shape or
            dtype, or a mask that covers a label.
    """
    _check_ndim("queries", queries, 2, "(B, D)")
    _check_ndim("positives", positives, 2, "(B, D)")
    _check_same_shape(["queries", "positives"], [queries, positives])
    batch, dim = queries.shape
    if batch == 0:
        raise ValueError("info_nce needs at least one (query, positive) pair, got B = 0")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")

    if negatives is None:
        candidates = positives                                            # (B, D)
    else:
        _check_ndim("negatives", negatives, 2, "(M, D)")
        if negatives.shape[1] != dim:
            raise ValueError(f"negatives must have shape (M, {dim}) to match queries {tuple(queries.shape)}, "
                             f"got {tuple(negatives.shape)}")
        candidates = torch.cat([positives, negatives], dim=0)             # (B + M, D)

    logits = queries @ candidates.T / temperature                         # (B, B + M)
    labels = torch.arange(batch, device=queries.device)                   # (B,)

    if false_negative_mask is not None:
        _check_ndim("false_negative_mask", false_negative_mask, 2, "(B, B + M)")
        if tuple(false_negative_mask.shape) != tuple(logits.shape):
            raise ValueError(f"false_negative_mask must have shape (B, B + M) = {tuple(logits.shape)}, "
                             f"got {tuple(false_negative_mask.shape)}")
        _check_bool("false_negative_mask", false_negative_mask)
        on_label = false_negative_mask[labels, labels]                    # (B,)
        if bool(on_label.any()):
            rows = on_label.nonzero().flatten().tolist()
            raise ValueError(f"false_negative_mask masks the label column of row(s) {rows}: "
                             "a row's own positive (column i of row i) can never be a false negative")
        logits = logits.masked_fill(false_negative_mask.to(logits.device), float("-inf"))  # (B, B + M)

    return F.cross_entropy(logits, labels)


def triplet_margin(queries: Tensor, positives: Tensor, negatives: Tensor, *, margin: float = 0.2) -> Tensor:
    """Triplet hinge loss on cosine similarities, with ``K`` hard negatives per query.

    With ``s(a, b)`` the cosine similarity (computed here, so the inputs need not be normalised)::

        loss = mean over i < B, k < K of  relu(margin - s(q_i, p_i) + s(q_i, n_ik))

    i.e. each positive must be at least ``margin`` more similar to its query than each of that
    query's negatives; triplets that already satisfy this contribute zero (and no gradient).

    Args:
        queries: (B, D) query embeddings.
        positives: (B, D) positive embeddings; ``positives[i]`` belongs to ``queries[i]``.
        negatives: (B, K, D) hard negatives; ``negatives[i, k]`` is the k-th negative of query i.
        margin: required similarity gap, in cosine units (so within ``[0, 2]`` to be meaningful).

    Returns:
        Scalar: the hinge averaged over the ``B * K`` triplets.
    """
    _check_ndim("queries", queries, 2, "(B, D)")
    _check_ndim("positives", positives, 2, "(B, D)")
    _check_ndim("negatives", negatives, 3, "(B, K, D)")
    _check_same_shape(["queries", "positives"], [queries, positives])
    batch, dim = queries.shape
    if negatives.shape[0] != batch or negatives.shape[2] != dim:
        raise ValueError(f"negatives must have shape (B, K, D) = ({batch}, K, {dim}), got {tuple(negatives.shape)}")
    if batch == 0 or negatives.shape[1] == 0:
        raise ValueError(f"triplet_margin needs at least one triplet, got B = {batch}, K = {negatives.shape[1]}")

    s_pos = F.cosine_similarity(queries, positives, dim=-1)                 # (B,)
    s_neg = F.cosine_similarity(queries.unsqueeze(1), negatives, dim=-1)    # (B, K)
    hinge = F.relu(margin - s_pos.unsqueeze(1) + s_neg)                     # (B, K)
    return hinge.mean()


def lm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Causal language-model loss (next-token cross-entropy) with ignored positions.

    The logits at position ``t`` predict the token at ``t + 1``, so the two are shifted by one::

        loss = cross_entropy(logits[:, :-1], labels[:, 1:], ignore_index=-100)

    averaged over all labelled (non ``-100``) target tokens of the batch -- a token mean, so longer
    labelled spans weigh more. ``labels[:, 0]`` is never a target. When no token is labelled the
    loss is an exact zero that keeps the graph (``logits.sum() * 0``).

    Args:
        logits: (B, T, V) model outputs for the full sequences.
        labels: (B, T) integer token ids, ``-100`` where no loss is wanted (prompt, padding).

    Returns:
        Scalar: the mean negative log-likelihood per labelled token.
    """
    _check_ndim("logits", logits, 3, "(B, T, V)")
    _check_ndim("labels", labels, 2, "(B, T)")
    _check_integer("labels", labels)
    if tuple(labels.shape) != tuple(logits.shape[:2]):
        raise ValueError(f"labels must have shape (B, T) = {tuple(logits.shape[:2])} to match logits "
                         f"{tuple(logits.shape)}, got {tuple(labels.shape)}")

    vocab = logits.shape[2]
    pred = logits[:, :-1, :].reshape(-1, vocab)                             # (B * (T - 1), V)
    target = labels[:, 1:].reshape(-1)                                      # (B * (T - 1),)
    n_labelled = int((target != IGNORE_INDEX).sum())
    if n_labelled == 0:
        return _zero_with_graph(logits)
    total = F.cross_entropy(pred, target, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / n_labelled


def kl_to_reference(logits: Tensor, ref_logits: Tensor, mask: Tensor) -> Tensor:
    """Exact per-token ``KL(p_theta || p_ref)`` over the vocabulary, averaged over masked positions.

    With ``log p = log_softmax(logits)`` and ``log q = log_softmax(ref_logits)`` at each position::

        kl[b, t] = sum_v p[b, t, v] * (log p[b, t, v] - log q[b, t, v])     # >= 0
        loss     = mean of kl[b, t] over positions where mask[b, t]

    ``ref_logits`` come from a frozen reference model and are detached: no gradient reaches them.
    Logits should be finite (a ``-inf`` logit gives ``0 * -inf`` in the sum). With no masked
    position the loss is an exact zero that keeps the graph.

    Args:
        logits: (B, T, V) logits of the model being trained.
        ref_logits: (B, T, V) logits of the reference model on the same tokens.
        mask: (B, T) bool, ``True`` at the positions to average over.

    Returns:
        Scalar: the mean per-token KL divergence, in nats.
    """
    _check_ndim("logits", logits, 3, "(B, T, V)")
    _check_ndim("ref_logits", ref_logits, 3, "(B, T, V)")
    _check_ndim("mask", mask, 2, "(B, T)")
    _check_same_shape(["logits", "ref_logits"], [logits, ref_logits])
    _check_bool("mask", mask)
    if tuple(mask.shape) != tuple(logits.shape[:2]):
        raise ValueError(f"mask must have shape (B, T) = {tuple(logits.shape[:2])} to match logits "
                         f"{tuple(logits.shape)}, got {tuple(mask.shape)}")

    n_masked = int(mask.sum())
    if n_masked == 0:
        return _zero_with_graph(logits)
    # the masked positions only: what is elsewhere (padding, -inf) reaches neither the sum nor the gradients
    logp = F.log_softmax(logits[mask], dim=-1)                              # (M, V)
    logq = F.log_softmax(ref_logits.detach()[mask], dim=-1)                 # (M, V)
    per_token = (logp.exp() * (logp - logq)).sum(dim=-1)                    # (M,)
    return per_token.sum() / n_masked


def anchor_loss(embeddings: Tensor, reference: Tensor) -> Tensor:
    """Mean cosine distance of embeddings to the starting model's embeddings of the same texts::

        loss = mean_i (1 - cos(embeddings[i], reference[i]))        # 0 where nothing moved, at most 2

    It holds the direct embedding where a stage started while the stage trains text (the reasonings'
    language-model loss, RL's policy loss). ``reference`` is detached: the pull is on ``embeddings`` only.

    Args:
        embeddings: (N, D) embeddings of the model being trained.
        reference: (N, D) the starting model's embeddings of the same inputs.
    """
    _check_ndim("embeddings", embeddings, 2, "(N, D)")
    _check_ndim("reference", reference, 2, "(N, D)")
    _check_same_shape(["embeddings", "reference"], [embeddings, reference])
    if len(embeddings) == 0:
        return _zero_with_graph(embeddings)
    return (1 - F.cosine_similarity(embeddings, reference.detach().to(embeddings.dtype), dim=-1)).mean()


# --------------------------------------------------------------------------------------------------
# Stage 2: GRPO-style RL
# --------------------------------------------------------------------------------------------------

def group_advantages(rewards: Tensor, group_size: int, *, normalise_std: bool = True, eps: float = 1e-6) -> Tensor:
    """GRPO advantages: each reward relative to the other samples of its group.

    ``rewards`` holds ``B`` groups of ``G = group_size`` samples (the ``G`` answers sampled for one
    query), laid out group by group: ``rewards[g * G : (g + 1) * G]`` is group ``g``. Then::

        A = (r - mean_group(r)) / (std_group(r) + eps)      if normalise_std
        A =  r - mean_group(r)                              otherwise

    with the population standard deviation (``unbiased=False``). A group whose rewards are all equal
    gets zero advantages (no learning signal), whatever ``normalise_std``. The result carries no
    gradient that matters (rewards are constants); it is returned in the rewards' dtype, or the
    default float dtype for integer rewards.

    Args:
        rewards: (B * G,) one scalar reward per sample.
        group_size: G, the number of samples per group (>= 1).
        normalise_std: divide by the group's standard deviation (GRPO) or not (Dr. GRPO-style).
        eps: added to the standard deviation to avoid dividing by zero.

    Returns:
        (B * G,) advantages, in the same order as ``rewards``.

    Raises:
        ValueError: if ``rewards`` is not 1-D, ``group_size < 1``, or its length is not a multiple
            of ``group_size``.
    """
    _check_ndim("rewards", rewards, 1, "(B * G,)")
    try:
        size = operator.index(group_size)
    except TypeError:
        size = None
    if isinstance(group_size, bool) or size is None or size < 1:
        raise ValueError(f"group_size must be a positive int, got {group_size!r}")
    group_size = size
    if rewards.shape[0] % group_size != 0:
        raise ValueError(f"the number of rewards ({rewards.shape[0]}) is not a multiple of group_size ({group_size})")
    if not rewards.dtype.is_floating_point:
        rewards = rewards.to(torch.get_default_dtype())

    grouped = rewards.view(-1, group_size)                                  # (B, G)
    centred = grouped - grouped.mean(dim=1, keepdim=True)                   # (B, G)
    if normalise_std:
        centred = centred / (grouped.std(dim=1, unbiased=False, keepdim=True) + eps)  # (B, G)
    return centred.reshape(-1)                                              # (B * G,)


def token_logprobs(logits: Tensor, tokens: Tensor) -> Tensor:
    """Log-probability of each given token under the logits at the same position.

    The logits must already be aligned with the tokens -- ``logits[:, t]`` is the distribution that
    produced ``tokens[:, t]`` (for a causal LM's raw output, pass ``logits[:, :-1]`` and
    ``tokens[:, 1:]``)::

        out[n, t] = log_softmax(logits[n, t])[tokens[n, t]]

    Args:
        logits: (N, T, V) aligned logits.
        tokens: (N, T) integer token ids in ``[0, V)`` (pad with any valid id, then mask).

    Returns:
        (N, T) log-probabilities, differentiable with respect to ``logits``.
    """
    _check_ndim("logits", logits, 3, "(N, T, V)")
    _check_ndim("tokens", tokens, 2, "(N, T)")
    _check_integer("tokens", tokens)
    if tuple(tokens.shape) != tuple(logits.shape[:2]):
        raise ValueError(f"tokens must have shape (N, T) = {tuple(logits.shape[:2])} to match logits "
                         f"{tuple(logits.shape)}, got {tuple(tokens.shape)}")
    vocab = logits.shape[2]
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab):
        raise ValueError(f"tokens must lie in [0, {vocab}) (the vocabulary of logits), got values in "
                         f"[{int(tokens.min())}, {int(tokens.max())}]; pad with a valid id and mask instead of -100")

    logp = F.log_softmax(logits, dim=-1)                                    # (N, T, V)
    return logp.gather(-1, tokens.long().unsqueeze(-1)).squeeze(-1)         # (N, T)


def _check_token_triplet(first: str, a: Tensor, second: str, b: Tensor, mask: Tensor) -> None:
    _check_ndim(first, a, 2, "(N, T)")
    _check_ndim(second, b, 2, "(N, T)")
    _check_ndim("mask", mask, 2, "(N, T)")
    _check_same_shape([first, second, "mask"], [a, b, mask])
    _check_bool("mask", mask)


def clipped_policy_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip: float = 0.2,
) -> Tensor:
    """PPO/GRPO clipped surrogate loss on sampled tokens, averaged per sequence then over sequences.

    Each of the ``N`` sampled sequences has one advantage, shared by all its tokens::

        ratio[n, t] = exp(logprobs[n, t] - old_logprobs[n, t])
        loss[n, t]  = -min(ratio * A[n], clamp(ratio, 1 - clip, 1 + clip) * A[n])
        loss        = mean over sequences n that have a masked token of
                      (mean of loss[n, t] over t where mask[n, t])

    Minimising it raises the probability of tokens with positive advantage and lowers it for
    negative ones, but stops pushing (zero gradient) once the ratio has left ``[1 - clip, 1 + clip]``
    in the direction the advantage favours. Averaging per sequence first (GRPO's convention) gives
    every sequence the same weight whatever its length. Sequences without a masked token are left
    out of the mean; if none has one the loss is an exact zero that keeps the graph.

    ``old_logprobs`` (from the sampling policy) and ``advantages`` are constants: both are detached.

    Args:
        logprobs: (N, T) log-probs of the sampled tokens under the current policy.
        old_logprobs: (N, T) log-probs of the same tokens under the policy that sampled them.
        advantages: (N,) one advantage per sequence (e.g. from :func:`group_advantages`).
        mask: (N, T) bool, ``True`` on the tokens to train (the generated reasoning tokens).
        clip: the clipping range epsilon, > 0.

    Returns:
        Scalar loss.
    """
    _check_token_triplet("logprobs", logprobs, "old_logprobs", old_logprobs, mask)
    _check_ndim("advantages", advantages, 1, "(N,)")
    if advantages.shape[0] != logprobs.shape[0]:
        raise ValueError(f"advantages must have shape (N,) = ({logprobs.shape[0]},) to match logprobs "
                         f"{tuple(logprobs.shape)}, got {tuple(advantages.shape)}")
    if not clip > 0:
        raise ValueError(f"clip must be > 0, got {clip}")

    adv = advantages.detach().to(logprobs.dtype).unsqueeze(1)               # (N, 1)
    # 0 outside the mask before exp(): a padded position's extreme log-prob must not give inf, whose
    # gradient times the mask's 0 is NaN
    diff = torch.where(mask, logprobs - old_logprobs.detach(), torch.zeros_like(logprobs))  # (N, T)
    ratio = torch.exp(diff)                                                 # (N, T)
    unclipped = ratio * adv                                                 # (N, T)
    clipped = torch.clamp(ratio, 1.0 - clip, 1.0 + clip) * adv              # (N, T)
    per_token = -torch.minimum(unclipped, clipped)                          # (N, T)
    return _masked_sequence_mean(per_token, mask)


def kl_penalty_k3(logprobs: Tensor, ref_logprobs: Tensor, mask: Tensor) -> Tensor:
    """The k3 estimator of ``KL(policy || reference)`` from sampled-token log-probs.

    For tokens sampled from the policy, with ``d = ref_logprobs - logprobs``::

        k3[n, t] = exp(d) - d - 1                                           # >= 0, 0 iff d = 0

    is an unbiased, always non-negative estimate of the KL divergence (Schulman, "Approximating KL
    divergence"; used by GRPO). It is averaged like :func:`clipped_policy_loss`: per sequence over
    its masked tokens, then over the sequences that have any (zero with graph if none).
    ``ref_logprobs`` come from the frozen reference model and are detached.

    Args:
        logprobs: (N, T) log-probs of the sampled tokens under the current policy.
        ref_logprobs: (N, T) log-probs of the same tokens under the reference model.
        mask: (N, T) bool, ``True`` on the tokens to penalise.

    Returns:
        Scalar penalty, in nats.
    """
    _check_token_triplet("logprobs", logprobs, "ref_logprobs", ref_logprobs, mask)
    d = torch.where(mask, ref_logprobs.detach() - logprobs, torch.zeros_like(logprobs))  # (N, T); 0 off the mask
    per_token = torch.exp(d) - d - 1.0                                      # (N, T)
    return _masked_sequence_mean(per_token, mask)
