"""A training result back into llama.cpp as a file: the LoRA as a GGUF adapter, or (``merge``) a standalone GGUF.

    reasonlab train export runs/train/star --out star-lora.gguf                      # the adapter (--lora)
    reasonlab train export runs/train/star --merge --out star.gguf                  # one model file (q8_0)

Merging happens in GGUF space, on the base file the run trained from: every tensor of the base is dequantized
(``gguf.quants``), the adapter's ``alpha / r * B @ A`` is added to the tensors it adapts (after full
fine-tuning, the trained tensor replaces it), and the result is written in F16 (1-D norms and biases in F32)
under the base file's own metadata — tokenizer, chat template, hyper-parameters — so nothing is re-derived
from an HF config. llama.cpp's ``llama_model_quantize`` (its C API; no binary ships with llama-cpp-python)
then writes the requested type. The merged weights are the dequantized base plus the update, which is exactly
what training saw (``train.model``): re-quantizing them is the only new error, and ``benchmarks/lora_agreement.py
--merge`` measures it against the adapter applied at run time. Measured on the default model (a LoRA moving 10 %
of its predictions, 663 trace tokens): F16 1.000 top-1 agreement with transformers + LoRA; q8_0 0.994 with the
run-time adapter; q5_k_m 0.974, q4_k_m 0.968 — a LoRA's update is small beside a 4-5 bit step, and re-quantizing
the sum rounds part of it away (q4_k_m keeps 84 % of the predictions the adapter changed, q8_0 95 %). Hence the
default q8_0; for a 4-bit file, keep the base and apply the adapter at run time (``--lora``).

Tensor names follow llama.cpp's converter through the ``gguf`` package's own map; llama-architecture models
store q/k rows permuted for llama.cpp's RoPE, so updates to those rows are permuted the same way
(``engines.lora.permute_rows``).
"""

from __future__ import annotations

import ctypes
import json
import re
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
from rich.progress import track

from reasonlab.engines.lora import (PERMUTED_ARCHS, adapter_token_rows, close_gguf, gguf_adapter, gguf_name,
                                    gguf_writer, permute_rows)
from reasonlab.errors import ConfigError, ModelError

