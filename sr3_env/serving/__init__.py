"""What every sr3 server shares, whatever it serves (`sr3 serve`'s embeddings, the OpenEnv
environment server): the bounded micro-batching queue (`batcher`), the operational surface of
Bearer key, Prometheus ``/metrics`` and ``/info`` (`operations`), and a server on a background
thread for tests, examples and benchmarks (`thread`).

It lives in `sr3_env` because both `sr3_env.openenv` and `sr3_agent.serving` use it, and `sr3_env`
never imports `sr3_agent`.
"""
