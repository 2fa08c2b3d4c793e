"""Evaluation on the dev split while a stage trains, and the choice of the checkpoint it keeps.

As sentence-transformers' ``InformationRetrievalEvaluator`` with the Trainer's ``load_best_model_at_end``:

    evaluator = DevEvaluator(dev, ways=("direct", "reasoning", "fused"), reasoning_tokens=48)
    selection = Selection(output_dir, select_by="best")
    selection.offer(evaluator(embedder, step), embedder)   # at the start, every --eval-every steps, at the end
    selection.restore(embedder)                            # the best step's weights, before final/ is saved

`DevEvaluator` scores an embedder on the dev queries (nDCG@10 of each query way, with a 95% bootstrap interval of
the mean over the dev queries); `Selection` keeps the trainable weights of the best step by a named metric
(`sr3_agent.config.SELECT_BY`) in ``best.pt`` beside ``selection.json`` (every evaluation, the best step and why),
so that a resumed run still knows them. Ties keep the earlier step: a stage that does not beat its starting model
hands that model on unchanged. With ``min_token_rate``, checkpoints whose dev reasonings end with the token that
often come first (the rejection-sampling stage must hand RL a model that writes the format). The test split is never read here: `dev_set` loads the dev split.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sr3_agent.config import ConfigError
from sr3_agent.model.embedder import ReasoningEmbedder
from sr3_env import RetrievalDataset, load_mixture

logger = logging.getLogger(__name__)

#: query ways in the order ties are broken (the cheapest first: a tie serves the direct embedding)
WAYS = ("direct", "fused", "reasoning", "auto", "two-turn")
SELECTION_FILE = "selection.json"
BEST_FILE = "best.pt"


# -- pure pieces ----------------------------------------------------------------------------------

def mean_interval(values: np.ndarray, samples: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (queries resampled with replacement)."""
    values = np.asarray(values, dtype=np.float64)
    means = values[np.random.default_rng(seed).integers(len(values), size=(samples, len(values)))].mean(axis=1)
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


@dataclass
class DevScores:
    """One evaluation: the step, and per way the mean dev nDCG@10 and its 95% interval."""

    step: int
    ndcg: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    queries: int
    embed_token_rate: float | None = None  #: share of the greedy reasonings that ended with the token (None: none written)

    def metric(self, select_by: str) -> float:
        """The value ``select_by`` names: one way's nDCG@10, or ``best``, the highest of them."""
        if select_by == "best":
            return max(self.ndcg.values())
        if select_by not in self.ndcg:
            raise ConfigError(f"select_by={select_by!r}, but this stage evaluates {sorted(self.ndcg)}: choose one of them "
                              "or best.")
        return self.ndcg[select_by]

    def best_way(self) -> str:
        """The way with the highest dev nDCG@10 (ties: the cheaper way, in the order of `WAYS`)."""
        return max(sorted(self.ndcg, key=WAYS.index), key=lambda way: self.ndcg[way])

    def line(self) -> str:
        """The evaluation as one log line."""
        parts = [f"{way} {value:.3f} [{self.intervals[way][0]:.3f}, {self.intervals[way][1]:.3f}]"
                 for way, value in self.ndcg.items()]
        rate = f", token rate {self.embed_token_rate:.2f}" if self.embed_token_rate is not None else ""
        return f"dev nDCG@10 at step {self.step} ({self.queries} queries): " + ", ".join(parts) + rate

    def scalars(self) -> dict[str, float]:
        """TensorBoard scalars under dev/ (docs/metrics.md)."""
        out = {f"dev/ndcg@10_{way}": value for way, value in self.ndcg.items()}
        if self.embed_token_rate is not None:
            out["dev/embed_token_rate"] = self.embed_token_rate
        return out


def rank(scores: DevScores, select_by: str, min_token_rate: float = 0.0) -> tuple[bool, float, float]:
    """The order of checkpoints: those whose greedy dev reasonings end with the token at least ``min_token_rate`` of
    the time (the format the next stage needs) first, by the ``select_by`` metric; then the others, the closest to
    that format (the highest token rate) first, the metric breaking ties."""
    rate = scores.embed_token_rate
    if rate is None or rate >= min_token_rate:
        return (True, 0.0, scores.metric(select_by))
    return (False, rate, scores.metric(select_by))


def stage_ways(*, reasoning: bool, auto: bool = False, turns: int = 1) -> tuple[str, ...]:
    """The ways a stage evaluates: direct always; with ``reasoning`` (the stage trains it) reasoning and fused, or
    the second turn with ``turns`` 2; auto with ``auto``."""
    if not reasoning:
        return ("direct",)
    return ("direct", "two-turn") if turns == 2 else ("direct", "reasoning", "fused") + (("auto",) if auto else ())


