import pytest

from tests.scaleout.servers import LlamaCppServer, ScriptedUpstream, SilentUpstream, dead_url, started_front


@pytest.fixture(scope="session")
def llama_cpp_server(tmp_path_factory):
    server = LlamaCppServer(tmp_path_factory.mktemp("llama_cpp")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def silent_upstream():
    upstream = SilentUpstream()
    yield upstream
    upstream.close()


@pytest.fixture(scope="session")
def held_upstream():
    """A second stalled fake, for the admission test alone (it drops its connections)."""
    upstream = SilentUpstream()
    yield upstream
    upstream.close()


@pytest.fixture(scope="session")
def scripted_upstream():
    upstream = ScriptedUpstream()
    yield upstream
    upstream.close()


@pytest.fixture(scope="session")
def front(tmp_path_factory, llm_server, llama_cpp_server, silent_upstream, held_upstream, scripted_upstream):
    """A service whose remote tiers point at the shared llmservice (`llm_server`), at
    llama_cpp.server, at a port nothing listens on and at stalled fakes; `light` is local."""
    upstream = llm_server.base_url + "/v1"
    env = {
        "TIER_NAMES": "light,big,bigembed,bigrerank,foreign,untrusted,down,slow,queued,scripted,broken,stalled",
        "CACHE_REQUESTS": "deterministic",
        "BIG_BACKEND": "remote", "BIG_MODEL_PATH": "light", "BIG_BASE_URL": upstream,
        "BIGEMBED_BACKEND": "remote", "BIGEMBED_KIND": "embedding", "BIGEMBED_MODEL_PATH": "embed",
        "BIGEMBED_BASE_URL": upstream,
        "BIGRERANK_BACKEND": "remote", "BIGRERANK_KIND": "rerank", "BIGRERANK_MODEL_PATH": "rerank",
        "BIGRERANK_BASE_URL": upstream,
        "FOREIGN_BACKEND": "remote", "FOREIGN_MODEL_PATH": "smollm2", "FOREIGN_BASE_URL": llama_cpp_server.base_url,
        "UNTRUSTED_BACKEND": "remote", "UNTRUSTED_MODEL_PATH": "light",
        "UNTRUSTED_BASE_URL": upstream, "UNTRUSTED_TRUST_JSON_SCHEMA": "false",
        "DOWN_BACKEND": "remote", "DOWN_MODEL_PATH": "x", "DOWN_BASE_URL": dead_url(), "DOWN_RETRIES": "1",
        "DOWN_RETRY_BACKOFF": "0.05", "DOWN_BREAKER_FAILURES": "2", "DOWN_BREAKER_RESET_SECONDS": "600",
        "SLOW_BACKEND": "remote", "SLOW_MODEL_PATH": "x", "SLOW_BASE_URL": silent_upstream.base_url,
        "SLOW_READ_TIMEOUT": "1", "SLOW_RETRIES": "0",
        # one request upstream at a time, none may wait: the admission gate's 429
        "QUEUED_BACKEND": "remote", "QUEUED_MODEL_PATH": "x", "QUEUED_BASE_URL": held_upstream.base_url,
        "QUEUED_MAX_CONNECTIONS": "1", "QUEUED_MAX_WAITING": "0", "QUEUED_RETRIES": "0",
        # a scripted fake: whole streams, a stream broken off, a stream that stalls mid-way
        "SCRIPTED_BACKEND": "remote", "SCRIPTED_MODEL_PATH": "ok", "SCRIPTED_BASE_URL": scripted_upstream.base_url,
        "BROKEN_BACKEND": "remote", "BROKEN_MODEL_PATH": "break", "BROKEN_BASE_URL": scripted_upstream.base_url,
        "BROKEN_RETRIES": "0",
        "STALLED_BACKEND": "remote", "STALLED_MODEL_PATH": "stall", "STALLED_BASE_URL": scripted_upstream.base_url,
        "STALLED_READ_TIMEOUT": "1", "STALLED_RETRIES": "0",
    }
    server = started_front(tmp_path_factory.mktemp("front"), env)
    yield server
    server.stop()


# --- several instances on one PostgreSQL + Redis ---------------------------------------------------
from pytest_postgresql import factories as pg_factories  # noqa: E402
from pytest_postgresql.janitor import DatabaseJanitor  # noqa: E402
from pytest_redis import factories as redis_factories  # noqa: E402

from tests.scaleout.stores import PostgresServer  # noqa: E402


@pytest.fixture(scope="session")
def pg_server():
    server = PostgresServer.start()
    yield server
    server.stop()


postgresql_noproc = pg_factories.postgresql_noproc(depends_on="pg_server")
# timeout: the server closes idle client connections after this many seconds (pytest-redis: 30)
redis_proc = redis_factories.redis_proc(host="127.0.0.1", port=None, save="", timeout=3600)


@pytest.fixture(scope="module")
def shared_stores(postgresql_noproc, redis_proc):
    """A fresh PostgreSQL database (made by pytest-postgresql's janitor) and the Redis server:
    their DATABASE_URL and REDIS_URL."""
    pg = postgresql_noproc
    janitor = DatabaseJanitor(user=pg.user, host=pg.host, port=pg.port, dbname="llmservice_instances",
                              password=pg.password)
    janitor.init()
    try:
        yield {"DATABASE_URL": f"postgres://{pg.user}@{pg.host}:{pg.port}/llmservice_instances",
               "REDIS_URL": f"redis://{redis_proc.host}:{redis_proc.port}/0"}
    finally:
        janitor.drop()
