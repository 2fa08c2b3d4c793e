"""Request and response models of the server: the OpenAI embeddings wire format (extras optional) and
Search-R1's retriever format. Unknown fields are refused (``extra="forbid"``), so a misspelt option
is an error rather than silently ignored. Limits that depend on the server's settings (how many
texts, how long, how many documents) are checked by the app against `Limits`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Forbid(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server (from `ServeConfig`)."""

    max_inputs: int = 256
    max_chars: int = 20000
    max_topk: int = 100
    reasoning_tokens: int = 32

    def check_texts(self, texts: list[str], field: str) -> str | None:
        """A message saying what is wrong with ``texts``, or None when they are within the limits."""
        if not texts:
            return f"'{field}' is empty; send at least one text."
        if len(texts) > self.max_inputs:
            return f"'{field}' holds {len(texts)} texts; this server takes at most {self.max_inputs} per request."
        for index, text in enumerate(texts):
            if not text.strip():
                return f"'{field}[{index}]' is empty or only whitespace; every text needs some content."
            if len(text) > self.max_chars:
                return (f"'{field}[{index}]' has {len(text)} characters; this server takes at most {self.max_chars} "
                        "per text.")
        return None


# -- POST /v1/embeddings ------------------------------------------------------------------------

class EmbeddingRequest(Forbid):
    """The OpenAI embeddings request, plus sr3's optional extras."""

    input: str | list[str] = Field(description="A text or a list of texts (token-id arrays are not accepted).")
    model: str = Field(description="The served model's name (GET /v1/models).")
    encoding_format: Literal["float", "base64"] = Field("float", description="base64: little-endian float32 bytes.")
    dimensions: int | None = Field(None, description="Must equal the model's dimension if given (no truncation).")
    user: str | None = Field(None, description="Accepted for compatibility; unused.")
    input_type: Literal["query", "document"] | None = Field(
        None, description="Embed as search queries or as documents (default: the server's --default-input-type).")
    reasoning: bool | Literal["auto"] = Field(
        False, description="Queries only: write a short analysis first, then embed; \"auto\": the model decides, "
                           "query by query, whether to (its direct embedding where it does not).")
    return_reasoning: bool = Field(False, description="With reasoning: return each analysis beside its embedding.")
    max_reasoning_tokens: int | None = Field(None, ge=1, description="Longest analysis (default and most: the server's).")

    @field_validator("input", mode="before")
    @classmethod
    def _no_token_ids(cls, value: Any) -> Any:
        if isinstance(value, list) and value and all(isinstance(v, (int, list)) and not isinstance(v, bool) for v in value):
            raise ValueError("token-id arrays are not accepted; send the texts themselves (a string or a list of strings)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "EmbeddingRequest":
        if self.reasoning and self.input_type == "document":
            raise ValueError("reasoning applies to queries; documents are always embedded directly "
                             "(drop 'reasoning' or use input_type 'query')")
        if self.return_reasoning and not self.reasoning:
            raise ValueError("return_reasoning needs reasoning: true")
        if self.max_reasoning_tokens is not None and not self.reasoning:
            raise ValueError("max_reasoning_tokens needs reasoning: true")
        return self

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    embedding: list[float] | str
    index: int
    reasoning: str | None = None  #: with return_reasoning (an sr3 extra)


class Usage(BaseModel):
    prompt_tokens: int  #: tokens read to embed the texts (prompt and chat template included)
    total_tokens: int  #: prompt_tokens plus the tokens written as reasoning


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


# -- POST /retrieve (Search-R1) ---------------------------------------------------------------

class RetrieveRequest(Forbid):
    """Search-R1's retriever request."""

    queries: list[str] = Field(description="Search queries.")
    topk: int | None = Field(None, ge=1, description="Documents per query (default: the server's --topk).")
    return_scores: bool = Field(False, description="Pair each document with its cosine score.")
    reasoning: bool | Literal["auto"] = Field(
        False, description="An sr3 extra: write an analysis of each query before embedding it (\"auto\": the model "
                           "decides, query by query, whether to).")


class Document(BaseModel):
    id: str
    contents: str  #: the title on the first line, then the text (as Search-R1's corpus)


class ScoredDocument(BaseModel):
    document: Document
    score: float


class RetrieveResponse(BaseModel):
    result: list[list[ScoredDocument]] | list[list[Document]]


# -- errors -----------------------------------------------------------------------------------

class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """The OpenAI error shape (the ``openai`` client turns it into e.g. ``BadRequestError``)."""

    error: ErrorBody
