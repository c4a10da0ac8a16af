"""`reasonlab bench` on smollm2 with small settings: it measures, writes bench.json and every plot.

Figures are printed by the benchmark, never asserted here (speed is not a unit-test property).
"""

from __future__ import annotations

import json

from reasonlab.bench import BenchConfig, run_bench
from reasonlab.bench.hardware import gguf_profile
from reasonlab.bench.measure import speed_by_length


def test_gguf_profile_of_tied_embeddings(smol_path) -> None:
    prof = gguf_profile(smol_path)
    # SmolLM2 reuses its embedding table as the output layer: every weight is read per token
    assert not prof.embedding_gathered
    assert prof.bytes_per_token == prof.tensor_bytes <= prof.file_bytes
    assert prof.flops_per_token == 2 * prof.params and 130e6 < prof.params < 140e6


def test_speed_by_length_windows() -> None:
    times = [k * 0.01 for k in range(300)]  # 100 tok/s throughout
    windows = speed_by_length(times, window=100)
    assert [w["tokens"] for w in windows] == [100, 200] and all(abs(w["tok_s"] - 100) < 1e-6 for w in windows)


def test_bench_writes_json_and_plots(tmp_path, smol_path, monkeypatch) -> None:
    from conftest import LLAMA_SERVER_BIN

    monkeypatch.setenv("REASONLAB_LLAMA_SERVER", str(LLAMA_SERVER_BIN))
    cfg = BenchConfig(model="smollm2-135m", models=("smollm2-135m",), batch_sizes=(1, 2), tokens=16, length=256,
                      prompt_tokens=32, concurrency=(1, 2), server_tokens=8, prefix_tokens=12)
    res = run_bench(cfg, tmp_path, say=lambda line: None)
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["memory"]["best_gbs"] > 0 and saved["compute"]["fp32_gemm_gflops"] > 0
    row = saved["models"][0]
    assert row["model"] == "smollm2-135m" and 0 < row["achieved_over_bound"]
    assert [r["batch"] for r in saved["batch"]["rows"]] == [1, 2] and saved["batch"]["rows"][0]["speedup"] == 1.0
    assert saved["length"]["windows"]
    rows = saved["prefix"]["rows"]  # cache off then on, per workload shape
    assert [(r["shape"], r["cache"]) for r in rows] == [("tir", False), ("tir", True), ("branch", False),
                                                         ("branch", True)]
    assert all(on["prefilled"] < off["prefilled"] and on["cached"] > 0 == off["cached"]
               for off, on in zip(rows[::2], rows[1::2]))
    for kind in ("llama-server", "llama-cpp-python"):  # both local servers measured
        assert saved["server"][kind]["rows"][1]["concurrency"] == 2, saved["server"][kind]
    assert sorted(res["plots"]) == ["bench_batch.png", "bench_length.png", "bench_models.png", "bench_server.png"]
    assert all((tmp_path / p).stat().st_size > 10_000 for p in res["plots"])
