"""Configs of the agent's commands: dataclasses whose field docstrings are the CLI help (one source).

Each config validates itself in ``__post_init__`` and says how to fix a bad value or combination.
`dataclass_arguments` turns a config class into ``argparse`` options and `config_from_args` back.

One name means one setting. A renamed option (a class's ``renamed``: old field name -> new) is still
accepted under its old name, with a warning, as a keyword, a command-line flag and a config-file key
(`current_names`), and a saved ``config.json`` that holds the old name still resumes.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import logging
import textwrap
import typing
from dataclasses import dataclass, field
from functools import cache
from typing import Any


logger = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A config value or combination that cannot work; the message says how to fix it."""


def current_names(cls: type, values: dict[str, Any], where: str, *, warn: bool = True) -> dict[str, Any]:
    """``values`` (options of ``cls`` by field name) with each renamed option under its current name
    (``cls.renamed``: old -> new), logging one deprecation line per old name used (unless not ``warn``:
    a saved config is not the user's doing). Where both names are given, the current one wins."""
    renamed = getattr(cls, "renamed", {})
    out = {key: value for key, value in values.items() if key not in renamed}
    for old, new in renamed.items():
        if old in values:
            if warn:
                logger.warning("%s: %r is deprecated, use %r (same setting)", where, old, new)
            out.setdefault(new, values[old])
    return out


def accepts_old_names(cls: type) -> type:
    """Let the dataclass ``cls`` take its renamed options under their old names as keywords (`current_names`)."""
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **current_names(cls, kwargs, cls.__name__))

    cls.__init__ = __init__
    return cls


#: the dev metrics a stage can select its final model by (`RunConfig.select_by`)
SELECT_BY = ("best", "direct", "reasoning", "fused", "auto")


@dataclass
class RunConfig:
    """What every training run shares (``sr3 sft``, ``sr3 rl``): data, optimiser, model, checkpoints.

    `SFTConfig` and `RLConfig` inherit these fields and checks; a field a command redeclares keeps its
    place and takes that command's default and help."""

    model: str | None = None
    """Hugging Face causal LM name or folder, or a .gguf file, to start from (default: the bundled SmolLM2-135M-Instruct)."""
    dataset: str | list[str] = "wordnet-revdict"
    """Training data: a bundled name, a BEIR folder or a Hugging Face dataset folder; or several, each NAME:WEIGHT
    (e.g. wordnet-revdict:3 path/to/beir:1), mixed: each dataset's share of the training queries and of
    corpus_docs follows its weight, and its ids are prefixed by its name."""
    split: str = "train"
    """Qrels split to train on (keep the test split for `sr3 eval`)."""
    num_queries: int | None = 4000
    """Training queries drawn from the split (None: all)."""
    corpus_docs: int | None = 3000
    """Documents in the training index: a sub-corpus that keeps every relevant document (None: all)."""
    steps: int = 100
    """Optimiser steps."""
    learning_rate: float = 5e-5
    """AdamW learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    warmup_fraction: float = 0.0
    """Share of the steps over which the learning rate warms up linearly (at least one step when above 0), then stays constant."""
    kl_weight: float = 0.0
    """Weight of the KL to the frozen starting model (0: no reference model kept)."""
    refresh: str = "lazy"
    """Index refresh policy: lazy, full, periodic or frozen (see sr3_env.LazyIndex)."""
    refresh_every: int = 10
    """With refresh=periodic: optimiser steps between full re-encodes of the index."""
    refresh_budget: int = 0
    """Extra stalest index rows re-encoded after each search (0: none)."""
    max_length: int = 128
    """Prompt tokens kept per text (longer texts are truncated inside the chat template)."""
    lora: bool = False
    """Train LoRA adapters (peft) instead of all weights."""
    lora_rank: int = 16
    """LoRA rank."""
    lora_alpha: int = 32
    """LoRA alpha (scale = alpha / rank)."""
    activation_checkpointing: bool = False
    """Recompute each decoder layer's activations in the backward pass instead of keeping them (less memory, about a third more compute; the training forwards then take the plain path)."""
    seed: int = 0
    """Random seed (query batches, negatives, sampling, initialisation of new weights)."""
    output_dir: str = "runs/train-run"
    """Where checkpoints, the final model (`final/`) and TensorBoard logs go."""
    save_every: int = 50
    """Steps between checkpoints (the last step is always saved)."""
    log_every: int = 5
    """Steps between TensorBoard writes."""
    resume: bool = False
    """Continue from the latest checkpoint in output_dir (same config) instead of starting over."""
    device: str | None = None
    """cpu, cuda, cuda:1, ... (default: cuda when available)."""
    precision: str = "auto"
    """fp32, bf16 (mixed precision: bf16 compute, fp32 weights and optimiser) or auto (bf16 where the device computes it natively: a CUDA GPU that supports it, a CPU with AVX-512 BF16 or AMX; else fp32)."""
    generation_cache: str = "auto"
    """Key/value cache that reasonings are generated with: auto (a static cache and compiled decoding on CUDA, where
    generation is otherwise bound by kernel launches; the dynamic cache elsewhere), static (on every device, compiled
    on CUDA only) or dynamic (grown token by token, never compiled)."""
    eval_every: int = 25
    """Steps between evaluations on the dev split: nDCG@10 of the direct embedding and of each way the stage trains,
    with 95% intervals, in the log and in TensorBoard under dev/. The stage also scores its starting model and its last
    step, and final/ is the best of them by --select-by. 0: no evaluation (final/ is the last step)."""
    eval_queries: int | None = 100
    """Dev queries per evaluation, a sample with seed 0 (the same for every --seed; None: all)."""
    eval_docs: int | None = 1000
    """Documents of the dev sub-corpus (every relevant one kept, seed 0; None: the whole corpus), re-encoded at each
    evaluation."""
    dev_fraction: float = 0.0
    """For a dataset without dev qrels: share of its train split's queries carved off as the dev split (chosen by a
    hash of the query ids, so the same for every seed) and left out of training. 0: the dataset's own dev split."""
    select_by: str = "best"
    """The dev nDCG@10 that picks final/: direct, reasoning, fused or auto (that way's), or best (the highest of the
    ways the stage evaluates; the final model records which way that was and serves it)."""
    min_token_rate: float = 0.0
    """With evaluations: a checkpoint whose greedy dev reasonings end with <|embed_token|> less often than this is
    kept only when none does (the format a later RL stage needs). 0: every checkpoint by --select-by alone."""
    anchor_weight: float = 0.0
    """Weight of the anchor: 1 - cosine between the step's direct embeddings (queries embedded directly and
    documents) and the starting model's, so that training text does not move the direct embedding (0: none)."""

    def __post_init__(self) -> None:
        self.dataset = dataset_specs(self.dataset)
        _precision(self)
        _generation_cache(self)
        _positive(self, "steps", "max_length", "save_every", "log_every", "lora_rank", "refresh_every")
        _at_least(self, 0, "refresh_budget", "weight_decay", "kl_weight", "eval_every", "anchor_weight")
        for name in ("eval_queries", "eval_docs"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1 or none (all), got {getattr(self, name)}.")
        if not 0 <= self.min_token_rate <= 1:
            raise ConfigError(f"min_token_rate is a share of the reasonings, in [0, 1]; got {self.min_token_rate}.")
        if not 0 <= self.dev_fraction < 1:
            raise ConfigError(f"dev_fraction is a share of the train split's queries, in [0, 1) (0.05 is usual); got "
                              f"{self.dev_fraction}.")
        if self.select_by not in SELECT_BY:
            raise ConfigError(f"select_by must be one of {', '.join(SELECT_BY)}; got {self.select_by!r}.")
        if self.split in ("dev", "test"):  # allowed (a dataset may have no other split), but said
            logger.warning("training on the %s split: its results are not held out; the dev split is for selection "
                           "and the test split for sr3 eval (--split train).", self.split)
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}.")
        if not 0 <= self.warmup_fraction <= 1:
            raise ConfigError(f"warmup_fraction is a share of the steps, in [0, 1]; got {self.warmup_fraction}.")
        if self.refresh not in ("lazy", "full", "periodic", "frozen"):
            raise ConfigError(f"refresh must be lazy, full, periodic or frozen, got {self.refresh!r}.")


