"""sr3_agent: the reasoning embedder, its SFT warm-up, the RL loop, the TRL adapter and evaluation.

`sr3_env` never imports this package; this package builds on `sr3_env`.

- `ReasoningEmbedder`: a causal LM whose hidden state at ``<|embed_token|>`` is the embedding;
  it implements the `sr3_env` ``Encoder`` protocol.
- `train_sft` / ``sr3 sft``: contrastive warm-up with hard negatives mined from a lazy index.
- `train_rl` / ``sr3 rl``: reasoning and embedding trained together against ``RetrievalEmbed-v0``.
- `RetrievalReward`, `grpo_dataset`: the same environment as a reward function for ``trl.GRPOTrainer``;
  `RemoteRetrievalReward`: the same from an OpenEnv server of it (``python -m sr3_env.openenv``).
- `run_eval` / ``sr3 eval``: nDCG@10, Recall@100, MRR@10 beside BM25 and all-MiniLM-L6-v2.
"""

from sr3_agent.evaluation.eval_command import run_eval
from sr3_agent.config import ConfigError, EvalConfig, RLConfig, SFTConfig
from sr3_agent.model.embedder import EMBED_TOKEN, Prompts, ReasoningEmbedder
from sr3_agent.model.generation import Rollout
from sr3_agent.evaluation.evaluate import evaluate_systems, ir_metrics, markdown_table
from sr3_agent.training.rl import train_rl
from sr3_agent.training.sft import train_sft
from sr3_agent.training.trl_reward import RemoteRetrievalReward, RetrievalReward, grpo_dataset

__all__ = ["EMBED_TOKEN", "ConfigError", "EvalConfig", "Prompts", "RLConfig", "ReasoningEmbedder", "RemoteRetrievalReward",
           "RetrievalReward",
           "Rollout", "SFTConfig", "evaluate_systems", "grpo_dataset", "ir_metrics", "markdown_table", "run_eval",
           "train_rl", "train_sft"]