Quant = Literal["f16", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0"]
_FTYPES = {"q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K", "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
           "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M", "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0"}


def locate(result: str | Path, base: str | Path | None = None) -> tuple[Path, Path]:
    """(the trained weights — a peft adapter dir or an HF model dir —, the base GGUF) for a training run
    directory, an adapter dir or a model dir; ``base`` (a registered name or .gguf) overrides the run's."""
    import yaml

    from reasonlab.engines import gguf_file

    path = Path(result).expanduser()
    weights = next((p for p in (path / "adapter", path / "model", path) if (p / "adapter_config.json").exists()
                    or (p / "config.json").exists()), None)
    if weights is None:
        raise ConfigError(f"{result}: not a training run, a peft adapter or a model directory (expected "
                          f"adapter/, model/, adapter_config.json or config.json)")
    if base is None:
        record = next((p / "train.yaml" for p in (path, weights.parent) if (p / "train.yaml").exists()), None)
        if record is None:
            raise ConfigError(f"{result}: no train.yaml says which model it was trained from: pass --base")
        base = yaml.safe_load(record.read_text(encoding="utf-8"))["config"]["model"]
    try:
        gguf, _ = gguf_file(str(base))
    except Exception as err:  # an HF dir or hub id: there is no GGUF to merge into
        raise ConfigError(f"{base} is not a GGUF model: export merges into the GGUF the run trained from; pass "
                          f"--base FILE.gguf (convert an HF base with llama.cpp's convert_hf_to_gguf.py) ({err})") \
            from None
    return weights, gguf


def export(result: str | Path, out: str | Path, *, merge: bool = False, quant: Quant = "q8_0",
           base: str | Path | None = None, scale: float = 1.0) -> Path:
    """Write ``result`` (training run, adapter or model dir) for llama.cpp at ``out``; returns ``out``."""
    if quant not in get_args(Quant):
        raise ConfigError(f"--quant {quant}: expected one of {', '.join(get_args(Quant))}")
    weights, gguf = locate(result, base)
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    is_adapter = (weights / "adapter_config.json").exists()
    if not merge:
        if not is_adapter:
            raise ConfigError(f"{result} is a full model, not an adapter: export it with --merge")
        tmp = out.with_name(out.name + ".part")
        tmp.write_bytes(gguf_adapter(weights, gguf).read_bytes())
        tmp.replace(out)
        return out
    f16 = out.with_name(out.name + ".f16.part") if quant != "f16" else out.with_name(out.name + ".part")
    update: Update = AdapterUpdate(weights, scale) if is_adapter else ModelUpdate(weights)
    write_merged(gguf, update, f16)
    if quant == "f16":
        f16.replace(out)
        return out
    part = out.with_name(out.name + ".part")
    try:
        quantize(f16, part, quant)
    finally:
        f16.unlink(missing_ok=True)
    part.replace(out)
    return out


# -- what training changed: new values for each base tensor, by its llama.cpp name ------------------------
class AdapterUpdate:
    """Base + ``scale * alpha / r * B @ A`` for each tensor the peft adapter adapts (rsLoRA: alpha / sqrt(r))."""

    def __init__(self, adapter_dir: Path, scale: float = 1.0) -> None:
        from safetensors.numpy import load_file

        self.source = adapter_dir
        cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
        r = cfg["r"]
        self.factor = scale * cfg["lora_alpha"] / (r ** 0.5 if cfg.get("use_rslora") else r)
        self.pairs: dict[str, dict[str, np.ndarray]] = {}  # llama.cpp name -> {"A": [r, in], "B": [out, r]}
        self.rows = adapter_token_rows(adapter_dir)  # new tokens' trained rows: written in place
        for key, w in load_file(str(adapter_dir / "adapter_model.safetensors")).items():
            if ".token_adapter." in key:
                continue
            m = re.match(r"(.+)\.lora_([AB])\.weight$", key)
            if m is None:
                raise ModelError(f"{adapter_dir}: tensor {key} is not a LoRA A/B matrix")
            self.pairs.setdefault(gguf_name(m.group(1)), {})[m.group(2)] = w.astype(np.float32)

    def __call__(self, name: str, w: np.ndarray, arch: str, n_head: int, n_kv: int) -> np.ndarray:
        if name in self.rows:
            ids, rows = self.rows.pop(name)
            w = w.copy()
            w[ids] = rows
        ab = self.pairs.pop(name, None)
        if ab is None:
            return w
        b, a = ab["B"], ab["A"]
        if w.shape != (b.shape[0], a.shape[1]):
            raise ModelError(f"{self.source} was made for another model: {name} is {w.shape} in the base, "
                             f"{(b.shape[0], a.shape[1])} in the adapter")
        if arch in PERMUTED_ARCHS and name.endswith(("attn_q.weight", "attn_k.weight")):
            b = permute_rows(b, n_head if name.endswith("attn_q.weight") else n_kv)  # (P B) A = P (B A)
        return w + self.factor * (b @ a)

    def unused(self) -> list[str]:
        """Adapted tensors the base did not have (after the walk over it)."""
        return sorted(self.pairs) + sorted(self.rows)


class ModelUpdate:
    """The trained tensors of a fully fine-tuned HF model dir, by their llama.cpp names (the ``gguf`` map)."""

    def __init__(self, model_dir: Path) -> None:
        from safetensors.numpy import load_file

        files = sorted(model_dir.glob("*.safetensors"))
        if not files:
            raise ModelError(f"{model_dir}: no *.safetensors weights")
        self.source = model_dir
        self.hf: dict[str, np.ndarray] = {}
        for f in files:
            self.hf.update(load_file(str(f)))
        self.layers = json.loads((model_dir / "config.json").read_text())["num_hidden_layers"]
        self.by_gguf: dict[str, np.ndarray] = {}

    def __call__(self, name: str, w: np.ndarray, arch: str, n_head: int, n_kv: int) -> np.ndarray:
        if not self.by_gguf:  # the map needs the architecture, known once the base is open
            import gguf

            tmap = gguf.get_tensor_name_map(_arch_enum(arch), self.layers)
            for key, t in self.hf.items():
                mapped = tmap.get_name(key, try_suffixes=(".weight", ".bias"))  # keeps the suffix
                if mapped is not None:
                    self.by_gguf[mapped] = t
        new = self.by_gguf.get(name)
        if new is None and name == "output.weight":  # tied in the HF model, its own tensor in the GGUF
            new = self.by_gguf.get("token_embd.weight")
        if new is None:
            raise ModelError(f"{self.source} has no tensor for {name} of the base GGUF (another architecture?)")
        new = new.astype(np.float32)
        if new.shape != w.shape:
            raise ModelError(f"{self.source} was made for another model: {name} is {w.shape} in the base, "
                             f"{new.shape} trained")
        if arch in PERMUTED_ARCHS and name.endswith(("attn_q.weight", "attn_k.weight")):
            new = permute_rows(new, n_head if name.endswith("attn_q.weight") else n_kv)
        return new

    def unused(self) -> list[str]:
        return []


Update = AdapterUpdate | ModelUpdate


def _arch_enum(arch: str) -> Any:
    import gguf

    for k, v in gguf.MODEL_ARCH_NAMES.items():
        if v == arch:
            return k
    raise ModelError(f"the gguf package does not know the architecture {arch}")


# -- the files ---------------------------------------------------------------------------------------------
def write_merged(base_gguf: Path, update: Update, out: Path) -> Path:
    """The base GGUF's metadata and tensors, each tensor through ``update``, as F16 (1-D as F32)."""
    import gguf

    reader = gguf.GGUFReader(str(base_gguf))
    arch = _field(reader, gguf.Keys.General.ARCHITECTURE)
    n_head = _field(reader, f"{arch}.attention.head_count")
    n_kv = _field(reader, f"{arch}.attention.head_count_kv") or n_head
    writer = gguf_writer(Path(out), arch)
    for field in reader.fields.values():  # as gguf_new_metadata.py copies them, the file type excepted
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        if field.name == gguf.Keys.General.FILE_TYPE:
            writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), vtype, sub_type=sub)
    for t in track(reader.tensors, description=f"merging {base_gguf.name}", transient=True):
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)  # numpy order: [out, in]
        shape = tuple(int(x) for x in reversed(t.shape.tolist()))
        w = update(t.name, w.reshape(shape), arch, n_head, n_kv)
        writer.add_tensor(t.name, np.ascontiguousarray(w.astype(np.float16 if w.ndim > 1 else np.float32)))
    left = update.unused()
    if left:
        raise ModelError(f"the adapter adapts tensors {sorted(left)[:3]} that {base_gguf.name} does not have")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    close_gguf(writer)
    return out


def _field(reader: Any, key: str) -> Any:
    field = reader.fields.get(key)
    return None if field is None else field.contents()


def quantize(src: Path, out: Path, quant: str, threads: int = 0) -> Path:
    """llama.cpp's own quantizer (``llama_model_quantize``), as ``llama-quantize src out TYPE`` would run it."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, _FTYPES[quant])
    params.nthread = threads
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(out.name + ".part")  # renamed once whole: a killed run leaves nothing that looks done
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(part).encode(), ctypes.byref(params))
    if rc != 0:
        part.unlink(missing_ok=True)
        raise ModelError(f"llama.cpp could not quantize {src.name} to {quant} (code {rc})")
    part.replace(out)
    return out
