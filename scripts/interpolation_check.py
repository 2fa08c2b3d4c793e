"""Does weight interpolation toward the SFT model (WiSE-FT) keep the direct embedding that rejection sampling and RL
lower? Scores ``(1 - alpha) * START + alpha * END`` on the dev split (never the test split) at several alphas and
prints the dev nDCG@10 of each way with its 95% interval and the token rate; writes the rows to OUT as JSON.

    python scripts/interpolation_check.py runs/main/sft/final runs/main/rl/final runs/interpolation-0.json

The dev set is the one `sr3 train` evaluates on by default (100 dev queries of wordnet-revdict, 1,000 documents).
About 1 min an alpha on 2 CPU cores.
"""

import argparse
import json
import logging
from dataclasses import asdict
from pathlib import Path

from sr3_agent.model.embedder import ReasoningEmbedder
from sr3_agent.model.precision import autocast_dtype_for
from sr3_agent.training.interpolation import chosen_mix, interpolation_curve
from sr3_agent.training.selection import DevEvaluator
from sr3_env import load_mixture

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("start")
parser.add_argument("end")
parser.add_argument("out")
parser.add_argument("--alphas", type=float, nargs="+", default=[0.25, 0.5, 0.75])
parser.add_argument("--dataset", default="wordnet-revdict")
parser.add_argument("--dev-queries", type=int, default=100)
parser.add_argument("--dev-docs", type=int, default=1000)
parser.add_argument("--reasoning-tokens", type=int, default=48)
parser.add_argument("--select-by", default="fused", help="as sr3 train --interpolate-select-by")
parser.add_argument("--tolerance", type=float, default=0.01, help="as sr3 train --interpolate-tolerance")
parser.add_argument("--save", help="save the mix at the chosen alpha in this folder (for sr3 eval on the test split)")
args = parser.parse_args()
logging.basicConfig(level=logging.INFO, format="%(message)s")

dev = load_mixture(args.dataset, split="dev", num_queries=args.dev_queries, num_docs=args.dev_docs, seed=0)
evaluator = DevEvaluator(dev, ("direct", "reasoning", "fused"), reasoning_tokens=args.reasoning_tokens)
start = ReasoningEmbedder.from_pretrained(args.start)
end = ReasoningEmbedder.from_pretrained(args.end)
for model in (start, end):  # the precision sr3 train's dev evaluations run at (--precision auto)
    model.autocast_dtype = autocast_dtype_for("auto", model.device)
curve = interpolation_curve(start, end, evaluator, args.alphas)
print("| alpha | direct | reasoning | fused | token rate |")
print("|---:|---:|---:|---:|---:|")
for alpha, s in curve:
    cells = [f"{s.ndcg[w]:.3f} [{s.intervals[w][0]:.3f}, {s.intervals[w][1]:.3f}]" for w in evaluator.ways]
    print(f"| {alpha:.2f} | " + " | ".join(cells) + f" | {s.embed_token_rate:.2f} |")
alpha, model = chosen_mix(start, end, curve, args.select_by, args.tolerance, evaluator.fingerprint)
print(f"chosen on dev: alpha {alpha} (best {args.select_by} among direct within {args.tolerance} of alpha 0)")
Path(args.out).parent.mkdir(parents=True, exist_ok=True)
with open(args.out, "w") as f:
    json.dump({"start": args.start, "end": args.end, "dev": {"dataset": args.dataset, "queries": len(dev.query_ids)},
               "chosen_alpha": alpha, "select_by": args.select_by, "tolerance": args.tolerance,
               "curve": [{"alpha": a, **asdict(s)} for a, s in curve]}, f, indent=2)
if args.save:
    model.save_pretrained(args.save)
