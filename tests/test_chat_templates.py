"""Any chat template: the turn end and the system role are read from the template, a model stops its
reasoning at its own turn end, a template without a system role gets the instruction in the user turn,
and the fast paths and the export still equal the plain path (tiny random Llama, the SmolLM2
tokenizer with each template and its turn markers added)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from sr3_agent.model.tiny_models import tiny_model
from sr3_agent.model.chat import stop_token_ids, supports_system_role, template_turn_end, turn_end_id
from sr3_env import load_dataset

ATOL = 1e-4

#: Gemma's layout: no system role (it raises), the assistant is "model", a turn ends with <end_of_turn>.
GEMMA_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "<start_of_turn>{{ role }}\n{{ message['content'] | trim }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")
#: Llama 3's layout: header tokens, a turn ends with <|eot_id|>.
LLAMA3_TEMPLATE = (
    "{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{{ message['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")
#: Phi-3's layout: role tokens, a turn ends with <|end|>.
PHI3_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")

TEMPLATES = {
    "gemma": (GEMMA_TEMPLATE, ["<start_of_turn>", "<end_of_turn>"], "<end_of_turn>", False),
    "llama3": (LLAMA3_TEMPLATE, ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"], "<|eot_id|>", True),
    "phi3": (PHI3_TEMPLATE, ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"], "<|end|>", True),
}


@pytest.fixture(scope="module")
def _templated():
    from transformers import AutoTokenizer

    from sr3_agent.model.embedder import EMBED_TOKEN, ReasoningEmbedder
    from sr3_agent.model.models import resolve_model

    built = {}

    def get(name: str):
        if name not in built:
            template, markers, _, _ = TEMPLATES[name]
            tokenizer = AutoTokenizer.from_pretrained(resolve_model())
            tokenizer.add_special_tokens({"additional_special_tokens": [*markers, EMBED_TOKEN]})
            tokenizer.chat_template = template
            built[name] = ReasoningEmbedder(tiny_model("llama", tokenizer), tokenizer, max_length=96, batch_size=4,
                                            name=f"tiny-{name}")
        return copy.deepcopy(built[name])

    return get


@pytest.fixture(scope="module")
def texts() -> list[str]:
    data = load_dataset("wordnet-revdict")
    return [*data.documents[:6], *data.query_texts[:4]]


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_the_turn_end_and_the_system_role_come_from_the_template(_templated, name):
    embedder = _templated(name)
    _, _, turn_end, system = TEMPLATES[name]
    tokenizer = embedder.tokenizer
    end_id = tokenizer.convert_tokens_to_ids(turn_end)
    assert template_turn_end(tokenizer) == end_id == turn_end_id(tokenizer)
    assert supports_system_role(tokenizer) is system and embedder.system_role is system
    assert end_id in embedder.stop_token_ids and embedder.stop_token_ids[0] == embedder.embed_token_id
    assert tokenizer.eos_token_id in stop_token_ids(tokenizer)  # the tokenizer's eos still stops too


def test_chatml_keeps_its_own_stop_tokens(tiny_embedder):
    """The bundled model's template (ChatML): <|im_end|>, which is also its eos."""
    im_end = tiny_embedder.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tiny_embedder.stop_token_ids == [tiny_embedder.embed_token_id, im_end] and tiny_embedder.system_role


def test_the_generation_configs_eos_ids_stop_too(_templated):
    from transformers import GenerationConfig

    embedder = _templated("llama3")
    extra = embedder.tokenizer.convert_tokens_to_ids("<|end_header_id|>")
    ids = stop_token_ids(embedder.tokenizer, GenerationConfig(eos_token_id=[extra, embedder.tokenizer.eos_token_id]))
    assert extra in ids and embedder.tokenizer.convert_tokens_to_ids("<|eot_id|>") in ids


def test_without_a_system_role_the_instruction_heads_the_user_turn(_templated):
    embedder = _templated("gemma")
    prompt = embedder.prompt_text("a dog", embedder.prompts.query)
    assert prompt == f"<start_of_turn>user\n{embedder.prompts.query}\n\na dog<end_of_turn>\n<start_of_turn>model\n"
    prefix = embedder.tokenizer.decode(embedder.prefix_ids(embedder.prompts.query))
    assert embedder.prompts.query in prefix and "a dog" not in prefix  # the shared prefix holds the instruction


@pytest.mark.parametrize("name", sorted(TEMPLATES))
@pytest.mark.parametrize("reuse_prefix", [True, False])
def test_reasoning_stops_at_the_models_own_turn_end(_templated, texts, name, reuse_prefix):
    """A model made to end its turn after two tokens stops there, far below the cap."""
    embedder = _templated(name)
    embedder.reuse_prefix = reuse_prefix
    end_id = embedder.tokenizer.convert_tokens_to_ids(TEMPLATES[name][2])
    head = embedder.model.get_output_embeddings()
    bias = torch.zeros(head.weight.shape[0])
    bias[end_id] = 50.0
    head.bias = torch.nn.Parameter(bias)
    rollout = embedder.generate_reasoning(texts[6:10], max_new_tokens=24, min_new_tokens=2)
    assert rollout.reasoning_lengths.tolist() == [2, 2, 2, 2] and not rollout.emitted.any()
    assert embedder.mean_reasoning_length == 2  # not the cap of 24


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_fast_paths_equal_the_plain_path_under_each_template(_templated, texts, name):
    embedder = _templated(name)
    twin = copy.copy(embedder)
    twin.reuse_prefix = False
    np.testing.assert_allclose(embedder.encode_documents(texts), twin.encode_documents(texts), atol=ATOL)
    np.testing.assert_allclose(embedder.encode_queries(texts[6:], reasoning=True, max_new_tokens=6),
                               twin.encode_queries(texts[6:], reasoning=True, max_new_tokens=6), atol=ATOL)


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_the_export_equals_the_embedder_under_each_template(_templated, texts, name, tmp_path, monkeypatch):
    from sentence_transformers import SentenceTransformer

    from sr3_agent.serving.export import export_embedder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    embedder = _templated(name)
    model = SentenceTransformer(str(export_embedder(embedder, tmp_path / "st")), device="cpu")
    np.testing.assert_allclose(model.encode_document(texts, batch_size=4), embedder.encode_documents(texts), atol=ATOL)
    np.testing.assert_allclose(model.encode_query(texts, batch_size=4), embedder.encode_queries(texts), atol=ATOL)
    features = model[0].preprocess(texts[:1], prompt=embedder.prompts.query)
    ids, _ = embedder.direct_batch(texts[:1], embedder.prompts.query)
    assert features["input_ids"][0][features["attention_mask"][0].bool()].tolist() == ids[0].tolist()
