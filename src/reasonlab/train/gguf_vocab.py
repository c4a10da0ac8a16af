"""New tokens in a GGUF: written into the vocabulary's spare slots, with their embedding rows, so a model trained
with them (``train.tokens``) runs on llama.cpp — a GGUF LoRA cannot add vocabulary, the base file has to.

    reasonlab train add-tokens --base qwen2.5-coder-0.5b --out qwen-hcot.gguf           # the hCoT markers
    reasonlab eval -m qwen-hcot.gguf --lora runs/train/hcot                             # a model trained with them

Qwen2.5's GGUF carries 271 spare entries (``[PAD151665]`` … ``[PAD151935]``, type unused) beyond the 151 665 tokens
its transformers tokenizer knows, with embedding rows; Llama 3's are ``<|reserved_special_token_N|>``, Gemma's
``<unusedN>``. The new tokens take the first spare slots in order — the ids ``train.tokens.add_tokens`` gives them
on the transformers side, where they take the first spare embedding rows — are typed user-defined (llama.cpp then
matches them whole in any text and prints them as text, as the transformers side does), and get their rows: the
mean of the dequantized rows of their seed phrase's tokens (what ``add_tokens`` computes from the same dequantized
weights), re-quantized in the tensor's own type. Every other tensor and every other row is copied byte for byte, so
the file is the base model plus three tokens. ``rows`` (``engines.lora.adapter_token_rows`` of a training run: ``train
add-tokens --rows RUN``) gives the rows the run trained instead of the seeds — an adapter trained with the markers
needs them (a frozen seed row is never sampled, see ``train.tokens``). A model without spare slots can give
``slots`` explicitly (tokens it never uses, such as another tool's control tokens).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from reasonlab.engines.lora import close_gguf, gguf_writer
from reasonlab.errors import ModelError
from reasonlab.train.tokens import spare_slots

USER_DEFINED = 4  # llama.cpp's LLAMA_TOKEN_TYPE_USER_DEFINED: matched whole, printed as text


def _strings(field: Any) -> list[str]:
    return [bytes(field.parts[i]).decode("utf-8", errors="replace") for i in field.data]


def add_gguf_tokens(base: str | Path, out: str | Path, seeds: dict[str, str], slots: list[int] | None = None,
                    rows: dict[str, tuple[list[int], np.ndarray]] | None = None) -> dict[str, int]:
    """Write ``base`` to ``out`` with each key of ``seeds`` in a spare slot, its rows the mean of its phrase's, or
    the trained ``rows`` (tensor name -> (ids, rows (n, hidden))) where given; returns token -> id."""
    import gguf
    import llama_cpp

    base, out = Path(base), Path(out)
    reader = gguf.GGUFReader(str(base))
    tokens = _strings(reader.fields["tokenizer.ggml.tokens"])
    free = slots if slots is not None else spare_slots(tokens)
    if len(free) < len(seeds):
        raise ModelError(f"{base.name} has {len(free)} spare vocabulary slots for {len(seeds)} new tokens: give slots "
                         f"(ids of tokens the model never uses)")
    ids = dict(zip(seeds, free))
    taken = [t for t in seeds if t in tokens and tokens.index(t) not in ids.values()]
    if taken:
        raise ModelError(f"{base.name} already has the token {taken[0]}")
    # the phrases' token ids as llama.cpp tokenises them (the base's own vocabulary, no weights loaded)
    vocab = llama_cpp.Llama(str(base), vocab_only=True, verbose=False)
    phrase = {t: vocab.tokenize(p.encode(), add_bos=False, special=False) for t, p in seeds.items()}
    vocab.close()
    if any(not v for v in phrase.values()):
        raise ModelError("a seed phrase tokenizes to nothing")
    rows = rows or {}
    for name, (row_ids, _) in rows.items():
        if sorted(row_ids) != sorted(ids.values()):
            raise ModelError(f"the trained rows of {name} are for tokens {row_ids}, the new tokens take "
                             f"{sorted(ids.values())} in {base.name}: the run was trained on another model, or give "
                             f"the same slots")
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    writer = gguf_writer(Path(out), arch)
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        value = field.contents()
        if field.name == "tokenizer.ggml.tokens":
            value = list(value)
            for t, i in ids.items():
                value[i] = t
        elif field.name == "tokenizer.ggml.token_type":
            value = list(value)
            for i in ids.values():
                value[i] = USER_DEFINED
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, value, vtype, sub_type=sub)
    for t in reader.tensors:
        data = t.data
        if t.name in ("token_embd.weight", "output.weight"):
            data = np.array(data)  # a copy: the rows are patched, the rest stays as stored
            trained = dict(zip(*rows[t.name])) if t.name in rows else {}  # id -> trained row (hidden,)
            for tok, i in ids.items():
                if i in trained:
                    row = np.asarray(trained[i], dtype=np.float32)
                else:
                    row = gguf.quants.dequantize(data[phrase[tok]], t.tensor_type).mean(0)  # phrase rows' mean
                data[i] = gguf.quants.quantize(row[None].astype(np.float32), t.tensor_type)[0] \
                    if t.tensor_type not in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16) \
                    else row.astype(data.dtype)
        writer.add_tensor(t.name, data, raw_dtype=t.tensor_type)  # quantized: bytes, shape derived
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    close_gguf(writer)
    return ids
