"""What every sr3 server shares, whatever it serves (`sr3 serve`'s embeddings, the OpenEnv
environment server): the bounded micro-batching queue (`batcher`), the operational surface of
Bearer key, Prometheus ``/metrics`` and ``/info`` (`operations`), and a server on a background
thread for tests, examples and benchmarks (`thread`).

It lives in `sr3_env` because both `sr3_env.openenv` and `sr3_agent.serving` use it, and `sr3_env`
never imports `sr3_agent`.
"""

from sr3_env.serving.process import start_process, stop_process
from sr3_env.serving.thread import ServerThread, free_port

__all__ = ["ServerThread", "free_port", "start_process", "stop_process"]
