"""The memory inspector in a real browser: Debian's headless Chromium loads the page from run_server.py, keys on.

The service holds a seeded user whose id, turns and insights carry HTML; the page must show them as text. The
browser runs the page's script against the service (``--virtual-time-budget`` lets its requests finish before the
DOM is dumped). Without ``chromium`` on PATH the test is skipped with a message saying how to install it, except in
CI (``CI`` set), where a missing browser is a failure: ``.ci/run`` installs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from tests.support.service import MemoryServiceProcess

CHROMIUM = shutil.which("chromium")
MISSING = "Debian's chromium is not installed (apt-get install -y chromium): the inspector's browser test cannot run"
if CHROMIUM is None and os.environ.get("CI"):
    pytest.fail(MISSING, pytrace=False)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=MISSING)

MASTER = "inspector-master-key"
USER = "ada <b>lovelace</b>"
SESSIONS = {
    "s1": ["I live in Paris.", "My favourite drink is <script>alert(1)</script> tea.", "I work as a nurse."],
    "s2": ["I live in Berlin now.", "What's the weather like?"],
}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MemoryServiceProcess]:
    settings = {"REFLECTION_THRESHOLD_TURNS": "1", "K_TURN_BUFFER": "2", "L_TURN_CHUNKS": "2"}
    workdir = tmp_path_factory.mktemp("inspector")
    with MemoryServiceProcess(workdir, settings, keys={"master": MASTER}) as running:
        seed(running)
        yield running


def seed(service: MemoryServiceProcess) -> None:
    """Two sessions of USER, each ended and reflected: the second supersedes where the user lives."""
    with httpx.Client(base_url=service.base_url, headers={"x-functions-key": MASTER}, timeout=30) as http:
        for session, messages in SESSIONS.items():
            assert http.post("/sessions/start", json={"user_id": USER, "session_id": session}).status_code == 200
            for i, message in enumerate(messages):
                turn = {"user_id": USER, "session_id": session, "user_message": message, "agent_message": f"<i>{i}</i>"}
                assert http.post("/memory/store", json=turn).status_code == 201
            ended = http.post("/sessions/end", json={"user_id": USER, "session_id": session})
            deadline = time.monotonic() + 30
            while http.get(ended.json()["statusQueryGetUri"]).status_code != 200:
                assert time.monotonic() < deadline, "the reflection did not finish"
                time.sleep(0.2)


def browse(url: str, profile: Path, *args: str) -> str:
    """What headless Chromium shows of ``url`` once the page's requests have finished."""
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",  # tests run as root in CI
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=15000",
        *args,
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def page_url(service: MemoryServiceProcess, session: str) -> str:
    return f"{service.base_url}/inspector?code={MASTER}#{urlencode({'user': USER, 'session': session})}"


def test_the_page_and_listing_need_the_admin_key_and_the_script_does_not(service: MemoryServiceProcess) -> None:
    assert httpx.get(f"{service.base_url}/inspector").status_code == 401
    assert httpx.get(f"{service.base_url}/inspector/users").status_code == 401
    assert httpx.get(f"{service.base_url}/inspector/assets/inspector.js").status_code == 200
    keyed = httpx.get(f"{service.base_url}/inspector/users", headers={"x-functions-key": MASTER})
    assert keyed.status_code == 200 and keyed.json()["users"][0]["user_id"] == USER


def test_the_browser_shows_turns_insights_and_reflection_with_user_text_as_text(
    service: MemoryServiceProcess, tmp_path: Path
) -> None:
    dom = browse(page_url(service, "s1"), tmp_path / "profile", "--dump-dom")
    assert 'data-ready="true"' in dom, dom[-3000:]
    # the user list and the session's turns, every user text escaped: shown as text, never as markup
    assert "ada &lt;b&gt;lovelace&lt;/b&gt;" in dom and "<b>lovelace</b>" not in dom
    assert '<span class="text">I live in Paris.</span>' in dom
    assert "My favourite drink is &lt;script&gt;alert(1)&lt;/script&gt; tea." in dom
    assert "<script>alert(1)" not in dom and "<i>0</i>" not in dom and "&lt;i&gt;0&lt;/i&gt;" in dom
    assert dom.count('<li data-seq="') == len(SESSIONS["s1"])
    # insights with provenance; the superseded one struck through, with when it stopped being true
    assert '<tr class="superseded"><td class="text"><s>The user lives in Paris.</s></td>' in dom
    assert "<span>The user lives in Berlin now.</span>" in dom
    assert "session s2</button><span>, turns 1</span>" in dom
    assert '<div class="superseded-at">superseded ' in dom
    # the session's reflection, as GET /sessions/reflection reports it
    assert "<dt>reflection</dt><dd>Completed" in dom


def test_the_other_session_shows_its_own_turns(service: MemoryServiceProcess, tmp_path: Path) -> None:
    dom = browse(page_url(service, "s2"), tmp_path / "profile", "--dump-dom")
    assert "Session s2" in dom and "I live in Berlin now." in dom and "I live in Paris.</span>" not in dom
    assert dom.count('<li data-seq="') == len(SESSIONS["s2"])
