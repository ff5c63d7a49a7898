"""Chat model and embedder over the ``openai`` SDK: Azure OpenAI or any OpenAI-compatible endpoint.

``OpenAIChatModel`` implements ``ChatModel`` (summaries as plain chat completions; insight extraction in JSON mode,
validated with pydantic) and ``OpenAIEmbedder`` implements ``Embedder``. ``build_chat_model`` and ``build_embedder``
make them from ``Settings`` for ``LLM_PROVIDER`` / ``EMBEDDINGS_PROVIDER`` ``azure_openai`` or ``openai``.

Retries. Transport-level retries are the SDK's own: the client is built with ``max_retries=MODEL_MAX_RETRIES`` and
``timeout=MODEL_TIMEOUT_SECONDS`` (per attempt). The SDK retries connection errors, timeouts, 408, 409, 429 and 5xx
with exponential backoff and jitter (0.5 s doubling up to 8 s), and waits what the service asks for instead when
a response carries ``retry-after-ms`` or ``Retry-After`` (Azure OpenAI sends both on 429). Nothing here retries
those a second time. On top of that, a chat answer that cannot be used (not JSON, wrong shape, empty) is asked for
again ``output_retries`` times (default 2) and then reported as ``ModelOutputError``; garbage is never returned.

Errors, once the SDK has given up (the original exception is chained as ``__cause__``):

=====================================================  ===========================================================
SDK error                                              raised here
=====================================================  ===========================================================
``APITimeoutError``, ``APIConnectionError``            ``UpstreamUnavailableError`` (transient; callers may retry)
``APIStatusError`` 408, 409, 429, 5xx and other codes  ``UpstreamUnavailableError`` (transient; callers may retry)
401, 403                                               ``ConfigurationError`` naming the key / identity settings
404                                                    ``ConfigurationError`` naming the deployment / model, endpoint
                                                       and API version settings
400, 422 with code ``content_filter`` or a context     ``ModelOutputError``: the model refused this input; retrying
length error                                           the same input will not help, nothing is misconfigured
other 400, 422                                         ``ConfigurationError``: the endpoint rejected a parameter
                                                       (API version too old, ``dimensions`` unsupported, ...)
``APIResponseValidationError``                         ``ModelOutputError``
``azure.core`` ``ClientAuthenticationError``           ``ConfigurationError``: no Entra ID token (managed identity,
                                                       ``AZURE_CLIENT_ID``), or set a key
=====================================================  ===========================================================

Message content (turns, summaries, model answers) is logged at DEBUG only; INFO and above carry counts, timings and
error codes.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

import openai
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ClientAuthenticationError
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from memory_core import telemetry
from memory_core.config import Settings
from memory_core.domain import Chunk, Turn
from memory_core.errors import (
    ConfigurationError,
    MemoryServiceError,
    ModelOutputError,
    UpstreamUnavailableError,
)
from memory_core.ports import InsightCandidate
from memory_core.prompts import load_prompt

logger = logging.getLogger(__name__)

Provider = Literal["azure_openai", "openai"]
_T = TypeVar("_T")

#: Scope of the Entra ID token Azure OpenAI accepts.
COGNITIVE_SERVICES_SCOPE = "https://cognitiveservices.azure.com/.default"
#: Texts per embeddings request (the API accepts up to 2048; smaller requests fail and retry more cheaply).
DEFAULT_EMBEDDING_BATCH_SIZE = 64
#: Characters per embeddings request, a cheap guard under the API's 300,000 tokens per request.
DEFAULT_EMBEDDING_BATCH_CHARS = 400_000
#: How many times an unusable chat answer is asked for again before ``ModelOutputError``.
DEFAULT_OUTPUT_RETRIES = 2
#: Sampling temperature of every chat call: low, so summaries and insights stay close to the text.
DEFAULT_TEMPERATURE = 0.2

_NATIVE_EMBEDDING_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
# Models whose vector size is fixed: the API rejects a ``dimensions`` parameter for them.
_FIXED_DIMENSION_MODELS = frozenset({"text-embedding-ada-002"})

# Error codes (or message fragments) of a 400 that concern the input, not the configuration.
_INPUT_REJECTED_MARKERS = ("content_filter", "context_length_exceeded", "maximum context length", "string_above_max")

# Tags that delimit data in the prompts; the same text inside a message is defused so it cannot close a block.
_DATA_TAG = re.compile(r"<(\s*/?\s*(?:transcript|previous_summary|chunk_summaries)\b)", re.IGNORECASE)
_CODE_FENCE = re.compile(r"^```[A-Za-z]*\s*(.*?)\s*```$", re.DOTALL)


def default_embedding_dimensions(model: str) -> int | None:
    """The native vector size of a known OpenAI embedding model, or None for a model this module does not know.

    Args:
        model: The model name (for Azure, the deployment name, which usually is the model name).

    Returns:
        1536 for ``text-embedding-3-small`` and ``text-embedding-ada-002``, 3072 for ``text-embedding-3-large``.
    """
    return _NATIVE_EMBEDDING_DIMENSIONS.get(model.strip().lower())


def resolve_embedding_dimensions(model: str, configured: int | None, model_setting: str) -> tuple[int, bool]:
    """The vector size to expect from a model, and whether to send it as the ``dimensions`` parameter.

    Args:
        model: The embedding model or deployment name.
        configured: ``EMBEDDING_DIMENSIONS``, or None when unset.
        model_setting: The name of the setting that holds ``model``, for error messages.

    Returns:
        ``(dimensions, send_dimensions)``.

    Raises:
        ConfigurationError: The size is unknown and not configured, or the model cannot produce it.
    """
    native = default_embedding_dimensions(model)
    fixed = model.strip().lower() in _FIXED_DIMENSION_MODELS
    if configured is None:
        if native is None:
            known = ", ".join(f"{name} ({size})" for name, size in _NATIVE_EMBEDDING_DIMENSIONS.items())
            raise ConfigurationError(
                f"EMBEDDING_DIMENSIONS is required: the vector size of embedding model {model!r} ({model_setting}) "
                f"is not known (known models: {known})",
                field="EMBEDDING_DIMENSIONS",
            )
        return native, False
    if fixed:
        if configured != native:
            raise ConfigurationError(
                f"EMBEDDING_DIMENSIONS={configured} is not possible with {model!r} ({model_setting}), whose vectors "
                f"always have {native} dimensions; unset EMBEDDING_DIMENSIONS or use a text-embedding-3 model",
                field="EMBEDDING_DIMENSIONS",
            )
        return configured, False
    if native is not None and configured > native:
        raise ConfigurationError(
            f"EMBEDDING_DIMENSIONS={configured} exceeds the {native} dimensions of {model!r} ({model_setting})",
            field="EMBEDDING_DIMENSIONS",
        )
    return configured, True


@dataclass(frozen=True)
class _Hints:
    """Which settings to name when an error points at the configuration."""

    endpoint: str
    auth: str
    model: str


def _hints(provider: Provider, model_setting: str) -> _Hints:
    if provider == "azure_openai":
        return _Hints(
            endpoint="AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_API_VERSION",
            auth="AZURE_OPENAI_API_KEY, or (without a key) that the managed identity (AZURE_CLIENT_ID) has the "
            "'Cognitive Services OpenAI User' role on the resource",
            model=model_setting,
        )
    return _Hints(endpoint="OPENAI_BASE_URL", auth="OPENAI_API_KEY", model=model_setting)


def _error_message(exc: openai.APIError) -> str:
    body = exc.body
    message = body.get("message") if isinstance(body, dict) else None
    text = str(message) if message else exc.message
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."


def _map_error(exc: Exception, *, operation: str, model: str, hints: _Hints, attempts: int) -> MemoryServiceError:
    """Translate an SDK (or credential) error into the service's hierarchy; see the module docstring."""
    where = f"{operation} with model {model!r}"
    if isinstance(exc, ClientAuthenticationError):
        return ConfigurationError(
            f"{where}: could not get an Entra ID token ({type(exc).__name__}); check the managed identity and "
            "AZURE_CLIENT_ID, or set AZURE_OPENAI_API_KEY",
            field="AZURE_CLIENT_ID",
        )
    if isinstance(exc, openai.APITimeoutError):
        return UpstreamUnavailableError(f"{where} timed out ({attempts} attempt(s))")
    if isinstance(exc, openai.APIConnectionError):
        return UpstreamUnavailableError(f"{where}: could not connect to {hints.endpoint} ({attempts} attempt(s))")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        code = exc.code or ""
        detail = f"{where} failed with HTTP {status}{f' ({code})' if code else ''}: {_error_message(exc)}"
        if status in (401, 403):
            return ConfigurationError(f"{detail}. Check {hints.auth}", field=hints.auth.split(",")[0])
        if status == 404:
            return ConfigurationError(f"{detail}. Check {hints.model} and {hints.endpoint}", field=hints.model)
        if status in (400, 422):
            lowered = f"{code} {_error_message(exc)}".lower()
            if any(marker in lowered for marker in _INPUT_REJECTED_MARKERS):
                return ModelOutputError(f"{detail}. The model rejected this input")
            return ConfigurationError(
                f"{detail}. The endpoint rejected a parameter; check {hints.endpoint} and {hints.model}",
                field=hints.model,
            )
        return UpstreamUnavailableError(f"{detail} ({attempts} attempt(s))")
    if isinstance(exc, openai.APIResponseValidationError):
        return ModelOutputError(f"{where}: the response does not have the documented shape")
    return UpstreamUnavailableError(f"{where} failed: {type(exc).__name__}")


