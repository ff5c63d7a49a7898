import pytest

from memory_core.config import get_settings, load_settings
from memory_core.errors import ConfigurationError

GUIDE_DEFAULTS = {
    "K_TURN_BUFFER": 5,
    "L_TURN_CHUNKS": 10,
    "M_SESSIONS_RECENT": 5,
    "REFLECTION_THRESHOLD_TURNS": 15,
    "MAX_SESSIONS": 1000,
    "SESSION_TTL_MINUTES": 30,
    "EVICTION_INTERVAL_SECONDS": 60,
    "COSMOS_DATABASE_NAME": "agent_memory",
    "COSMOS_INTERACTIONS_CONTAINER": "interactions",
    "COSMOS_SUMMARIES_CONTAINER": "session_summaries",
    "COSMOS_INSIGHTS_CONTAINER": "insights",
    "AZURE_OPENAI_API_VERSION": "2024-02-15-preview",
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch):
    for name in [*GUIDE_DEFAULTS, "STORE", "COSMOS_ENDPOINT", "LLM_PROVIDER", "EMBEDDINGS_PROVIDER"]:
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_defaults_are_the_guides():
    settings = load_settings()
    for name, value in GUIDE_DEFAULTS.items():
        assert getattr(settings, name) == value, name
    assert (settings.STORE, settings.LLM_PROVIDER, settings.EMBEDDINGS_PROVIDER) == ("sqlite", "local", "none")


def test_values_come_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("K_TURN_BUFFER", "8")
    monkeypatch.setenv("COSMOS_VECTOR_SEARCH", "false")
    settings = load_settings()
    assert settings.K_TURN_BUFFER == 8 and settings.COSMOS_VECTOR_SEARCH is False


@pytest.mark.parametrize(
    ("name", "value"),
    [("K_TURN_BUFFER", "0"), ("MAX_SESSIONS", "many"), ("STORE", "postgres"), ("EMBEDDINGS_PROVIDER", "magic")],
)
def test_a_bad_value_fails_with_one_message_naming_the_setting(monkeypatch: pytest.MonkeyPatch, name: str, value: str):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert name in str(caught.value) and value in str(caught.value)


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({"STORE": "cosmos"}, "COSMOS_ENDPOINT"),
        ({"LLM_PROVIDER": "azure_openai"}, "AZURE_OPENAI_ENDPOINT"),
        ({"EMBEDDINGS_PROVIDER": "openai"}, "OPENAI_BASE_URL"),
    ],
)
def test_a_provider_without_its_endpoint_is_refused(monkeypatch: pytest.MonkeyPatch, env: dict, missing: str):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=missing):
        load_settings()


def test_settings_are_built_once_and_on_first_use(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("K_TURN_BUFFER", "0")
    import memory_core.config  # importing never reads the environment  # noqa: F401

    with pytest.raises(ConfigurationError):
        get_settings()
    monkeypatch.setenv("K_TURN_BUFFER", "7")
    get_settings.cache_clear()
    assert get_settings() is get_settings()
    assert get_settings().K_TURN_BUFFER == 7


def test_every_setting_is_documented_in_the_readme():
    from pathlib import Path

    from memory_core.config import Settings

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert [name for name in Settings.model_fields if f"`{name}`" not in readme] == []
