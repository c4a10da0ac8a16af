"""LoRA adapters for llama.cpp: a peft adapter written as a GGUF LoRA, which llama.cpp applies at run time on
the quantized base (``--lora PATH``), so a trained model is evaluated by the same fast engine.

The writer is the ``gguf`` package's; tensor names and layout follow llama.cpp's own converter
(``convert_lora_to_gguf.py``): per adapted linear layer ``blk.N.<name>.weight.lora_a`` (A, [r, in]) and
``.lora_b`` (B, [out, r]), ``adapter.lora.alpha`` so llama.cpp scales by alpha / r as peft does. llama.cpp
stores the q and k projections of llama-architecture models with their rows permuted for its RoPE kernel, so
B's rows of those two are permuted the same way (A is not); qwen2 uses the other RoPE layout and needs none.

Rows an adapter trained for new tokens (peft's trainable tokens: the hCoT markers) are not a LoRA: they belong
in the base GGUF (``reasonlab train add-tokens --rows RUN``), and a base holding other rows there is refused in
one line (``check_token_rows``) rather than run with markers the model cannot write.

    >>> gguf_name("base_model.model.model.layers.3.self_attn.q_proj")
    'blk.3.attn_q.weight'
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from reasonlab.errors import ModelError


def gguf_writer(out: Path, arch: str) -> Any:
    """A ``gguf.GGUFWriter`` on ``out``'s ``.part`` sibling (parent directories made). ``close_gguf`` renames it into
    place once whole, so a killed write never leaves a file that looks finished to a resumable script."""
    import gguf

    out.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(out.with_name(out.name + ".part")), arch)
    writer.final_path = out  # type: ignore[attr-defined]
    return writer


def close_gguf(writer: Any) -> Path:
    writer.close()
    out: Path = writer.final_path
    out.with_name(out.name + ".part").replace(out)
    return out

# peft module name -> llama.cpp tensor name (Llama/Qwen2/Mistral families)
_NAMES = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
          "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
          "mlp.down_proj": "ffn_down"}
_LAYER = re.compile(r"layers\.(\d+)\.(.+)$")
PERMUTED_ARCHS = {"llama", "mistral"}  # q/k rows reordered for llama.cpp's RoPE (see llama.py's permute)


def gguf_name(module: str) -> str:
    m = _LAYER.search(module)
    if m is None or m.group(2) not in _NAMES:
        raise ModelError(f"LoRA module {module} has no llama.cpp counterpart (adapt {', '.join(_NAMES)} only)")
    return f"blk.{m.group(1)}.{_NAMES[m.group(2)]}.weight"


# peft module (its last name) -> llama.cpp tensor, for rows trained for new tokens
_ROW_TENSORS = {"embed_tokens": "token_embd.weight", "lm_head": "output.weight"}
_TOKEN_ROWS = re.compile(r"(?:.+\.)?([^.]+)\.token_adapter\.trainable_tokens_delta$")


def adapter_token_rows(adapter_dir: str | Path) -> dict[str, tuple[list[int], np.ndarray]]:
    """Rows a peft adapter trained for single tokens (``trainable_token_indices``), by llama.cpp tensor name:
    (token ids, their rows (n, hidden)); {} for a plain LoRA."""
    from safetensors import safe_open

    adapter_dir = Path(adapter_dir)
    indices = json.loads((adapter_dir / "adapter_config.json").read_text()).get("trainable_token_indices")
    if not indices:
        return {}
    if isinstance(indices, list):  # a list targets the input embedding
        indices = {"embed_tokens": indices}
    out: dict[str, tuple[list[int], np.ndarray]] = {}
    with safe_open(str(adapter_dir / "adapter_model.safetensors"), framework="numpy") as fh:
        for key in fh.keys():
            m = _TOKEN_ROWS.match(key)
            if m is None:
                continue
            module = m.group(1)
            if module not in _ROW_TENSORS or module not in indices:
                raise ModelError(f"{adapter_dir}: trained token rows of {module}, which has no llama.cpp counterpart "
                                 f"({', '.join(_ROW_TENSORS)} only)")
            out[_ROW_TENSORS[module]] = (list(indices[module]), fh.get_tensor(key).astype(np.float32))
    return out


def check_token_rows(adapter_dir: str | Path, base_gguf: str | Path) -> None:
    """ModelError unless ``base_gguf`` holds the rows ``adapter_dir`` trained for new tokens (to within its
    quantization: relative error under 5 %). A tied output matrix has only the embedding's rows to check."""
    import gguf

    rows = adapter_token_rows(adapter_dir)
    if not rows:
        return
    run = Path(adapter_dir)
    run = run.parent if run.name == "adapter" else run  # what --rows takes: the training run
    tensors = {t.name: t for t in gguf.GGUFReader(str(base_gguf)).tensors}
    for name, (ids, want) in rows.items():
        t = tensors.get(name)
        if t is None:
            continue
        got = gguf.quants.dequantize(np.asarray(t.data)[ids], t.tensor_type).reshape(want.shape)
        err = float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-12))
        if err > 0.05:
            raise ModelError(f"LoRA {run} trained the rows of tokens {ids}; {Path(base_gguf).name} holds other rows "
                             f"there ({name}, relative difference {err:.2f}): write them in with `reasonlab train "
                             f"add-tokens --rows {run} --out FILE.gguf` and run on FILE.gguf")


