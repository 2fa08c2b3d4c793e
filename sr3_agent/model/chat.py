"""What sr3 reads from a model's chat template: whether it takes a system message, and which tokens end a turn.

Stop tokens and turn markers belong to the model, not to the caller (as transformers'
``generation_config.eos_token_id`` and chat templates have it): ChatML ends a turn with
``<|im_end|>``, Gemma with ``<end_of_turn>``, Llama 3 with ``<|eot_id|>``, Phi-3 with ``<|end|>``.
Both facts are found by rendering the template on marker messages, so a template sr3 has never
seen works the same way as the ones it has.

A template without a system role (one that raises on it, or drops it) gets the instruction at the
head of the user turn, ``instruction + "\\n\\n" + text``, which is what Gemma 3's own template does
with a system message.
"""

from __future__ import annotations

from typing import Any

from jinja2 import TemplateError

_SYSTEM_MARK = "sr3-system-marker"
_USER_MARK = "sr3-user-marker"
_ANSWER_MARK = "sr3-answer-marker"

#: how an instruction joins the user's text where the template has no system role
USER_TURN_SEPARATOR = "\n\n"


def supports_system_role(tokenizer: Any) -> bool:
    """Whether the chat template renders a system message (it neither raises on one nor drops it)."""
    messages = [{"role": "system", "content": _SYSTEM_MARK}, {"role": "user", "content": _USER_MARK}]
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except TemplateError:  # raise_exception("System role not supported"), or roles that must alternate
        return False
    return _SYSTEM_MARK in text


def prompt_messages(instruction: str, text: str, *, system_role: bool) -> list[dict[str, str]]:
    """The chat of one prompt: the instruction as a system message, or at the head of the user turn."""
    if system_role:
        return [{"role": "system", "content": instruction}, {"role": "user", "content": text}]
    return [{"role": "user", "content": instruction + USER_TURN_SEPARATOR + text}]


def template_turn_end(tokenizer: Any) -> int | None:
    """The special token the template writes right after an assistant answer (None if it writes none)."""
    messages = [{"role": "user", "content": _USER_MARK}, {"role": "assistant", "content": _ANSWER_MARK}]
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False)
    except TemplateError:  # a template that renders prompts only: no turn end to read
        return None
    if _ANSWER_MARK not in text:
        return None
    after = text[text.index(_ANSWER_MARK) + len(_ANSWER_MARK):]
    ids = tokenizer(after, add_special_tokens=False)["input_ids"]
    if not ids:
        return None
    special = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    return int(ids[0]) if ids[0] in special else None


def turn_end_id(tokenizer: Any) -> int | None:
    """The token that ends an assistant turn: the template's, else eos, else None."""
    for token_id in (template_turn_end(tokenizer), tokenizer.eos_token_id):
        if token_id is not None and token_id != tokenizer.unk_token_id:
            return int(token_id)
    return None


def stop_token_ids(tokenizer: Any, generation_config: Any = None) -> list[int]:
    """Every token that ends the model's turn: the template's turn end, the generation config's eos
    (one id or several) and the tokenizer's eos; sorted, without duplicates."""
    ids: set[int | None] = {template_turn_end(tokenizer), tokenizer.eos_token_id}
    configured = getattr(generation_config, "eos_token_id", None)
    ids.update(configured if isinstance(configured, (list, tuple)) else [configured])
    return sorted(int(i) for i in ids - {None, tokenizer.unk_token_id})
