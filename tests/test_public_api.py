"""The public API: what each package exports in ``__all__`` resolves, has a docstring and appears in the API
reference (docs/api/); ``import sr3_env`` loads none of the agent's heavy dependencies."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
API_PAGES = ROOT / "docs" / "api"

#: The namespaces users import from; every other module is internal.
PUBLIC_MODULES = ("sr3_env", "sr3_env.serving", "sr3_env.openenv", "sr3_agent", "sr3_agent.serving")

#: What ``import sr3_env`` must not load: the agent and the heavy optional dependencies.
HEAVY = ("sr3_agent", "transformers", "trl", "sentence_transformers", "stable_baselines3", "peft", "fastapi",
         "uvicorn", "faiss", "openenv")


def public_names(module_name: str) -> list[str]:
    if module_name == "sr3_env.openenv":
        pytest.importorskip("openenv", reason='sr3_env.openenv needs the extra: pip install "sr3[openenv]"')
    module = importlib.import_module(module_name)
    return list(module.__all__)


def reference_directives() -> set[str]:
    """The objects the API reference renders: every ``::: path`` line of docs/api/*.md."""
    return {match for page in sorted(API_PAGES.glob("*.md"))
            for match in re.findall(r"^::: (\S+)\s*$", page.read_text(encoding="utf-8"), re.MULTILINE)}


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_exported_name_resolves(module_name):
    names = public_names(module_name)
    module = importlib.import_module(module_name)
    assert len(names) == len(set(names)), f"{module_name}.__all__ repeats a name"
    missing = [name for name in names if not hasattr(module, name)]
    assert missing == [], f"{module_name}.__all__ names what the module does not define: {missing}"


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_exported_name_has_a_docstring(module_name):
    """Read as the API reference reads them (griffe, statically): a constant's docstring is the string literal
    under its assignment; a class or function's is its own, not one it inherits."""
    griffe = pytest.importorskip("griffe", reason='the docstring check reads the code as mkdocstrings does: pip install -e ".[dev]"')
    names = public_names(module_name)
    loader = griffe.GriffeLoader(search_paths=[str(ROOT)])
    loader.load(module_name.split(".")[0])
    loader.resolve_aliases(external=False, implicit=False)
    module = loader.modules_collection[module_name]
    undocumented = []
    for name in names:
        member = module.members.get(name)
        assert member is not None, f"the API reference cannot see {module_name}.{name} (import it in {module_name})"
        target = member.final_target if member.is_alias else member
        if target.docstring is None or not target.docstring.value.strip():
            undocumented.append(f"{module_name}.{name} ({target.path})")
    assert undocumented == [], f"public names without a docstring: {undocumented}"


def test_every_public_name_is_in_the_api_reference_and_nothing_else():
    expected = {f"{module_name}.{name}" for module_name in PUBLIC_MODULES for name in public_names(module_name)}
    rendered = reference_directives()
    assert sorted(expected - rendered) == [], "public names missing from docs/api/*.md (add a `::: name` line)"
    assert sorted(rendered - expected) == [], "docs/api/*.md renders names that are not exported in __all__"


def test_the_examples_use_only_public_names():
    """``from M import x`` with M a public namespace and x in its ``__all__``, ``import sr3_env`` then
    ``sr3_env.x`` likewise: an example shows what a user may build on, never an internal module."""
    import ast

    exported = {module_name: set(public_names(module_name)) for module_name in PUBLIC_MODULES}
    private = []
    for path in sorted((ROOT / "examples").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("sr3_env", "sr3_agent"):
                private += [f"{path.name}:{node.lineno} from {node.module} import {alias.name}" for alias in node.names
                            if alias.name not in exported.get(node.module, set())]
            elif isinstance(node, ast.Import):
                private += [f"{path.name}:{node.lineno} import {alias.name}" for alias in node.names
                            if alias.name.split(".")[0] in ("sr3_env", "sr3_agent") and alias.name not in exported]
            elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                  and node.value.id in ("sr3_env", "sr3_agent") and node.attr not in exported[node.value.id]):
                private.append(f"{path.name}:{node.lineno} {node.value.id}.{node.attr}")
    assert private == [], "examples reach past the public API (export the name, or use an exported one)"


def test_import_sr3_env_loads_neither_the_agent_nor_heavy_dependencies():
    code = (f"import sys, sr3_env; print(','.join(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"import sr3_env loaded {done.stdout.strip()}"


def test_the_exported_environment_classes_are_the_registered_ones():
    import gymnasium as gym
    from gymnasium.envs.registration import load_env_creator

    import sr3_env

    for env_id, single, vector in (("RetrievalEmbed-v0", sr3_env.RetrievalEmbedEnv, sr3_env.RetrievalEmbedVectorEnv),
                                   ("RetrievalRefine-v0", sr3_env.RetrievalRefineEnv, sr3_env.RetrievalRefineVectorEnv)):
        spec = gym.spec(env_id)
        assert load_env_creator(spec.entry_point) is single
        assert load_env_creator(spec.vector_entry_point) is vector
