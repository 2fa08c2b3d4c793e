"""``python -m sr3_env.openenv``: serve `RetrievalEmbed-v0` or `RetrievalRefine-v0` over OpenEnv's protocol.

uvicorn stops gracefully on SIGINT/SIGTERM (steps in flight are answered, then the batcher stops).
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

logger = logging.getLogger("sr3_env.openenv")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from sr3_env.openenv.environment import ENV_IDS

    parser = argparse.ArgumentParser(prog="python -m sr3_env.openenv", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--env", default="RetrievalEmbed-v0", choices=ENV_IDS, help="The environment to serve.")
    parser.add_argument("--host", default="127.0.0.1", help="Address to listen on (0.0.0.0: every interface).")
    parser.add_argument("--port", type=int, default=8001, help="Port to listen on.")
    parser.add_argument("--dataset", default="semanlink", help="Bundled dataset name, BEIR folder or Hugging Face dataset.")
    parser.add_argument("--split", default="test", help="Qrels split whose queries the episodes draw.")
    parser.add_argument("--encoder", default="minilm", help="Document encoder: minilm, hashing, or a sentence-transformers folder "
                        "(`sr3 export` of the policy: its document embeddings).")
    parser.add_argument("--reward", default="reciprocal_rank", help="reciprocal_rank, ndcg@k, recall@k or log_rank.")
    parser.add_argument("--top-k", type=int, default=100, help="Candidates re-encoded and returned per step.")
    parser.add_argument("--max-turns", type=int, default=2, help="RetrievalRefine-v0: turns per episode.")
    parser.add_argument("--feedback-k", type=int, default=3, help="RetrievalRefine-v0: documents shown after a turn.")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available).")
    parser.add_argument("--max-concurrent-envs", type=int, default=64, help="Most sessions open at once.")
    parser.add_argument("--session-timeout", type=float, default=300.0,
                        help="Seconds a session may stay idle before the server closes it.")
    parser.add_argument("--max-queue", type=int, default=1024,
                        help="Most steps waiting to be scored; past it a step is refused (HTTP 429 with Retry-After).")
    parser.add_argument("--max-batch", type=int, default=256, help="Most steps scored in one index search.")
    parser.add_argument("--batch-wait-ms", type=float, default=2.0, help="How long a step waits for others to share its search.")
    parser.add_argument("--api-key", default=None, help="A Bearer key every request but /health must send "
                        "(default: $SR3_API_KEY; unset: no key).")
    return parser.parse_args(argv)


def build(args: argparse.Namespace) -> tuple[Any, Any]:
    """The hub and the app of parsed arguments."""
    from sr3_env.openenv import EnvironmentHub, create_app
    from sr3_env.serving.operations import resolve_api_key

    env_kwargs: dict[str, Any] = {"dataset": args.dataset, "split": args.split, "encoder": args.encoder,
                                  "reward": args.reward, "top_k": args.top_k, "device": args.device}
    if args.env == "RetrievalRefine-v0":
        env_kwargs.update(max_turns=args.max_turns, feedback_k=args.feedback_k)
    hub = EnvironmentHub(args.env, max_batch=args.max_batch, max_wait=args.batch_wait_ms / 1000,
                         max_queue=args.max_queue, **env_kwargs)
    app = create_app(hub, max_concurrent_envs=args.max_concurrent_envs, session_timeout=args.session_timeout,
                     api_key=resolve_api_key(args.api_key))
    return hub, app


def main(argv: list[str] | None = None) -> None:
    from sr3_env.serving.thread import run_until_signal

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.max_queue < 1 or args.max_batch < 1 or args.batch_wait_ms < 0:
        raise SystemExit("--max-queue and --max-batch must be >= 1 and --batch-wait-ms >= 0.")
    hub, app = build(args)
    description = hub.task.describe()
    logger.warning("serving %s over OpenEnv on http://%s:%d (ws://%s:%d/ws): %s, %d documents, %s reward (Ctrl-C stops)",
                   args.env, args.host, args.port, args.host, args.port, description["dataset"], description["documents"],
                   description["reward"])
    run_until_signal(app, args.host, args.port)


if __name__ == "__main__":
    main()
