"""One name per setting: renamed options still work under their old names (flag, config-file key,
keyword, saved config), with one deprecation line; every command's help shows every option."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest

from sr3_agent.cli import COMMANDS, build_parser
from sr3_agent.config import EvalConfig, RLConfig, SFTConfig, config_from_args
from sr3_agent.recipes import read_config_file
from sr3_agent.training.checkpoint import check_resumable, save_config


def parsed(argv: list[str]):
    args = build_parser().parse_args(argv)
    return config_from_args(COMMANDS[args.command][0], args)


def deprecations(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "deprecated" in r.getMessage()]


@pytest.mark.parametrize("argv, field, value, old, new", [
    (["sft", "--temperature", "0.1"], "infonce_temperature", 0.1, "--temperature", "--infonce-temperature"),
    (["rl", "--temperature", "0.9"], "reasoning_temperature", 0.9, "--temperature", "--reasoning-temperature"),
    (["rl", "--max-new-tokens", "7"], "reasoning_tokens", 7, "--max-new-tokens", "--reasoning-tokens"),
    (["eval", "--max-new-tokens", "5"], "reasoning_tokens", 5, "--max-new-tokens", "--reasoning-tokens"),
])
def test_an_old_flag_sets_the_renamed_option_and_warns_once(caplog, argv, field, value, old, new):
    with caplog.at_level(logging.WARNING):
        config = parsed(argv)
    assert getattr(config, field) == value
    assert deprecations(caplog) == [f"{old} is deprecated, use {new} (same setting)"]


@pytest.mark.parametrize("argv, field, value", [
    (["sft", "--infonce-temperature", "0.1"], "infonce_temperature", 0.1),
    (["rl", "--reasoning-temperature", "0.9", "--reasoning-tokens", "7"], "reasoning_temperature", 0.9),
    (["rl", "--reasoning-tokens", "7"], "reasoning_tokens", 7),
    (["eval", "--reasoning-tokens", "5"], "reasoning_tokens", 5),
])
def test_the_new_flag_sets_the_option_without_a_warning(caplog, argv, field, value):
    with caplog.at_level(logging.WARNING):
        config = parsed(argv)
    assert getattr(config, field) == value
    assert deprecations(caplog) == []


def test_defaults_are_unchanged_by_the_rename():
    assert SFTConfig().infonce_temperature == 0.05 and SFTConfig().reasoning_temperature == 0.7
    assert RLConfig().reasoning_temperature == 1.0 and RLConfig().reasoning_tokens == 48
    assert EvalConfig().reasoning_tokens == 48
    assert parsed(["rl"]) == RLConfig() and parsed(["sft"]) == SFTConfig()


def test_old_keywords_and_config_file_keys_still_work(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        assert RLConfig(max_new_tokens=4, temperature=0.5) == RLConfig(reasoning_tokens=4, reasoning_temperature=0.5)
        assert SFTConfig(temperature=0.1).infonce_temperature == 0.1
    assert len(deprecations(caplog)) == 3
    caplog.clear()
    path = tmp_path / "rl.toml"
    path.write_text("max-new-tokens = 9\ntemperature = 0.8\n")
    with caplog.at_level(logging.WARNING):
        assert read_config_file(str(path), RLConfig) == {"reasoning_tokens": 9, "reasoning_temperature": 0.8}
    assert len(deprecations(caplog)) == 2


def test_a_run_saved_with_the_old_names_resumes(tmp_path):
    config = RLConfig(reasoning_tokens=4, reasoning_temperature=0.5, output_dir=str(tmp_path))
    save_config(tmp_path, config)
    saved = json.loads((tmp_path / "config.json").read_text())
    saved["max_new_tokens"], saved["temperature"] = saved.pop("reasoning_tokens"), saved.pop("reasoning_temperature")
    (tmp_path / "config.json").write_text(json.dumps(saved))
    check_resumable(tmp_path, config)  # the same settings under their old names: no error
    with pytest.raises(ValueError, match="reasoning_tokens: 4 -> 5"):
        check_resumable(tmp_path, dataclasses.replace(config, reasoning_tokens=5))


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_shows_every_option_inherited_ones_included(command, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    text = capsys.readouterr().out
    cls = COMMANDS[command][0]
    for item in dataclasses.fields(cls):
        assert "--" + item.name.replace("_", "-") in text, item.name
    for old in getattr(cls, "renamed", {}):  # old names work but are not advertised
        assert f"--{old.replace('_', '-')} " not in text