def _defuse(text: str) -> str:
    """Message text made safe to put inside a data block: no delimiter tags, no fake turn headers."""
    text = _DATA_TAG.sub(r"‹\1", text.replace("\r\n", "\n").replace("\r", "\n").strip())
    return text.replace("\n", "\n    ")


def render_turns(turns: Sequence[Turn]) -> str:
    """Turns as the delimited transcript block the prompts describe, in sequence order.

    Args:
        turns: The turns to render.

    Returns:
        ``<transcript>`` ... ``</transcript>`` with ``[seq] User: ...`` / ``Assistant: ...`` per turn; continuation
        lines of a message are indented, so a message cannot fake a turn header or close the block.
    """
    lines = ["<transcript>"]
    for turn in sorted(turns, key=lambda t: t.seq):
        lines.append(f"[{turn.seq}] User: {_defuse(turn.user_message)}")
        lines.append(f"Assistant: {_defuse(turn.agent_message)}")
        lines.append("")
    if lines[-1] == "":
        lines.pop()
    lines.append("</transcript>")
    return "\n".join(lines)


class _InsightItem(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    key: str = Field(min_length=1, max_length=200)
    category: str = Field(min_length=1, max_length=64)
    text: str = Field(min_length=1, max_length=1000)
    source_turns: list[int] = Field(default_factory=list)


class _InsightAnswer(BaseModel):
    """The JSON object the extraction prompt asks for."""

    model_config = ConfigDict(extra="ignore")

    insights: list[_InsightItem]


def _normalise_key(key: str) -> str:
    key = re.sub(r"\s*:\s*", ":", key.strip().lower())
    return re.sub(r"[\s\-]+", "_", key)


def _strip_code_fence(content: str) -> str:
    match = _CODE_FENCE.match(content.strip())
    return match.group(1) if match else content


def _describe(error: ValidationError) -> str:
    """A validation failure without the offending values (they may quote the conversation)."""
    if any(item["type"] == "json_invalid" for item in error.errors()):
        return "it was not valid JSON"
    problems = [
        f"{'.'.join(str(part) for part in item['loc']) or 'answer'}: {item['msg']}" for item in error.errors()[:3]
    ]
    return "it did not have the required shape (" + "; ".join(problems) + ")"


class _Unusable(Exception):
    """A chat answer that cannot be used; the message says why, without quoting it."""


class OpenAIChatModel:
    """``ChatModel`` over an ``openai.AsyncOpenAI`` or ``openai.AsyncAzureOpenAI`` client.

    Attributes:
        name: ``"<provider>:<model>"``, e.g. ``"azure_openai:gpt-4o"``.
        model: The model name (OpenAI) or deployment name (Azure) sent with every request.
    """

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        model: str,
        *,
        temperature: float = DEFAULT_TEMPERATURE,
        output_retries: int = DEFAULT_OUTPUT_RETRIES,
        model_setting: str | None = None,
        credential: AsyncTokenCredential | None = None,
    ) -> None:
        """Wrap a client.

        Args:
            client: The SDK client; its ``max_retries`` and ``timeout`` govern transport retries. Closed by ``close``.
            model: Model (OpenAI) or deployment (Azure) name.
            temperature: Sampling temperature of every call.
            output_retries: How many times an unusable answer is asked for again before ``ModelOutputError``.
            model_setting: The setting that holds ``model``, named in configuration errors.
            credential: A credential this object owns (closed by ``close``), when the factory created one.
        """
        if output_retries < 0:
            raise ValueError("output_retries must be >= 0")
        provider: Provider = "azure_openai" if isinstance(client, openai.AsyncAzureOpenAI) else "openai"
        self._client = client
        self._credential = credential
        self._temperature = temperature
        self._output_retries = output_retries
        self._hints = _hints(
            provider, model_setting or ("AZURE_OPENAI_DEPLOYMENT" if provider == "azure_openai" else "OPENAI_MODEL")
        )
        self.model = model
        self.name = f"{provider}:{model}"

    async def summarize(self, turns: Sequence[Turn], previous_summary: str = "", max_words: int = 200) -> str:
        """A summary of the turns that continues ``previous_summary`` (the cumulative summary so far).

        Args:
            turns: The turns to fold in.
            previous_summary: The cumulative summary so far; empty at the start of a session.
            max_words: Word limit given to the model.

        Returns:
            The updated cumulative summary (``previous_summary`` unchanged when there are no turns).

        Raises:
            UpstreamUnavailableError: The model could not be reached after retries.
            ConfigurationError: The endpoint refused the credentials, deployment or parameters.
            ModelOutputError: The model returned no usable text, or refused the input.
        """
        if not turns:
            return previous_summary
        previous = _defuse(previous_summary) if previous_summary.strip() else "(none yet: this is the first part)"
        request = "\n\n".join(
            [
                f"Word limit: at most {max_words} words.",
                f"<previous_summary>\n{previous}\n</previous_summary>",
                render_turns(turns),
                "Write the updated summary of the whole conversation so far.",
            ]
        )
        return await self._complete_text("compact_turns", request, operation="summarize")

    async def summarize_session(self, chunks: Sequence[Chunk], turns: Sequence[Turn], max_words: int = 200) -> str:
        """A summary of one whole session from its chunk summaries and the turns not yet in a chunk.

        Args:
            chunks: The session's chunks (any order; rendered by index).
            turns: The turns after the last chunk.
            max_words: Word limit given to the model.

        Returns:
            The session summary; empty when there is neither a chunk nor a turn.

        Raises:
            UpstreamUnavailableError: The model could not be reached after retries.
            ConfigurationError: The endpoint refused the credentials, deployment or parameters.
            ModelOutputError: The model returned no usable text, or refused the input.
        """
        if not chunks and not turns:
            return ""
        if chunks:
            rendered = "\n\n".join(
                f"[turns {chunk.first_seq}-{chunk.last_seq}] {_defuse(chunk.summary)}"
                for chunk in sorted(chunks, key=lambda c: c.index)
            )
        else:
            rendered = "(none: the session was never compacted)"
        transcript = render_turns(turns) if turns else "<transcript>\n(none: every turn is in a chunk)\n</transcript>"
        request = "\n\n".join(
            [
                f"Word limit: at most {max_words} words.",
                f"<chunk_summaries>\n{rendered}\n</chunk_summaries>",
                transcript,
                "Write the summary of the whole session.",
            ]
        )
        return await self._complete_text("summarize_session", request, operation="summarize_session")

    async def extract_insights(self, turns: Sequence[Turn]) -> list[InsightCandidate]:
        """Long-term facts the user stated about themselves, each with the turns it comes from.

        The model answers in JSON mode; the answer is validated, and asked for again when it is not JSON or not of
        the required shape. Source turns that are not among ``turns`` are dropped; keys are normalised to lowercase
        snake_case.

        Args:
            turns: The turns to read.

        Returns:
            The candidates in the model's order; empty when there are no turns or nothing worth remembering.

        Raises:
            ModelOutputError: Every answer was unusable, or the model refused the input.
            UpstreamUnavailableError: The model could not be reached after retries.
            ConfigurationError: The endpoint refused the credentials, deployment or parameters.
        """
        if not turns:
            return []
        request = render_turns(turns) + "\n\nAnswer with the JSON object only."
        answer = await self._complete(
            "extract_insights", request, operation="extract_insights", json_mode=True, parse=self._parse_insights
        )
        seqs = {turn.seq for turn in turns}
        candidates: list[InsightCandidate] = []
        dropped = 0
        for item in answer.insights:
            sources = sorted({seq for seq in item.source_turns if seq in seqs})
            dropped += len(set(item.source_turns)) - len(sources)
            candidates.append(
                InsightCandidate(
                    key=_normalise_key(item.key),
                    category=item.category.lower(),
                    text=item.text,
                    source_turns=sources,
                )
            )
        if dropped:
            logger.info("extract_insights: dropped %d source turn reference(s) outside the given turns", dropped)
        return candidates

    async def close(self) -> None:
        """Close the SDK client, and the credential when this object owns it."""
        await self._client.close()
        if self._credential is not None:
            await self._credential.close()

    # internals

    @staticmethod
    def _parse_text(content: str) -> str:
        text = content.strip()
        if not text:
            raise _Unusable("it was empty")
        return text

    @staticmethod
    def _parse_insights(content: str) -> _InsightAnswer:
        try:
            return _InsightAnswer.model_validate_json(_strip_code_fence(content))
        except ValidationError as exc:
            raise _Unusable(_describe(exc)) from None

    async def _complete_text(self, prompt: str, request: str, *, operation: str) -> str:
        return await self._complete(prompt, request, operation=operation, json_mode=False, parse=self._parse_text)

    async def _complete(
        self,
        prompt: str,
        request: str,
        *,
        operation: str,
        json_mode: bool,
        parse: Callable[[str], _T],
    ) -> _T:
        messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": load_prompt(prompt)},
            {"role": "user", "content": request},
        ]
        attempts = self._output_retries + 1
        reason = ""
        for attempt in range(1, attempts + 1):
            call_messages: list[ChatCompletionMessageParam] = messages
            if reason:
                note = (
                    f"A previous answer to this request could not be used: {reason}. Answer again, following the "
                    "instructions exactly" + (" and with ONLY the JSON object." if json_mode else ".")
                )
                call_messages = [*messages, {"role": "user", "content": note}]
            completion = await self._create(call_messages, operation=operation, json_mode=json_mode)
            content, finish_reason = _first_choice(completion)
            if finish_reason == "content_filter":
                raise ModelOutputError(f"{operation} with model {self.model!r}: the answer was withheld by the filter")
            try:
                if content is None:
                    raise _Unusable("it had no content")
                return parse(content)
            except _Unusable as exc:
                reason = str(exc)
                logger.warning(
                    "%s: unusable answer from %s (attempt %d of %d, finish_reason=%s): %s",
                    operation,
                    self.model,
                    attempt,
                    attempts,
                    finish_reason,
                    reason,
                )
                logger.debug("%s: the unusable answer was: %r", operation, content)
        raise ModelOutputError(
            f"{operation} with model {self.model!r}: no usable answer after {attempts} attempt(s); last: {reason}"
        )

    async def _create(
        self, messages: list[ChatCompletionMessageParam], *, operation: str, json_mode: bool
    ) -> ChatCompletion:
        started = time.perf_counter()
        try:
            if json_mode:
                completion = await self._client.chat.completions.create(
                    model=self.model,
                    messages=messages,
                    temperature=self._temperature,
                    response_format={"type": "json_object"},
                )
            else:
                completion = await self._client.chat.completions.create(
                    model=self.model, messages=messages, temperature=self._temperature
                )
        except (openai.OpenAIError, ClientAuthenticationError) as exc:
            error = _map_error(
                exc,
                operation=operation,
                model=self.model,
                hints=self._hints,
                attempts=self._client.max_retries + 1,
            )
            logger.warning("%s: %s", operation, error.detail)
            raise error from exc
        usage = completion.usage
        logger.debug(
            "%s: model=%s took %.0f ms, prompt_tokens=%s completion_tokens=%s",
            operation,
            self.model,
            (time.perf_counter() - started) * 1000,
            usage.prompt_tokens if usage else None,
            usage.completion_tokens if usage else None,
        )
        if usage:
            telemetry.record_usage("chat", self.name, usage.prompt_tokens, usage.completion_tokens)
        return completion