@accepts_old_names
@dataclass
class SFTConfig(RunConfig):
    """Contrastive warm-up of the reasoning embedder (``sr3 sft``)."""

    renamed = {"temperature": "infonce_temperature"}  #: old option names still accepted (`current_names`)

    batch_size: int = 16
    """Queries per step (each with one positive and `hard_negatives` mined negatives)."""
    warmup_fraction: float = 0.1
    """Share of the steps over which the learning rate warms up linearly (at least one step), then stays constant."""
    infonce_temperature: float = 0.05
    """InfoNCE temperature (logits are cosine similarities divided by it)."""
    kl_weight: float = 0.0
    """Weight of the KL to the frozen starting model on the query prompts (0: no reference model kept)."""
    margin: float = 0.2
    """Triplet margin between the positive's and each hard negative's cosine similarity."""
    infonce_weight: float = 1.0
    """Weight of InfoNCE over in-batch and hard negatives."""
    triplet_weight: float = 0.5
    """Weight of the triplet-margin loss on hard negatives."""
    lm_weight: float = 0.1
    """Weight of the language-model loss on the answer template (the embed token after each prompt)."""
    lm_direct: bool = True
    """The language-model loss also labels the embed token right after the prompt of each query embedded directly
    and of each document (False: only the queries embedded after a reasoning, so that the model does not learn to
    write the token before any reasoning)."""
    lm_head: bool = True
    """The language-model loss trains the output layer too (False: only the layers below it; in models whose input
    and output embeddings are tied, as SmolLM2's and Gemma's are, this keeps it from moving the embed token's input
    row, where every embedding is read)."""
    lm_reasoning: bool = True
    """With --keep best or beats_direct: the language-model loss labels the kept reasoning as well as the embed
    token after it (False: the token alone, which teaches where a reasoning ends without training its text)."""
    reasoning_fraction: float = 0.5
    """Share of training queries embedded after a reasoning the model writes (no gradient through the
    writing), so that the reasoning path is trained too; the rest are embedded directly."""
    reasoning_tokens: int = 48
    """Longest reasoning written for those queries, in tokens."""
    reasoning_temperature: float = 0.7
    """Sampling temperature of those reasonings (0: greedy)."""
    reasoning_samples: int = 1
    """Reasonings sampled per reasoning query; with more than 1 and --keep best or beats_direct, the one
    that ranks the relevant document best in the training index is kept (rejection sampling)."""
    keep: str = "all"
    """Which sampled reasoning a query trains on: all (its one sample, unselected; the LM loss labels only
    the token), best (the best-ranked sample) or beats_direct (the best, only where it ranks the relevant
    document above the direct embedding); with best and beats_direct the LM loss labels the kept
    reasoning too, and a query with none kept is embedded directly."""
    feedback_fraction: float = 0.0
    """Share of the reasoning queries that read, as a second turn does (sr3 eval --turns 2), the top --feedback-k
    documents their direct embedding retrieves in the training index before they reason."""
    feedback_k: int = 3
    """Documents those queries read (at most --mine-top-k)."""
    min_reasoning_tokens: int = 4
    """A sampled reasoning is cut after its first sentence or line that ends at or after this many tokens..."""
    kept_reasoning_tokens: int = 16
    """...and at most this many: one with no such end is cut before the last word that starts within them."""
    hard_negatives: int = 1
    """Mined hard negatives per query (0: in-batch negatives only)."""
    mine_top_k: int = 8
    """Top-ranked documents searched for hard negatives; their stale rows are re-encoded (lazy refresh)."""
    latent_tokens: int = 0
    """Think tokens of the latent way (sr3 eval's latent row): the model gets this many <|think_i|> tokens if it has
    fewer, and the queries not sent through a written reasoning are embedded as prompt, think tokens, <|embed_token|>
    (one forward), which trains them contrastively (with --lora their embedding rows are trained too). 0: none."""
    latent_fraction: float = 1.0
    """With --latent-tokens: share of the queries embedded directly that go through the think tokens; the rest keep
    the plain direct layout (prompt, <|embed_token|>), so that the direct way is trained too. 1: all of them."""
    output_dir: str = "runs/sft"
    """Where checkpoints, the final model (`final/`) and TensorBoard logs go."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive(self, "batch_size", "mine_top_k")
        _at_least(self, 0, "hard_negatives", "triplet_weight", "lm_weight", "infonce_weight", "latent_tokens")
        if self.infonce_temperature <= 0:
            raise ConfigError(f"infonce_temperature must be > 0 (0.05 is usual), got {self.infonce_temperature}.")
        if not 0 <= self.feedback_fraction <= 1:
            raise ConfigError(f"feedback_fraction is a share of the reasoning queries, in [0, 1]; got {self.feedback_fraction}.")
        _latent_fraction(self)
        if self.feedback_fraction > 0 and not 1 <= self.feedback_k <= self.mine_top_k:
            raise ConfigError(f"feedback_k must be in [1, mine_top_k={self.mine_top_k}]: the documents read are the index "
                              f"search's top results (got {self.feedback_k}).")
        if not 0 <= self.reasoning_fraction <= 1:
            raise ConfigError(f"reasoning_fraction is a share of the batch, in [0, 1]; got {self.reasoning_fraction}.")
        if self.reasoning_tokens < 1 or self.reasoning_temperature < 0:
            raise ConfigError("reasoning_tokens must be >= 1 and reasoning_temperature >= 0 (0: greedy).")
        _positive(self, "reasoning_samples", "min_reasoning_tokens", "kept_reasoning_tokens")
        if self.min_reasoning_tokens > self.kept_reasoning_tokens:
            raise ConfigError(f"min_reasoning_tokens ({self.min_reasoning_tokens}) must be <= kept_reasoning_tokens "
                              f"({self.kept_reasoning_tokens}).")
        if self.keep not in ("all", "best", "beats_direct"):
            raise ConfigError(f"keep must be all, best or beats_direct, got {self.keep!r}.")
        if self.keep != "all" and self.reasoning_samples > 1 and self.reasoning_temperature == 0:
            raise ConfigError("Greedy samples of one query are identical: rejection sampling needs "
                              "--reasoning-temperature > 0 (0.7 is usual).")
        if self.keep == "all" and self.reasoning_samples > 1:
            raise ConfigError("--keep all trains on one unselected sample per query: set --reasoning-samples 1, or "
                              "--keep best / beats_direct to choose among several.")
        if self.infonce_weight == 0 and self.triplet_weight == 0:
            raise ConfigError("With infonce_weight = triplet_weight = 0 nothing teaches the embedding; "
                              "set --infonce-weight 1.0 (or a triplet weight with --hard-negatives >= 1).")
        if self.triplet_weight > 0 and self.hard_negatives == 0:
            raise ConfigError("triplet_weight > 0 needs hard negatives: set --hard-negatives 1 or --triplet-weight 0.")
        if self.hard_negatives > self.mine_top_k:
            raise ConfigError(f"hard_negatives ({self.hard_negatives}) must be <= mine_top_k ({self.mine_top_k}): "
                              "negatives are picked among the top-ranked documents.")
        if self.batch_size < 2 and self.hard_negatives == 0:
            raise ConfigError("batch_size 1 without hard negatives leaves InfoNCE no negative: raise --batch-size "
                              "or set --hard-negatives >= 1.")
        if self.num_queries is not None and self.num_queries < self.batch_size:
            raise ConfigError(f"num_queries ({self.num_queries}) is smaller than batch_size ({self.batch_size}).")


@accepts_old_names
@dataclass
class RLConfig(RunConfig):
    """Reinforcement learning of reasoning and embedding against RetrievalEmbed-v0 (``sr3 rl``)."""

    #: old option names still accepted (`current_names`): the same names as sr3 sft's and sr3 train's settings
    renamed = {"temperature": "reasoning_temperature", "max_new_tokens": "reasoning_tokens"}

    model: str | None = None
    """Embedder to start from: a folder written by `sr3 sft` (recommended) or a causal LM name/folder (default: bundled)."""
    dataset: str | list[str] = "wordnet-revdict"
    """Training queries and corpus (bundled name, BEIR folder or Hugging Face dataset folder); or several, each
    NAME:WEIGHT (e.g. wordnet-revdict:3 path/to/beir:1), mixed by weight as in sr3 sft; evaluations during training
    mix their dev splits the same way."""
    num_queries: int | None = 2000
    """Training queries drawn from the split (None: all)."""
    steps: int = 40
    """Optimiser steps (one per batch of queries)."""
    queries_per_step: int = 4
    """Queries per step; each gets `group_size` sampled reasonings."""
    group_size: int = 4
    """Reasonings sampled per query (G); advantages are relative to the group."""
    reasoning_tokens: int = 48
    """Longest reasoning, in tokens."""
    reasoning_temperature: float = 1.0
    """Sampling temperature of the reasonings."""
    top_p: float = 1.0
    """Nucleus sampling threshold."""
    reward: str = "log_rank"
    """Environment reward: reciprocal_rank, ndcg@10, recall@100, log_rank, ... Not the environment's default
    (reciprocal_rank): the log rank still separates reasonings that rank the relevant document far down, where a
    weak starting policy puts it (docs/environment.md, Rewards)."""
    margin_weight: float = 1.0
    """Weight of the score margin added to the environment's reward: the relevant document's score minus
    the best other one's, which keeps separating reasonings that all rank it first (0: the rank alone)."""
    token_bonus: float = 0.3
    """Reward added when the model wrote <|embed_token|> itself within reasoning_tokens."""
    missing_token_reward: float | None = -1.0
    """The whole reward of a reasoning that ran to reasoning_tokens without writing <|embed_token|>, in place of
    its retrieval reward: an unfinished action, as a format reward treats it (none: score it like the others,
    with the token appended)."""
    token_lm_weight: float = 0.1
    """Weight of a language-model loss on <|embed_token|> where the policy wrote it (its negative log-probability
    after the reasoning): it holds the format SFT taught against the auxiliary loss, which otherwise teaches
    the policy to write longer reasonings and drop the token (0: off)."""
    normalise_std: bool = True
    """Divide group advantages by the group's standard deviation (GRPO); --no-normalise-std keeps them
    as differences from the group mean (Dr. GRPO)."""
    top_k: int = 10
    """Top documents the environment returns per action; their stale index rows are re-encoded (lazy refresh)."""
    turns: int = 1
    """1: RetrievalEmbed-v0, one reasoned embedding per query. 2: RetrievalRefine-v0: turn 1 is the direct embedding,
    then the G sampled reasonings read the top --feedback-k documents it retrieved (cut to fit --max-length) and embed
    again; the episode's return (the last turn's reward) is what the advantages compare."""
    feedback_k: int = 3
    """Documents shown on turn 2 (at most --top-k)."""
    auto: bool = False
    """Train the auto way (sr3 eval --auto): the model may write <|embed_token|> at once instead of reasoning, and the
    last of each query's G samples does so; a sample that does is scored with the query's direct embedding, so a
    reasoning earns an advantage only where it beats the direct path, and the policy learns when to reason."""
    refresh_budget: int = 0
    """Extra stalest index rows re-encoded after each step (0: none)."""
    learning_rate: float = 1e-5
    """AdamW learning rate."""
    weight_decay: float = 0.01
    """AdamW weight decay (0.01: AdamW's own default, which sr3 rl has always used)."""
    clip: float = 0.2
    """PPO clip range of the probability ratio."""
    kl_weight: float = 0.02
    """Weight of the KL penalty (k3 estimator) to the frozen starting model on the reasoning tokens (0: no reference)."""
    aux_weight: float = 0.5
    """Weight of the auxiliary InfoNCE of the embeddings against the documents the index just re-encoded."""
    aux_temperature: float = 0.05
    """Temperature of the auxiliary InfoNCE."""
    aux_negatives: int = 4
    """Top-ranked non-relevant documents per query used as auxiliary negatives."""
    eval_every: int = 10
    """Steps between evaluations on the dev split (nDCG@10 of the direct embedding, with reasoning, fused, and auto
    with --auto), in the log and TensorBoard under dev/; the starting model and the last step are scored too, and
    final/ is the best by --select-by. 0: no evaluation (final/ is the last step)."""
    seed: int = 0
    """Random seed (query batches, sampling)."""
    output_dir: str = "runs/rl"
    """Where checkpoints, the final model (`final/`) and TensorBoard logs go."""
    save_every: int = 20
    """Steps between checkpoints (the last step is always saved)."""
    log_every: int = 1
    """Steps between TensorBoard writes."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive(self, "queries_per_step", "reasoning_tokens", "top_k")
        _at_least(self, 0, "aux_weight", "aux_negatives", "margin_weight", "token_bonus", "token_lm_weight")
        if self.select_by == "auto" and not self.auto:
            raise ConfigError("select_by=auto needs --auto: without it the stage does not train or score the auto way.")
        if self.turns not in (1, 2):
            raise ConfigError(f"turns must be 1 or 2 in sr3 rl, got {self.turns}: RL trains the reasoning of one turn "
                              "(the last); sr3 eval --turns evaluates more.")
        if not 1 <= self.feedback_k <= self.top_k:
            raise ConfigError(f"feedback_k must be in [1, top_k={self.top_k}]: the documents shown are the environment's "
                              f"top results (got {self.feedback_k}).")
        if self.group_size < 2:
            raise ConfigError(f"group_size must be >= 2: advantages are relative to the group (got {self.group_size}).")
        if self.auto and self.turns != 1:
            raise ConfigError("auto trains the choice between the direct embedding and a reasoning of one turn; with "
                              "turns=2 the direct embedding is turn 1 already. Use --turns 1 with --auto.")
        if self.reasoning_temperature <= 0:
            raise ConfigError("reasoning_temperature must be > 0: with greedy decoding the G reasonings of a query are "
                              "identical and every advantage is 0. Use --reasoning-temperature 1.0.")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}.")
        if not 0 < self.clip < 1:
            raise ConfigError(f"clip must be in (0, 1) (0.2 is usual), got {self.clip}.")
        if self.aux_temperature <= 0:
            raise ConfigError(f"aux_temperature must be > 0, got {self.aux_temperature}.")
        if self.aux_weight > 0 and self.refresh == "frozen":
            raise ConfigError("aux_weight > 0 trains against index rows, which refresh=frozen never updates: the "
                              "auxiliary loss would pull towards stale documents. Use --refresh lazy or --aux-weight 0.")
        if self.num_queries is not None and self.num_queries < self.queries_per_step:
            raise ConfigError(f"num_queries ({self.num_queries}) is smaller than queries_per_step ({self.queries_per_step}).")


@accepts_old_names
@dataclass
class EvalConfig:
    """Evaluate embedders side by side with BM25 and all-MiniLM-L6-v2 (``sr3 eval``)."""

    renamed = {"max_new_tokens": "reasoning_tokens"}  #: old option names still accepted (`current_names`)

    models: list[str] = field(default_factory=lambda: ["base"])
    """Embedders to evaluate: 'base' (the bundled SmolLM2, or --base-model) and/or folders written by `sr3 sft`."""
    base_model: str | None = None
    """What 'base' means: a Hugging Face causal LM name or folder (default: bundled SmolLM2-135M-Instruct)."""
    datasets: list[str] = field(default_factory=lambda: ["wordnet-revdict", "semanlink"])
    """Datasets to evaluate on (bundled names, BEIR folders or Hugging Face dataset folders)."""
    split: str = "test"
    """Qrels split."""
    num_queries: int | None = 500
    """Queries evaluated per dataset, a seeded sample (None: all)."""
    corpus_docs: int | None = 5000
    """Documents per corpus: a seeded sub-corpus that keeps every relevant document (None: the whole corpus;
    the 82k-document wordnet-revdict took 27-49 min per model on 2 CPU cores, 18 with --precision bf16)."""
    reasoning: bool = True
    """Also evaluate each embedder with reasoning before the embedding (slower: generation)."""
    reasoning_tokens: int = 48
    """Longest reasoning, in tokens."""
    auto: bool = False
    """Also evaluate the auto way: the model decides, query by query (greedily), whether to reason: it writes the
    embed token at once (the query gets its direct embedding) or reasons first; the table gives the share it
    reasoned on."""
    baselines: bool = True
    """Include BM25 and all-MiniLM-L6-v2."""
    turns: int = 1
    """Turns per query, as in RetrievalRefine-v0: with 2 or more, each embedder also gets a row per later turn, in
    which it reads the top --feedback-k documents its previous turn retrieved (cut to fit --max-length), reasons and
    embeds again; turn 1 is its direct row."""
    feedback_k: int = 3
    """Documents shown on each later turn."""
    max_length: int = 128
    """Prompt tokens kept per text."""
    batch_size: int = 64
    """Texts per forward pass (documents, queries, and reasonings generated side by side)."""
    seed: int = 0
    """Seed of the query sample and the sub-corpus."""
    output: str = "runs/eval/results.json"
    """JSON file for the table's rows (the Markdown table is printed too)."""
    device: str | None = None
    """cpu, cuda, ... (default: cuda when available)."""
    precision: str = "auto"
    """fp32, bf16 (bf16 compute: about twice as fast on CPUs with AVX-512 BF16 or AMX, vectors within
    bf16 rounding of fp32's) or auto (bf16 where the device computes it natively: a CUDA GPU that supports
    it, a CPU with AVX-512 BF16 or AMX; else fp32)."""
    generation_cache: str = "auto"
    """Key/value cache that reasonings are generated with: auto (a static cache and compiled decoding on CUDA, where
    generation is otherwise bound by kernel launches; the dynamic cache elsewhere), static (on every device, compiled
    on CUDA only) or dynamic (grown token by token, never compiled)."""

    def __post_init__(self) -> None:
        _precision(self)
        _generation_cache(self)
        _positive(self, "reasoning_tokens", "max_length", "batch_size", "turns", "feedback_k")
        if self.num_queries is not None and self.num_queries < 1:
            raise ConfigError(f"num_queries must be >= 1 or None (all), got {self.num_queries}.")
        if self.corpus_docs is not None and self.corpus_docs < 1:
            raise ConfigError(f"corpus_docs must be >= 1 or None (whole corpus), got {self.corpus_docs}.")
        if not self.models and not self.baselines:
            raise ConfigError("Nothing to evaluate: give --models or keep the baselines on.")
        if not self.datasets:
            raise ConfigError("Give at least one dataset in --datasets.")