def permute_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's q/k row order: within each head, the two rotary halves interleaved."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _base_facts(base_gguf: Path) -> tuple[str, int, int, dict[str, tuple[int, ...]]]:
    """(architecture, heads, kv heads, tensor name -> shape as numpy sees it) of the base GGUF."""
    from gguf import GGUFReader

    reader = GGUFReader(str(base_gguf))

    def value(key: str) -> Any:
        field = reader.fields[key]
        part = field.parts[field.data[0]]
        return bytes(part).decode() if field.types[0].name == "STRING" else int(part[0])

    arch = value("general.architecture")
    n_head = value(f"{arch}.attention.head_count")
    n_kv = value(f"{arch}.attention.head_count_kv") if f"{arch}.attention.head_count_kv" in reader.fields else n_head
    shapes = {t.name: tuple(int(x) for x in reversed(t.shape.tolist())) for t in reader.tensors}
    return arch, n_head, n_kv, shapes


def adapter_to_gguf(adapter_dir: str | Path, base_gguf: str | Path, out: str | Path) -> Path:
    """Write the peft adapter in ``adapter_dir`` (trained on ``base_gguf``'s model) as a GGUF LoRA at ``out``.
    ModelError when the adapter does not fit the base (another model) or adapts what llama.cpp cannot."""
    import gguf
    from safetensors.numpy import load_file

    adapter_dir, out = Path(adapter_dir), Path(out)
    try:
        config = json.loads((adapter_dir / "adapter_config.json").read_text())
        weights = load_file(str(adapter_dir / "adapter_model.safetensors"))
    except (OSError, ValueError) as err:
        raise ModelError(f"{adapter_dir} is not a peft LoRA adapter: {err}") from None
    arch, n_head, n_kv, shapes = _base_facts(Path(base_gguf))
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for key, w in weights.items():
        if ".token_adapter." in key:  # new tokens' rows: they go into the base GGUF (add-tokens --rows)
            continue
        m = re.match(r"(.+)\.lora_([AB])\.weight$", key)
        if m is None:
            raise ModelError(f"{adapter_dir}: tensor {key} is not a LoRA A/B matrix (trained embeddings or heads "
                             f"cannot go to llama.cpp)")
        pairs.setdefault(m.group(1), {})[m.group(2)] = w.astype(np.float32)
    writer = gguf_writer(Path(out), arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(config["lora_alpha"]))
    for module, ab in sorted(pairs.items()):
        name = gguf_name(module)
        a, b = ab["A"], ab["B"]  # [r, in], [out, r]
        want = shapes.get(name)
        if want is None or want != (b.shape[0], a.shape[1]):
            raise ModelError(f"{adapter_dir} was made for another model: {module} is {b.shape[0]}x{a.shape[1]}, "
                             f"{Path(base_gguf).name} has {name} {want}")
        if arch in PERMUTED_ARCHS and name.endswith(("attn_q.weight", "attn_k.weight")):
            b = permute_rows(b, n_head if name.endswith("attn_q.weight") else n_kv)
        writer.add_tensor(name + ".lora_a", np.ascontiguousarray(a))
        writer.add_tensor(name + ".lora_b", np.ascontiguousarray(b))
    out.parent.mkdir(parents=True, exist_ok=True)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    return close_gguf(writer)


def gguf_adapter(spec: str | Path, base_gguf: str | Path) -> Path:
    """The GGUF LoRA for ``spec``: a .gguf adapter as it is; a peft adapter directory (or a training run
    directory holding ``adapter/``) converted once, beside it, and again only when the adapter changes."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    peft_dir = path / "adapter" if (path / "adapter" / "adapter_config.json").exists() else path
    weights = peft_dir / "adapter_model.safetensors"
    if not weights.exists():
        raise ModelError(f"LoRA {spec}: not a .gguf adapter, a peft adapter directory or a training run")
    out = peft_dir.parent / f"{peft_dir.name}.gguf"
    if not out.exists() or out.stat().st_mtime < weights.stat().st_mtime:
        tmp = out.with_name(out.name + ".part")
        adapter_to_gguf(peft_dir, base_gguf, tmp)
        tmp.replace(out)
    check_token_rows(peft_dir, base_gguf)
    return out