def _first_choice(completion: ChatCompletion) -> tuple[str | None, str | None]:
    if not completion.choices:
        return None, None
    choice = completion.choices[0]
    return choice.message.content, choice.finish_reason


class OpenAIEmbedder:
    """``Embedder`` over an ``openai.AsyncOpenAI`` or ``openai.AsyncAzureOpenAI`` client.

    Attributes:
        model: The model name (OpenAI) or deployment name (Azure); part of the store's identity.
        dimensions: The vector size every answer is checked against; part of the store's identity.
    """

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        model: str,
        dimensions: int,
        *,
        send_dimensions: bool = True,
        batch_size: int = DEFAULT_EMBEDDING_BATCH_SIZE,
        max_batch_chars: int = DEFAULT_EMBEDDING_BATCH_CHARS,
        model_setting: str | None = None,
        credential: AsyncTokenCredential | None = None,
    ) -> None:
        """Wrap a client.

        Args:
            client: The SDK client; its ``max_retries`` and ``timeout`` govern transport retries. Closed by ``close``.
            model: Model (OpenAI) or deployment (Azure) name.
            dimensions: The vector size to expect.
            send_dimensions: Send ``dimensions`` with each request (text-embedding-3 models can shorten vectors;
                ada-002 rejects the parameter).
            batch_size: Most texts per request.
            max_batch_chars: Most characters per request (a request always holds at least one text).
            model_setting: The setting that holds ``model``, named in configuration errors.
            credential: A credential this object owns (closed by ``close``), when the factory created one.
        """
        if dimensions < 1:
            raise ValueError("dimensions must be >= 1")
        if batch_size < 1 or max_batch_chars < 1:
            raise ValueError("batch_size and max_batch_chars must be >= 1")
        provider: Provider = "azure_openai" if isinstance(client, openai.AsyncAzureOpenAI) else "openai"
        self._client = client
        self._credential = credential
        self._send_dimensions = send_dimensions
        self._batch_size = batch_size
        self._max_batch_chars = max_batch_chars
        self._hints = _hints(
            provider,
            model_setting
            or ("AZURE_OPENAI_EMBEDDING_DEPLOYMENT" if provider == "azure_openai" else "OPENAI_EMBEDDING_MODEL"),
        )
        self.model = model
        self.dimensions = dimensions

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit-length vector per text, in input order.

        Args:
            texts: The texts; an empty or blank text is sent as a single space (the API rejects empty strings).

        Returns:
            The vectors, normalised to length 1, in the order of ``texts``.

        Raises:
            ModelOutputError: An answer has the wrong number of vectors, a vector of another size than
                ``dimensions``, or a vector that cannot be normalised; or the model refused the input.
            UpstreamUnavailableError: The model could not be reached after retries.
            ConfigurationError: The endpoint refused the credentials, deployment or parameters.
        """
        vectors: list[list[float]] = []
        for batch in self._batches([text if text.strip() else " " for text in texts]):
            vectors.extend(await self._embed_batch(batch))
        return vectors

    async def close(self) -> None:
        """Close the SDK client, and the credential when this object owns it."""
        await self._client.close()
        if self._credential is not None:
            await self._credential.close()

    def _batches(self, texts: list[str]) -> Iterator[list[str]]:
        batch: list[str] = []
        chars = 0
        for text in texts:
            if batch and (len(batch) >= self._batch_size or chars + len(text) > self._max_batch_chars):
                yield batch
                batch, chars = [], 0
            batch.append(text)
            chars += len(text)
        if batch:
            yield batch

    async def _embed_batch(self, batch: list[str]) -> list[list[float]]:
        started = time.perf_counter()
        try:
            if self._send_dimensions:
                response = await self._client.embeddings.create(
                    model=self.model, input=batch, dimensions=self.dimensions, encoding_format="float"
                )
            else:
                response = await self._client.embeddings.create(model=self.model, input=batch, encoding_format="float")
        except (openai.OpenAIError, ClientAuthenticationError) as exc:
            error = _map_error(
                exc,
                operation="embed",
                model=self.model,
                hints=self._hints,
                attempts=self._client.max_retries + 1,
            )
            logger.warning("embed: %s", error.detail)
            raise error from exc
        logger.debug(
            "embed: model=%s %d text(s) took %.0f ms", self.model, len(batch), (time.perf_counter() - started) * 1000
        )
        if response.usage:
            telemetry.record_usage("embeddings", self.model, response.usage.prompt_tokens)
        where = f"embed with model {self.model!r}"
        items = sorted(response.data, key=lambda item: item.index)
        if [item.index for item in items] != list(range(len(batch))):
            raise ModelOutputError(f"{where}: {len(items)} vector(s) (indexes do not match) for {len(batch)} text(s)")
        vectors: list[list[float]] = []
        for item in items:
            vector = [float(x) for x in item.embedding]
            if len(vector) != self.dimensions:
                raise ModelOutputError(
                    f"{where}: a vector has {len(vector)} dimensions, expected {self.dimensions} "
                    "(EMBEDDING_DIMENSIONS and the store's identity)"
                )
            norm = math.hypot(*vector)
            if not math.isfinite(norm) or norm == 0.0:
                raise ModelOutputError(f"{where}: a vector is zero or not finite and cannot be normalised")
            vectors.append([x / norm for x in vector])
        return vectors


# factories


def _azure_client(
    settings: Settings, credential: AsyncTokenCredential | None
) -> tuple[openai.AsyncAzureOpenAI, AsyncTokenCredential | None]:
    """An Azure OpenAI client, and the credential it owns (None when it uses a key or the caller's credential)."""
    from azure.identity.aio import DefaultAzureCredential, get_bearer_token_provider

    endpoint = settings.AZURE_OPENAI_ENDPOINT
    if not endpoint:
        raise ConfigurationError("AZURE_OPENAI_ENDPOINT is required for azure_openai", field="AZURE_OPENAI_ENDPOINT")
    if settings.AZURE_OPENAI_API_KEY:
        client = openai.AsyncAzureOpenAI(
            azure_endpoint=endpoint,
            api_version=settings.AZURE_OPENAI_API_VERSION,
            api_key=settings.AZURE_OPENAI_API_KEY,
            max_retries=settings.MODEL_MAX_RETRIES,
            timeout=settings.MODEL_TIMEOUT_SECONDS,
        )
        return client, None
    owned: AsyncTokenCredential | None = None
    if credential is None:
        credential = owned = DefaultAzureCredential(managed_identity_client_id=settings.AZURE_CLIENT_ID)
    client = openai.AsyncAzureOpenAI(
        azure_endpoint=endpoint,
        api_version=settings.AZURE_OPENAI_API_VERSION,
        azure_ad_token_provider=get_bearer_token_provider(credential, COGNITIVE_SERVICES_SCOPE),
        max_retries=settings.MODEL_MAX_RETRIES,
        timeout=settings.MODEL_TIMEOUT_SECONDS,
    )
    return client, owned


def _openai_client(settings: Settings) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=settings.OPENAI_BASE_URL,
        api_key=settings.OPENAI_API_KEY or "unused",
        max_retries=settings.MODEL_MAX_RETRIES,
        timeout=settings.MODEL_TIMEOUT_SECONDS,
    )