# -- the evaluator --------------------------------------------------------------------------------

class DevEvaluator:
    """nDCG@10 of an embedder on a dev set, for each of ``ways``: documents re-encoded by the embedder as it is now,
    queries embedded each way (greedy reasonings of at most ``reasoning_tokens``), exact search."""

    def __init__(self, dataset: RetrievalDataset, ways: tuple[str, ...], reasoning_tokens: int = 48,
                 feedback_k: int = 3) -> None:
        if dataset.split == "test":
            raise ValueError("The evaluator of a training stage reads the dev split, never the test split.")
        self.dataset, self.ways = dataset, tuple(ways)
        self.reasoning_tokens, self.feedback_k = reasoning_tokens, feedback_k

    @property
    def fingerprint(self) -> str:
        """What makes two evaluations comparable: the dev queries, their corpus and the reasoning budget."""
        import hashlib

        digest = hashlib.sha256("\0".join([*self.dataset.query_ids, self.dataset.fingerprint(),
                                            str(self.reasoning_tokens), str(self.feedback_k)]).encode())
        return digest.hexdigest()[:16]

    def known(self, embedder: ReasoningEmbedder) -> DevScores | None:
        """The starting model's scores as step 0 without evaluating it again, where the stage that made it scored it
        on this very dev set in every way this stage needs (`Selection.record` keeps them in the model); else None."""
        saved = (embedder.selection or {}).get("scores")
        if not saved or embedder.selection.get("dev_fingerprint") != self.fingerprint or not set(self.ways) <= set(saved["ndcg"]):
            return None
        scores = _scores({**saved, "step": 0})
        scores.ndcg = {way: scores.ndcg[way] for way in self.ways}
        scores.intervals = {way: scores.intervals[way] for way in self.ways}
        return scores

    @torch.no_grad()
    def __call__(self, embedder: ReasoningEmbedder, step: int) -> DevScores:
        from sr3_agent.evaluation.eval_command import QueryPaths
        from sr3_agent.evaluation.evaluate import dense_run, per_query_metrics

        training = embedder.model.training
        embedder.model.eval()
        try:
            data, texts = self.dataset, list(self.dataset.query_texts)
            docs = embedder.encode_documents(data.documents)
            paths = QueryPaths(embedder, self.reasoning_tokens, turns=2 if "two-turn" in self.ways else 1,
                               feedback_k=self.feedback_k)
            ndcg, intervals = {}, {}
            for way in self.ways:
                vectors = paths.later_turns(data, docs)[-1].vectors if way == "two-turn" else getattr(paths, way)(texts)
                per_query = per_query_metrics(dense_run(data, vectors, docs, k=100), data.qrels)["ndcg@10"]
                values = np.array([per_query[q] for q in data.query_ids])
                ndcg[way], intervals[way] = float(values.mean()), mean_interval(values)
        finally:
            embedder.model.train(training)
        return DevScores(step, ndcg, intervals, len(texts), paths.embed_token_rate)


def dev_set(config: Any) -> RetrievalDataset | None:
    """The dev queries a stage evaluates: the dev split of its dataset(s) (carved off train with ``dev_fraction``
    where a dataset has none), a seed-0 sample of ``eval_queries`` and a sub-corpus of ``eval_docs``. None, with a
    warning that says how to get one, where a dataset has no dev split and no fraction is given."""
    from sr3_env import available_splits, parse_dataset_specs

    missing = [name for name, _ in parse_dataset_specs(config.dataset) if "dev" not in available_splits(name)]
    if missing and config.dev_fraction <= 0:
        logger.warning("%s: no dev split, so no evaluation during training and final/ is the last step. Pass "
                       "--dev-fraction 0.05 to carve one off the train split (left out of training), or write "
                       "qrels/dev.tsv.", ", ".join(missing))
        return None
    return load_mixture(config.dataset, split="dev", num_queries=config.eval_queries, num_docs=config.eval_docs, seed=0,
                        dev_fraction=config.dev_fraction)


def scores_record(best: DevScores, select_by: str, fingerprint: str | None = None) -> dict[str, Any]:
    """What a model records of the dev scores it was kept by (its saved config's ``selection``): the way to serve (its
    best way on dev) with its figure, the full scores, the metric that chose it and the dev set's ``fingerprint``."""
    way = best.best_way()  # select_by picks the checkpoint; the way to serve is that checkpoint's best
    return {"query_way": way, "dev_ndcg@10": round(best.ndcg[way], 4),
            "dev_interval": [round(v, 4) for v in best.intervals[way]], "dev_queries": best.queries,
            "step": best.step, "select_by": select_by, "scores": asdict(best), "dev_fingerprint": fingerprint}


