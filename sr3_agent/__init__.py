"""sr3_agent: the reasoning embedder, its SFT warm-up, the RL loop and evaluation (coming in later releases).

`sr3_env` never imports this package; this package builds on `sr3_env`.
"""
