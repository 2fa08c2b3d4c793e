"""sr3_agent: the reasoning embedder, its SFT warm-up and evaluation (the RL loop comes next).

`sr3_env` never imports this package; this package builds on `sr3_env`.

- `ReasoningEmbedder`: a causal LM whose hidden state at ``<|embed_token|>`` is the embedding;
  it implements the `sr3_env` ``Encoder`` protocol.
- `train_sft` / ``sr3 sft``: contrastive warm-up with hard negatives mined from a lazy index.
- `run_eval` / ``sr3 eval``: nDCG@10, Recall@100, MRR@10 beside BM25 and all-MiniLM-L6-v2.
"""

from sr3_agent.compare import run_eval
from sr3_agent.config import ConfigError, EvalConfig, SFTConfig
from sr3_agent.embedder import EMBED_TOKEN, Prompts, ReasoningEmbedder, Rollout
from sr3_agent.evaluate import evaluate_systems, ir_metrics, markdown_table
from sr3_agent.sft import train_sft

__all__ = ["EMBED_TOKEN", "ConfigError", "EvalConfig", "Prompts", "ReasoningEmbedder", "Rollout", "SFTConfig",
           "evaluate_systems", "ir_metrics", "markdown_table", "run_eval", "train_sft"]