# -- the selection --------------------------------------------------------------------------------

@dataclass
class Selection:
    """The best evaluation so far by ``select_by`` and the trainable weights of its step (`offer`), kept in
    ``output_dir`` so that a resumed run continues the comparison (`load`)."""

    output_dir: Path
    select_by: str
    min_token_rate: float = 0.0  #: a checkpoint whose dev reasonings end with the token less often wins only over such
    history: list[DevScores] = field(default_factory=list)
    best: DevScores | None = None

    @classmethod
    def load(cls, output_dir: Path, select_by: str, min_token_rate: float = 0.0) -> "Selection":
        """The selection saved in ``output_dir`` by an earlier run of the stage, or a new one."""
        saved = Path(output_dir) / SELECTION_FILE
        selection = cls(Path(output_dir), select_by, min_token_rate)
        if saved.is_file():
            state = json.loads(saved.read_text())
            selection.history = [_scores(entry) for entry in state["history"]]
            selection.best = next((s for s in selection.history if s.step == state["best_step"]), None)
        return selection

    def offer(self, scores: DevScores, embedder: ReasoningEmbedder) -> bool:
        """Record ``scores``; when they beat the best so far (strictly), keep the embedder's trainable weights as
        the best. Returns whether they did."""
        self.history = [s for s in self.history if s.step != scores.step] + [scores]
        better = self.best is None or self.rank(scores) > self.rank(self.best)
        if better:
            self.best = scores
            trainable = {name: p.detach().to("cpu", copy=True) for name, p in embedder.model.named_parameters()
                         if p.requires_grad}
            torch.save(trainable, self.output_dir / BEST_FILE)
        self._write()
        logger.info("%s%s", scores.line(), " (best so far)" if better else "")
        return better

    def rank(self, scores: DevScores) -> tuple[bool, float]:
        """The order of checkpoints (`rank` with this selection's metric and minimum token rate)."""
        return rank(scores, self.select_by, self.min_token_rate)

    def restore(self, embedder: ReasoningEmbedder) -> str:
        """Load the best step's weights into ``embedder`` (nothing to do when it is the last one evaluated) and
        return the sentence that says which step the stage kept and why."""
        if self.best is None:
            return "no dev evaluation: final/ is the last step"
        last = max(s.step for s in self.history)
        if self.best.step != last:
            saved = torch.load(self.output_dir / BEST_FILE, map_location="cpu", weights_only=True)
            parameters = dict(embedder.model.named_parameters())
            with torch.no_grad():
                for name, value in saved.items():
                    parameters[name].copy_(value.to(parameters[name].device))
            embedder.bump_version()  # the weights changed: rows and caches made after the best step are stale
        return self.reason()

    def reason(self) -> str:
        """Which step the stage kept and why, in one sentence."""
        if self.best is None:
            return "no dev evaluation: final/ is the last step"
        best, name = self.best, self.select_by
        value = best.metric(name)
        metric = f"dev nDCG@10 ({best.best_way()})" if name == "best" else f"dev nDCG@10 ({name})"
        others = ", ".join(f"step {s.step} {s.metric(name):.3f}" for s in sorted(self.history, key=lambda s: s.step)
                           if s is not best)
        of = f"of {len(self.history)} evaluations ({others})"
        rate, minimum = best.embed_token_rate, self.min_token_rate
        if minimum <= 0 or rate is None:
            return f"kept step {best.step}: best {metric} {value:.3f} {of}"
        if rate < minimum:
            return (f"kept step {best.step}: no step reached token rate {minimum:.2f}; the closest, {rate:.2f}, "
                    f"with {metric} {value:.3f} {of}")
        return (f"kept step {best.step}: best {metric} {value:.3f}, token rate {rate:.2f} (at least {minimum:.2f} "
                f"first) {of}")

    def record(self, fingerprint: str | None = None) -> dict[str, Any]:
        """What the final model records of its selection: the way to serve and its dev figure, and its full scores
        with the dev set's ``fingerprint`` (`DevEvaluator.known`: the next stage starts from them)."""
        return scores_record(self.best, self.select_by, fingerprint)

    def _write(self) -> None:
        state = {"select_by": self.select_by, "best_step": self.best.step if self.best else None,
                 "history": [asdict(s) for s in sorted(self.history, key=lambda s: s.step)]}
        (self.output_dir / SELECTION_FILE).write_text(json.dumps(state, indent=2) + "\n")


def _scores(entry: dict[str, Any]) -> DevScores:
    entry = dict(entry)
    entry["intervals"] = {way: tuple(bounds) for way, bounds in entry["intervals"].items()}
    return DevScores(**entry)
