"""Evaluation: IR metrics and the systems compared (`evaluate`), later turns of multi-turn retrieval
(`feedback`) and the ``sr3 eval`` command (`eval_command`)."""
