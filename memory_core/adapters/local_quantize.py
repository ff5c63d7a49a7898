"""The packaged embedding model with int8 matrix products: prepared once from the packaged file, then kept in a cache.

The packaged all-MiniLM-L6-v2 stores its weights as int8, but onnxruntime turns them back into floats when it loads
the model: every matrix product runs in float32. Quantizing the products themselves (onnxruntime's dynamic
quantization: int8 weights per output channel, activations quantized on the fly) makes a query about twice as fast and
a batch of turns take half the CPU on a 2-core AVX-512 machine, for vectors close to the packaged model's (cosine
0.994 on average and 0.985 at worst over 250 LoCoMo utterances and questions; ``tests/unit/test_local_embedder.py``
holds it above 0.98 on sentences of its own).

The recipe is onnxruntime's own tooling, run on the packaged file (whose sha256 is checked first):

1. ``InferenceSession`` with basic graph optimisation writes the model with its weights folded to float32;
2. ``onnxruntime.quantization.quantize_dynamic(per_channel=True, weight_type=QInt8)`` quantizes its products
   (it needs the ``onnx`` package, in ``requirements-local.txt``).

The result is deterministic for a given onnxruntime and onnx (the same bytes on every run), and depends on nothing
but the packaged file, so it is made on first use and kept under ``LOCAL_MODEL_CACHE`` with its sha256 beside it,
under a name that holds the source's hash, the recipe and both tools' versions: a new version prepares a new file,
and a file that no longer matches its recorded hash (truncated, edited) is prepared again. Preparing takes about 4
seconds. Two processes preparing at once (the local host's two) each write their own temporary file and move it into
place, so neither ever loads a partial file.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from memory_core.errors import ConfigurationError

logger = logging.getLogger(__name__)

RECIPE = "dynamic-int8-per-channel-1"
"""Names how a prepared file was made; change it when the recipe changes, so that old files are not reused."""

_SETTING = "LOCAL_EMBEDDING_QUANTIZATION"


def default_cache() -> Path:
    """``$XDG_CACHE_HOME/agent-memory``, else ``~/.cache/agent-memory``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "agent-memory"


def prepared_model(source: Path, source_sha256: str, cache: Path) -> Path:
    """The dynamically quantized model of ``source``, from ``cache`` or prepared there now.

    Args:
        source: The packaged model file, already checked against ``source_sha256``.
        source_sha256: Its sha256, part of the prepared file's name.
        cache: The folder of prepared models (created if missing).

    Returns:
        The prepared ``.onnx`` file.

    Raises:
        ConfigurationError: ``onnx`` is not installed, or the cache folder cannot be written.
    """
    try:
        import onnx
        import onnxruntime
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:
        raise ConfigurationError(
            f"{_SETTING}=dynamic prepares the packaged model with onnx and onnxruntime ({exc}); install them with "
            "`pip install -r requirements-local.txt`, or set it to `weights`",
            field=_SETTING,
        ) from None
    name = f"{source_sha256[:16]}-{RECIPE}-ort{onnxruntime.__version__}-onnx{onnx.__version__}"
    target = cache / f"{name}.onnx"
    recorded = cache / f"{name}.sha256"
    if _intact(target, recorded):
        return target
    logger.info("Preparing the packaged embedding model with int8 products (once) in %s", cache)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache, prefix=".preparing-") as work:
            floats, quantized = Path(work) / "float.onnx", Path(work) / "model.onnx"
            options = onnxruntime.SessionOptions()
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
            options.optimized_model_filepath = str(floats)
            onnxruntime.InferenceSession(str(source), sess_options=options, providers=["CPUExecutionProvider"])
            with _without_preprocessing_hint():
                quantize_dynamic(floats, quantized, per_channel=True, weight_type=QuantType.QInt8)
            digest = Path(work) / "model.sha256"
            digest.write_text(file_sha256(quantized) + "\n", encoding="ascii")
            os.replace(quantized, target)
            os.replace(digest, recorded)
    except OSError as exc:
        raise ConfigurationError(
            f"Cannot prepare the packaged embedding model in {cache}: {exc}; set LOCAL_MODEL_CACHE to a folder this "
            f"process can write, or {_SETTING}=weights",
            field="LOCAL_MODEL_CACHE",
        ) from None
    return target


def _intact(target: Path, recorded: Path) -> bool:
    try:
        return target.is_file() and recorded.read_text(encoding="ascii").strip() == file_sha256(target)
    except OSError:
        return False


def file_sha256(path: Path) -> str:
    """The file's sha256, read in 1 MiB blocks (``OSError`` when it cannot be read)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _DropPreprocessingHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


@contextlib.contextmanager
def _without_preprocessing_hint() -> Iterator[None]:
    """``quantize_dynamic`` warns on the root logger that the model was not pre-processed; this model needs none."""
    hint = _DropPreprocessingHint()
    root = logging.getLogger()
    root.addFilter(hint)
    try:
        yield
    finally:
        root.removeFilter(hint)