@dataclass
class TrainConfig:
    """The main job (``sr3 train``): SFT, rejection-sampling SFT, RL, then evaluation beside BM25 and MiniLM.

    The defaults take about half an hour on 2 CPU cores (measured stage times: docs/results.md); each stage's other
    settings are those of sr3 sft / rl / eval."""

    model: str | None = None
    """Base causal LM: a Hugging Face name or folder, or a .gguf file (default: the bundled SmolLM2-135M-Instruct)."""
    dataset: str | list[str] = "wordnet-revdict"
    """Dataset: train split for SFT and RL, dev split for the evaluations during training, test split for the final
    table alone; or several, each
    NAME:WEIGHT (e.g. wordnet-revdict:3 path/to/beir:1): every stage trains on their mixture (each dataset's share of
    the queries and of corpus_docs by its weight) and the table reports each dataset on its own."""
    train_queries: int | None = 1000
    """Training queries drawn from the train split (None: all)."""
    corpus_docs: int | None = 1000
    """Documents in the training index (SFT mining and the RL environment): the relevant documents of the
    training queries, plus random others up to this number."""
    sft_steps: int = 24
    """SFT optimiser steps."""
    sft_batch_size: int = 16
    """SFT queries per step."""
    sft_learning_rate: float = 5e-5
    """AdamW learning rate of the SFT stage (sr3 sft --learning-rate). The defaults of the three stages suit training
    all weights; LoRA adapters (--lora) train at about ten times these (the qwen2.5-1.5b recipe's rates)."""
    sft_reasoning_fraction: float = 0.0
    """Share of the first SFT stage's queries embedded after an unselected sampled reasoning (the
    rejection-sampling stage trains the reasoning path)."""
    rs_steps: int = 8
    """Steps of the rejection-sampling SFT stage after SFT (0: skip it; RL then starts from SFT)."""
    rs_samples: int = 4
    """Reasonings sampled per query in that stage; the best-ranked one is trained on."""
    rs_learning_rate: float = 2e-5
    """AdamW learning rate of the rejection-sampling stage."""
    rl_steps: int = 20
    """RL optimiser steps."""
    rl_learning_rate: float = 1e-5
    """AdamW learning rate of the RL stage (sr3 rl --learning-rate)."""
    queries_per_step: int = 4
    """RL queries per step."""
    group_size: int = 4
    """RL reasonings sampled per query."""
    reasoning_tokens: int = 48
    """Longest reasoning, in tokens (SFT, RL and evaluation)."""
    auto: bool = False
    """RL trains the auto way (sr3 rl --auto: not reasoning is one of each group's options), and the table adds each
    model's auto row (sr3 eval --auto: the model decides, query by query, whether to reason) and its paired
    difference from direct. Without it the table has no auto rows: a model never trained to choose reasons on
    nearly every query, so its auto row repeats its reasoning row at the cost of a second generation."""
    latent_tokens: int = 0
    """Think tokens of the latent way, trained by the SFT and rejection-sampling stages (sr3 sft --latent-tokens); the
    table adds each model's latent row and its paired difference from direct. 0: none."""
    latent_fraction: float = 1.0
    """With --latent-tokens: share of the directly embedded training queries that go through the think tokens in
    SFT and rejection sampling (sr3 sft --latent-fraction); the rest train the plain direct layout. 1: all."""
    sft_eval_every: int = 12
    """SFT steps between evaluations on the dev split (sr3 sft --eval-every); each stage also scores its starting
    model and its last step and keeps the best as final/ (0: no evaluation, final/ is the last step)."""
    rs_eval_every: int = 8
    """Rejection-sampling steps between evaluations on the dev split (0: none)."""
    rl_eval_every: int = 10
    """RL steps between evaluations on the dev split (0: none)."""
    dev_queries: int | None = 100
    """Dev queries of those evaluations, a sample with seed 0 (None: all)."""
    dev_docs: int | None = 1000
    """Documents of their dev sub-corpus (every relevant one kept; None: the whole corpus)."""
    dev_fraction: float = 0.0
    """For a dataset without dev qrels: share of its train split carved off as the dev split (sr3 sft --dev-fraction)."""
    select_by: str = "best"
    """The dev nDCG@10 that picks each stage's final/: direct, reasoning, fused, auto or best (the highest of the ways
    the stage evaluates). Each stage starts from the previous one's final/."""
    min_token_rate: float = 0.9
    """Before RL: the share of the rejection-sampling model's greedy dev reasonings that must end with <|embed_token|>
    (RL cannot reward a format the model never writes). That stage keeps a checkpoint that does if it has one, runs
    up to --format-rounds more rounds of --rs-steps while it has none, then stops and says what to change (0: none of
    this)."""
    format_rounds: int = 2
    """Extra rounds of rejection sampling (each --rs-steps long) while its model ends fewer than --min-token-rate of its
    dev reasonings with the token."""
    rs_select_by: str = "reasoning"
    """The dev nDCG@10 that picks the rejection-sampling stage's final/. That stage teaches the model to write a
    reasoning and end it with the token, which RL needs, while the anchor holds its direct embedding: by default it
    keeps its best reasoning checkpoint. The model the run tells you to use is the best of all stages' on dev."""
    anchor_weight: float = 10.0
    """Weight of the anchor that holds the direct embedding where the rejection-sampling and RL stages started
    (sr3 sft / rl --anchor-weight; 0: none)."""
    interpolate: list[float] = field(default_factory=list)
    """After RL: the weights (1 - a) * SFT + a * RL for each a given (e.g. --interpolate 0.25 0.5 0.75), scored on the
    dev split beside the SFT and RL models; the best of them becomes interpolated/final and the table adds its rows
    (weight interpolation, WiSE-FT). None given: no such stage."""
    interpolate_select_by: str = "fused"
    """The dev nDCG@10 that picks the interpolation weight (direct, reasoning, fused or best), among the weights whose
    direct embedding holds (--interpolate-tolerance)."""
    interpolate_tolerance: float = 0.01
    """A weight is a candidate only where its direct dev nDCG@10 is at most this much below the SFT model's: the mix
    may not cost the direct embedding."""
    eval_queries: int | None = 200
    """Test queries in the final table (a sample with seed 0, the same for every --seed; None: all)."""
    eval_docs: int | None = 2000
    """Documents in the final table's sub-corpus (every relevant one kept; None: the whole corpus)."""
    baselines: bool = True
    """Put BM25 and all-MiniLM-L6-v2 in the table."""
    eval_base: bool = False
    """Put the untrained base model in the table too (one more encoding of the corpus)."""
    seed: int = 0
    """Training seed (query batches, sampling, training subset)."""
    output_dir: str = "runs/train"
    """Where sft/, rl/ (checkpoints, final models, TensorBoard), results.json/.md and rl_curves.png go."""
    resume: bool = False
    """Continue an interrupted run in output_dir: finished stages are kept, an interrupted one resumes."""
    keep_checkpoints: bool = False
    """Keep each finished stage's checkpoints (weights and optimiser, about 1.6 GB each for the bundled model, 3.2 GB
    for Gemma-3-270m) and its best.pt. By default they are removed once the stage has saved final/ (its kept model,
    which the next stage starts from), since --resume keeps a finished stage as it is."""
    device: str | None = None
    """cpu, cuda, ... (default: cuda when available)."""
    precision: str = "auto"
    """fp32, bf16 (mixed precision: bf16 compute, fp32 weights and optimiser) or auto (bf16 where the device computes it natively: a CUDA GPU that supports it, a CPU with AVX-512 BF16 or AMX; else fp32)."""
    generation_cache: str = "auto"
    """Key/value cache that reasonings are generated with: auto (a static cache and compiled decoding on CUDA, where
    generation is otherwise bound by kernel launches; the dynamic cache elsewhere), static (on every device, compiled
    on CUDA only) or dynamic (grown token by token, never compiled)."""
    max_length: int = 128
    """Prompt tokens kept per text in training and evaluation (longer texts are truncated inside the chat template)."""
    lora: bool = False
    """Train LoRA adapters (peft) instead of all weights, in every training stage."""
    lora_rank: int = 16
    """LoRA rank."""
    activation_checkpointing: bool = False
    """Recompute activations in the backward pass (less memory, more compute), in every training stage."""

    def __post_init__(self) -> None:
        self.dataset = dataset_specs(self.dataset)
        _precision(self)
        _generation_cache(self)
        _positive(self, "max_length", "lora_rank")
        _positive(self, "sft_steps", "sft_batch_size", "rl_steps", "queries_per_step", "reasoning_tokens")
        _at_least(self, 0, "sft_eval_every", "rs_eval_every", "rl_eval_every", "rs_steps", "latent_tokens", "anchor_weight",
                  "format_rounds")
        if not 0 <= self.min_token_rate <= 1:
            raise ConfigError(f"min_token_rate is a share of the reasonings, in [0, 1]; got {self.min_token_rate}.")
        _at_least(self, 0, "interpolate_tolerance")
        for name in ("select_by", "rs_select_by", "interpolate_select_by"):
            if getattr(self, name) not in SELECT_BY or getattr(self, name) == "auto":
                raise ConfigError(f"{name} must be one of {', '.join(w for w in SELECT_BY if w != 'auto')}; got "
                                  f"{getattr(self, name)!r}.")
        if not 0 <= self.dev_fraction < 1:
            raise ConfigError(f"dev_fraction is a share of the train split's queries, in [0, 1); got {self.dev_fraction}.")
        outside = [a for a in self.interpolate if not 0 < a < 1]
        if outside:
            raise ConfigError(f"interpolate takes weights of the RL model strictly between 0 and 1 (the SFT and RL models "
                              f"themselves are always compared); got {outside}.")
        _latent_fraction(self)
        _positive(self, "rs_samples")
        for name in ("sft_learning_rate", "rs_learning_rate", "rl_learning_rate"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}.")
        if not 0 <= self.sft_reasoning_fraction <= 1:
            raise ConfigError(f"sft_reasoning_fraction is a share of the batch, in [0, 1]; got {self.sft_reasoning_fraction}.")
        if self.group_size < 2:
            raise ConfigError(f"group_size must be >= 2: advantages are relative to the group (got {self.group_size}).")
        for name in ("train_queries", "corpus_docs", "eval_queries", "eval_docs", "dev_queries", "dev_docs"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1 or none (all), got {getattr(self, name)}.")
        if self.train_queries is not None and self.train_queries < max(self.sft_batch_size, self.queries_per_step):
            raise ConfigError(f"train_queries ({self.train_queries}) must be at least sft_batch_size "
                              f"({self.sft_batch_size}) and queries_per_step ({self.queries_per_step}).")



@dataclass
class ExportConfig:
    """Export an embedder as a sentence-transformers folder with a model card (``sr3 export``)."""

    model: str = "base"
    """What to export: 'base' (the bundled SmolLM2, or --base-model) or a folder written by sr3 (e.g. runs/train/rl/final)."""
    output: str = "runs/export"
    """The folder to write (must be empty or absent, unless --overwrite)."""
    base_model: str | None = None
    """What 'base' means: a Hugging Face causal LM name or folder (default: bundled SmolLM2-135M-Instruct)."""
    max_length: int | None = None
    """Prompt tokens kept per text (default: the model's own setting, saved with it)."""
    results: str | None = None
    """A results.json of sr3 eval / sr3 train for the card's evaluation table (default: the one sr3 train wrote next to the model, if any)."""
    check_dataset: str = "semanlink"
    """Dataset whose real queries and documents the export is checked on (a bundled name or a BEIR folder)."""
    check_texts: int = 16
    """Queries and documents each on which the folder, loaded by sentence-transformers, must equal the embedder (0: no check)."""
    tolerance: float = 1e-4
    """Largest absolute difference of any embedding coordinate allowed by the check."""
    overwrite: bool = False
    """Replace a non-empty output folder."""
    device: str | None = None
    """cpu, cuda, ... (default: cuda when available)."""

    def __post_init__(self) -> None:
        _at_least(self, 0, "check_texts")
        if self.max_length is not None and self.max_length < 8:
            raise ConfigError(f"max_length must be at least 8 tokens (the chat template alone takes several), got {self.max_length}.")
        if self.tolerance <= 0:
            raise ConfigError(f"tolerance must be > 0, got {self.tolerance}.")


@dataclass
class ServeConfig:
    """Serve an embedder over HTTP: OpenAI-style /v1/embeddings, Search-R1-style /retrieve (``sr3 serve``)."""

    model: str = "base"
    """What to serve: 'base' (the bundled SmolLM2, or --base-model) or a folder written by sr3 or sr3 export."""
    base_model: str | None = None
    """What 'base' means: a Hugging Face causal LM name or folder (default: bundled SmolLM2-135M-Instruct)."""
    corpus: str | None = None
    """Dataset whose corpus /retrieve searches (a bundled name, BEIR folder or Hugging Face dataset folder); none: no /retrieve."""
    corpus_docs: int | None = None
    """Documents of the corpus to index: a seeded sub-corpus that keeps every relevant document (None: all)."""
    split: str = "test"
    """Qrels split read with the corpus (it decides which documents a sub-corpus keeps)."""
    host: str = "127.0.0.1"
    """Address to listen on (0.0.0.0: every interface)."""
    port: int = 8000
    """Port to listen on."""
    served_name: str | None = None
    """The model name clients send and see (default: the model folder's name)."""
    default_input_type: str = "query"
    """How /v1/embeddings embeds texts when a request gives no input_type: query or document."""
    topk: int = 3
    """Documents per query that /retrieve returns when a request gives no topk."""
    max_topk: int = 100
    """Largest topk a request may ask for."""
    reasoning_tokens: int = 48
    """Longest reasoning written before a query embedding, in tokens (a request may ask for fewer)."""
    max_inputs: int = 256
    """Most texts in one request."""
    max_chars: int = 20000
    """Most characters in one text (longer texts are refused; texts are also cut to max_length tokens)."""
    max_batch: int = 32
    """Most texts in one forward pass; texts of concurrent requests are batched together up to this."""
    batch_wait_ms: float = 5.0
    """How long the batcher waits for more requests before running a batch, in milliseconds."""
    max_queue: int = 1024
    """Most texts waiting to be encoded; past it a request gets 429 with Retry-After, and one of more texts 413."""
    api_key: str | None = None
    """A Bearer key every request but /health must send (default: $SR3_API_KEY; unset: no key)."""
    max_length: int | None = None
    """Prompt tokens kept per text (default: the model's own setting)."""
    device: str | None = None
    """cpu, cuda, ... (default: cuda when available)."""

    def __post_init__(self) -> None:
        _positive(self, "topk", "max_topk", "reasoning_tokens", "max_inputs", "max_chars", "max_batch", "max_queue")
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigError("api_key is empty; give a non-empty key, or none (then $SR3_API_KEY, if set, is used).")
        if self.topk > self.max_topk:
            raise ConfigError(f"topk ({self.topk}) must be <= max_topk ({self.max_topk}).")
        if self.default_input_type not in ("query", "document"):
            raise ConfigError(f"default_input_type must be query or document, got {self.default_input_type!r}.")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be in 0..65535 (0: any free port), got {self.port}.")
        if self.batch_wait_ms < 0:
            raise ConfigError(f"batch_wait_ms must be >= 0, got {self.batch_wait_ms}.")
        if self.corpus_docs is not None and self.corpus_docs < 1:
            raise ConfigError(f"corpus_docs must be >= 1 or none (all), got {self.corpus_docs}.")
        if self.max_length is not None and self.max_length < 8:
            raise ConfigError(f"max_length must be at least 8 tokens, got {self.max_length}.")

def dataset_specs(value: str | list[str]) -> str | list[str]:
    """A training ``dataset`` option checked (`sr3_env.mixture.parse_dataset_specs`): one spec as a string
    (a list of one is unwrapped, so that ``--dataset NAME`` is the same setting as before mixtures), several
    as a list; a bad spec raises `ConfigError` saying how to fix it."""
    from sr3_env.errors import DataError
    from sr3_env.mixture import parse_dataset_specs

    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    try:
        parse_dataset_specs(value)
    except DataError as error:
        raise ConfigError(f"dataset: {error}") from None
    return value if isinstance(value, str) else list(value)


def _precision(config: Any) -> None:
    if config.precision not in ("auto", "fp32", "bf16"):
        raise ConfigError(f"precision must be auto, fp32 or bf16, got {config.precision!r} (fp16 would need a loss "
                          "scaler; bf16 mixed precision needs none).")


def _generation_cache(config: Any) -> None:
    from sr3_agent.model.static_cache import GENERATION_CACHES

    if config.generation_cache not in GENERATION_CACHES:
        raise ConfigError(f"generation_cache must be auto, static or dynamic, got {config.generation_cache!r} (auto: a "
                          "static cache and compiled decoding on CUDA, the dynamic cache elsewhere).")


def _latent_fraction(config: Any) -> None:
    if not 0 < config.latent_fraction <= 1:
        raise ConfigError(f"latent_fraction is the share of the direct queries trained through the think tokens, in "
                          f"(0, 1]; got {config.latent_fraction} (for none, leave out --latent-tokens).")
    if config.latent_fraction < 1 and not config.latent_tokens:
        raise ConfigError(f"latent_fraction={config.latent_fraction} needs think tokens: add --latent-tokens k "
                          "(8 is a start).")


def _positive(config: Any, *names: str) -> None:
    for name in names:
        if getattr(config, name) < 1:
            raise ConfigError(f"{name} must be >= 1, got {getattr(config, name)}.")


def _at_least(config: Any, low: float, *names: str) -> None:
    for name in names:
        if getattr(config, name) < low:
            raise ConfigError(f"{name} must be >= {low}, got {getattr(config, name)}.")


# -- the CLI from the dataclass ------------------------------------------------------------------

@cache
def field_docs(cls: type) -> dict[str, str]:
    """Each field's docstring (the string literal right after it in the class body); a class's own
    docstring for a field wins over its base classes'."""
    docs: dict[str, str] = {}
    for klass in reversed([k for k in cls.__mro__ if dataclasses.is_dataclass(k)]):
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        body = tree.body[0].body
        for statement, following in zip(body, body[1:]):
            if (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)
                    and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)):
                docs[statement.target.id] = " ".join(str(following.value.value).split())
    return docs