def build_chat_model(settings: Settings, *, credential: AsyncTokenCredential | None = None) -> OpenAIChatModel:
    """The chat model ``LLM_PROVIDER`` names, ``azure_openai`` or ``openai``.

    Azure OpenAI uses ``AZURE_OPENAI_API_KEY`` when it is set, otherwise an Entra ID token from ``credential`` or,
    when none is given, from ``DefaultAzureCredential`` (the managed identity ``AZURE_CLIENT_ID`` when set).

    Args:
        settings: The service settings.
        credential: An async Entra ID credential to use instead of ``DefaultAzureCredential``; the caller keeps
            ownership (the model does not close it).

    Returns:
        The chat model; close it with ``close()``.

    Raises:
        ConfigurationError: The provider is not one this adapter serves, or a required setting is missing.
    """
    provider = settings.LLM_PROVIDER
    if provider == "azure_openai":
        client, owned = _azure_client(settings, credential)
        return OpenAIChatModel(
            client, settings.AZURE_OPENAI_DEPLOYMENT, model_setting="AZURE_OPENAI_DEPLOYMENT", credential=owned
        )
    if provider == "openai":
        return OpenAIChatModel(_openai_client(settings), settings.OPENAI_MODEL, model_setting="OPENAI_MODEL")
    raise ConfigurationError(
        f"LLM_PROVIDER={provider!r} is not served by the OpenAI adapter (azure_openai or openai)", field="LLM_PROVIDER"
    )


