"""The typed messages of the OpenEnv server: what a client sends (`EmbedAction`) and gets back
(`RetrievalObservation`, `RetrievalState`). Pydantic models, as OpenEnv's environment template has them."""

from __future__ import annotations

from typing import Any

from openenv.core.env_server.types import Action, Observation, State
from pydantic import Field


class EmbedAction(Action):
    """A query embedding: ``{"embedding": [floats]}`` of the encoder's dimension (only its direction counts)."""

    embedding: list[float] = Field(..., description="The query embedding: finite, non-zero, of the environment's dimension.")


class RetrievalObservation(Observation):
    """The query (and on later turns of RetrievalRefine-v0 the documents the last embedding retrieved),
    with ``reward`` and ``done``; ``info`` is the step's Gymnasium ``info`` (ranks, top ids, metrics, index stats)."""

    query: str = Field(default="", description="The query text.")
    query_id: str = Field(default="", description="The query's id in the dataset.")
    documents: list[str] = Field(default_factory=list, description="RetrievalRefine-v0: texts of the documents the "
                                 "previous turn retrieved, best first; empty on the first turn and in RetrievalEmbed-v0.")
    turn: int = Field(default=0, description="Turns taken in this episode.")
    info: dict[str, Any] = Field(default_factory=dict, description="The step's Gymnasium info (empty after reset).")


class RetrievalState(State):
    """The session's episode: its id, steps taken, the query, and the environment it runs."""

    env_id: str = ""
    query_id: str | None = None
    max_turns: int = 1