def _parse_optional(kind: type) -> Any:
    def parse(text: str) -> Any:
        return None if text.lower() in ("none", "") else kind(text)
    parse.__name__ = kind.__name__
    return parse


def _argument_kinds(hint: Any) -> dict[str, Any]:
    """The ``add_argument`` keywords that parse a field of type ``hint`` (bool, list, optional or plain)."""
    args = typing.get_args(hint)
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction}
    if typing.get_origin(hint) is list:
        return {"nargs": "*", "type": args[0]}
    several = [a for a in args if typing.get_origin(a) is list]
    if several:  # one value or several (str | list[str]): one or more words, a list of one unwrapped by the config
        return {"nargs": "+", "type": typing.get_args(several[0])[0]}
    if type(None) in args:  # Optional[X]: "none" on the command line means None
        return {"type": _parse_optional(next(a for a in args if a is not type(None)))}
    return {"type": hint}


class _OldFlag(argparse.Action):
    """A renamed option's old flag: stores the value under the current name and notes the old flag, so
    that `config_from_args` can say, once logging is set up, which name to use instead."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, values)
        namespace.old_flags = [*getattr(namespace, "old_flags", []), (option_string, "--" + self.dest.replace("_", "-"))]


def dataclass_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one ``--option`` per field of ``cls``; help text from the field docstrings. A renamed option's
    old flag (``cls.renamed``) is accepted too, without help of its own."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    for item in dataclasses.fields(cls):
        flag = "--" + item.name.replace("_", "-")
        default = item.default if item.default is not dataclasses.MISSING else item.default_factory()
        doc = docs.get(item.name, "")
        # a docstring that already says what the default means keeps its own words
        help_text = (doc if "default:" in doc else f"{doc} (default: {default})").replace("%", "%%")
        parser.add_argument(flag, default=default, help=help_text, **_argument_kinds(hints[item.name]))
    for old, new in getattr(cls, "renamed", {}).items():
        parser.add_argument("--" + old.replace("_", "-"), dest=new, action=_OldFlag, default=argparse.SUPPRESS,
                            help=argparse.SUPPRESS, **{k: v for k, v in _argument_kinds(hints[new]).items()
                                                       if k != "action"})


def config_from_args(cls: type, args: argparse.Namespace) -> Any:
    """Build (and so validate) a config from parsed arguments; one warning per old flag used."""
    for old, new in getattr(args, "old_flags", []):
        logger.warning("%s is deprecated, use %s (same setting)", old, new)
    return cls(**{item.name: getattr(args, item.name) for item in dataclasses.fields(cls)})