def build_embedder(settings: Settings, *, credential: AsyncTokenCredential | None = None) -> OpenAIEmbedder:
    """The embedder ``EMBEDDINGS_PROVIDER`` names, ``azure_openai`` or ``openai``.

    The vector size is ``EMBEDDING_DIMENSIONS`` when set (sent as ``dimensions``), otherwise the model's native size
    (1536 for text-embedding-3-small and ada-002, 3072 for text-embedding-3-large). Authentication as for
    ``build_chat_model``.

    Args:
        settings: The service settings.
        credential: An async Entra ID credential to use instead of ``DefaultAzureCredential``; the caller keeps
            ownership.

    Returns:
        The embedder; close it with ``close()``.

    Raises:
        ConfigurationError: The provider is not one this adapter serves, a required setting is missing, or the
            vector size is unknown (``EMBEDDING_DIMENSIONS`` unset for an unknown model) or impossible.
    """
    provider = settings.EMBEDDINGS_PROVIDER
    if provider == "azure_openai":
        model, model_setting = settings.AZURE_OPENAI_EMBEDDING_DEPLOYMENT, "AZURE_OPENAI_EMBEDDING_DEPLOYMENT"
    elif provider == "openai":
        model, model_setting = settings.OPENAI_EMBEDDING_MODEL, "OPENAI_EMBEDDING_MODEL"
    else:
        raise ConfigurationError(
            f"EMBEDDINGS_PROVIDER={provider!r} is not served by the OpenAI adapter (azure_openai or openai)",
            field="EMBEDDINGS_PROVIDER",
        )
    dimensions, send_dimensions = resolve_embedding_dimensions(model, settings.EMBEDDING_DIMENSIONS, model_setting)
    client: openai.AsyncOpenAI
    owned: AsyncTokenCredential | None = None
    if provider == "azure_openai":
        client, owned = _azure_client(settings, credential)
    else:
        client = _openai_client(settings)
    return OpenAIEmbedder(
        client,
        model,
        dimensions,
        send_dimensions=send_dimensions,
        model_setting=model_setting,
        credential=owned,
    )
