"""Django settings for llmservice, read once from the environment and an optional `.env` file.

Every setting is listed, with its default and a one-line description, in `.env.example`.
"""

import os
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# Variables already in the process environment win over the file; ENV_FILE points elsewhere.
_env_file = Path(env.str("ENV_FILE", default=str(BASE_DIR / ".env")))
if _env_file.is_file():
    environ.Env.read_env(_env_file)

# --- Django core ---------------------------------------------------------------------------
SECRET_KEY = env.str("SECRET_KEY", default="")  # signs sessions; unset: generated into SECRET_KEY_FILE
DEBUG = env.bool("DEBUG", default=False)  # Django debug mode; never in production
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "ninja",
    "registry",
    "inference",
    "openai_api",
]

MIDDLEWARE = [
    "openai_api.middleware.openai_error_envelope",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# The API paths (/v1/, /health, /rerank, /internal/) need none of the session, auth, CSRF or
# messages machinery, and under ASGI each of those runs its hooks through a thread hop: they are
# served by a handler with only this middleware (llmservice/asgi.py).
API_MIDDLEWARE = ["openai_api.middleware.openai_error_envelope"]
API_PATH_PREFIXES = ("/v1/", "/health", "/ready", "/metrics", "/rerank", "/internal/")

ROOT_URLCONF = "llmservice.urls"
ASGI_APPLICATION = "llmservice.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    # SQLite next to manage.py unless DATABASE_URL says otherwise.
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# --- Server ------------------------------------------------------------------------------
HOST = env.str("HOST", default="127.0.0.1")  # address `manage.py serve` binds
PORT = env.int("PORT", default=8000)  # port `manage.py serve` binds
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()  # DEBUG, INFO, WARNING or ERROR

# --- Model loading (global; fill the load options a tier leaves unset) ----------------------
N_CTX = env.int("N_CTX", default=2048)  # context window in tokens
N_GPU_LAYERS = env.int("N_GPU_LAYERS", default=0)  # layers offloaded to a GPU (-1: all)
N_THREADS = env.int("N_THREADS", default=0)  # CPU threads per model (0: llama.cpp's choice)
N_BATCH = env.int("N_BATCH", default=512)  # prompt tokens evaluated per batch
TIER_NAMES = env.list("TIER_NAMES", default=["light", "medium", "heavy", "embed", "rerank", "light-mlx"])  # tiers seeded from <NAME>_* variables

# A tier's `backend` -> dotted path of its engine class, or a list of them (one per tier kind).
# Each engine declares the kinds it serves and its load options (inference/engines/base.py);
# tests add fakes here.
INFERENCE_BACKENDS = {
    # llama.cpp: chat tiers batched (continuous batching, `parallel` sequences), GGUF embedding tiers.
    "llamacpp": [
        "inference.engines.llamacpp_batched.BatchedLlamaEngine",
        "inference.engines.llamacpp_embedding.LlamaEmbeddingEngine",
    ],
    "llamacpp_serial": "inference.backends.llamacpp.LlamaCppEngine",  # chat, one request at a time
    "sentence_transformers": "inference.backends.embeddings.SentenceTransformerEngine",
    "bge_m3": "inference.backends.embeddings.BGEM3Engine",
    "cross_encoder": "inference.backends.rerankers.CrossEncoderEngine",
    "flag_reranker": "inference.backends.rerankers.FlagRerankerEngine",
    "mlx": "inference.backends.mlx_engine.MlxEngine",  # issue 13: MLX tiers (mlx-lm)
    "remote": "inference.remote.RemoteEngine",  # another OpenAI-compatible server (issue 16)
}

# --- MLX tiers (issue 13) -------------------------------------------------------------------
MLX_PARALLEL = env.int("MLX_PARALLEL", default=8)  # sequences an MLX tier decodes together (continuous batching)
# MLX and llama.cpp (and torch) each bring an OpenMP runtime; on macOS two in one process abort
# at the second load unless this is set before either loads.
os.environ.setdefault("KMP_DUPLICATE_LIB_OK", "TRUE")

# --- Response cache (openai_api/cache.py) --------------------------------------------------
ENABLE_CACHE = env.bool("ENABLE_CACHE", default=True)  # exact-match cache of chat/completion responses
CACHE_MAX_SIZE = env.int("CACHE_MAX_SIZE", default=1000)  # entries kept in the in-memory LRU
CACHE_TTL_SECONDS = env.int("CACHE_TTL_SECONDS", default=86400)  # an entry's lifetime (memory and database)
CACHE_PERSIST_TO_DISK = env.bool("CACHE_PERSIST_TO_DISK", default=True)  # also store entries in the database
# Which requests are cached: "deterministic" (temperature 0 or a seed), "all", or "none".
CACHE_REQUESTS = env.str("CACHE_REQUESTS", default="deterministic")

# --- Internal endpoints (/internal/*) used by the warm/unload/status/clearcache commands ------
# Bearer token the commands send; empty: derived from SECRET_KEY, so commands sharing the
# server's settings authenticate with no extra configuration.
INTERNAL_TOKEN = env.str("INTERNAL_TOKEN", default="")
# Where the commands find the running server; empty: http://HOST:PORT.
INTERNAL_URL = env.str("INTERNAL_URL", default="")

# --- Live status page (Channels) -----------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")  # empty: in-memory channel layer (one process)
CHANNEL_LAYERS = {
    "default": (
        {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}
        if REDIS_URL
        else {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    )
}
STATUS_INTERVAL_SECONDS = env.float("STATUS_INTERVAL_SECONDS", default=1.0)  # status page refresh period
LOGIN_URL = "/admin/login/"
# --- Embeddings and reranking ------------------------------------------------------------
MODELS_DIR = env.path("MODELS_DIR", default=BASE_DIR / "var" / "models")  # models built by `manage.py build_models`
EMBEDDING_MAX_INPUTS = env.int("EMBEDDING_MAX_INPUTS", default=2048)  # most inputs in one embeddings request
RERANK_MAX_DOCUMENTS = env.int("RERANK_MAX_DOCUMENTS", default=1000)  # most documents in one rerank request
BATCH_MAX_ITEMS = env.int("BATCH_MAX_ITEMS", default=256)  # most texts (or pairs) one batched forward pass takes
BATCH_GATHER_MS = env.float("BATCH_GATHER_MS", default=10.0)  # most ms a pass waits for requests expected to join it
# How token-id inputs to /v1/embeddings are read: "cl100k_base" (OpenAI's embedding tokenizer,
# what the openai and LangChain clients send) or "model" (the tier's own tokenizer).
EMBEDDING_TOKEN_IDS = env.str("EMBEDDING_TOKEN_IDS", default="cl100k_base")

# --- Structured output and tools (inference/constraints) -----------------------------------------
STRUCTURED_MAX_CONSTRAINT_BYTES = env.int("STRUCTURED_MAX_CONSTRAINT_BYTES", default=131072)  # largest schema, grammar or tool parameters (JSON bytes)
STRUCTURED_MAX_GRAMMAR_SIZE = env.int("STRUCTURED_MAX_GRAMMAR_SIZE", default=500000)  # symbols in one compiled grammar (llguidance)
STRUCTURED_INITIAL_FUEL = env.int("STRUCTURED_INITIAL_FUEL", default=1000000)  # lexer work to build one grammar (llguidance, ~50k per ms)
STRUCTURED_STEP_FUEL = env.int("STRUCTURED_STEP_FUEL", default=200000)  # lexer work per token mask (llguidance, ~14k per ms)
STRUCTURED_MAX_LEXER_STATES = env.int("STRUCTURED_MAX_LEXER_STATES", default=50000)  # lexer states per grammar (1-2 kB each)
STRUCTURED_CACHE_SIZE = env.int("STRUCTURED_CACHE_SIZE", default=256)  # compiled constraints kept per loaded model (LRU)
STRUCTURED_COMPILE_THREADS = env.int("STRUCTURED_COMPILE_THREADS", default=2)  # threads compiling constraints (off the model threads)

# --- Hardening: secrets, limits, admission, API keys (issue 11) ------------------------------
# Where the SECRET_KEY generated on first start is kept (mode 0600) when SECRET_KEY is unset.
SECRET_KEY_FILE = env.path("SECRET_KEY_FILE", default=BASE_DIR / "var" / "secret_key")
if not SECRET_KEY:
    from llmservice.secret import secret_key_from_file

    SECRET_KEY = secret_key_from_file(SECRET_KEY_FILE)
MAX_REQUEST_BODY_BYTES = env.int("MAX_REQUEST_BODY_BYTES", default=16 * 2**20)  # larger bodies: 413
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES  # Django's own check never fires first
MAX_JSON_DEPTH = env.int("MAX_JSON_DEPTH", default=100)  # deeper JSON request bodies: 400
# Origins (scheme://host[:port]) whose web pages may call the API; empty: CORS off (no headers sent).
CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=[])
if CORS_ALLOWED_ORIGINS:
    INSTALLED_APPS.append("corsheaders")
    MIDDLEWARE.insert(0, "corsheaders.middleware.CorsMiddleware")
    API_MIDDLEWARE.insert(0, "corsheaders.middleware.CorsMiddleware")
# Admission control, per tier (a tier's own values in the admin override the first two).
QUEUE_MAX_WAITING = env.int("QUEUE_MAX_WAITING", default=32)  # requests waiting (not running); more: 429
QUEUE_MAX_WAIT_SECONDS = env.float("QUEUE_MAX_WAIT_SECONDS", default=60.0)  # longest wait to start; then 429
REQUEST_TIMEOUT_SECONDS = env.float("REQUEST_TIMEOUT_SECONDS", default=300.0)  # a request's deadline
COMPLETIONS_MAX_GENERATIONS = env.int("COMPLETIONS_MAX_GENERATIONS", default=64)  # prompts x n in one request
EMBEDDING_MAX_TOTAL_TOKENS = env.int("EMBEDDING_MAX_TOTAL_TOKENS", default=131072)  # tokens in one request
RERANK_MAX_TOTAL_TOKENS = env.int("RERANK_MAX_TOTAL_TOKENS", default=131072)  # query+document tokens, all pairs
LOAD_RETRY_SECONDS = env.float("LOAD_RETRY_SECONDS", default=5.0)  # first wait after a failed load (doubles)
LOAD_RETRY_MAX_SECONDS = env.float("LOAD_RETRY_MAX_SECONDS", default=300.0)  # longest wait between load attempts
# API keys (registry.ApiKey): off by default for local use.
API_KEYS_REQUIRED = env.bool("API_KEYS_REQUIRED", default=False)  # /v1 needs Authorization: Bearer <key>
API_KEY_USAGE_FLUSH_SECONDS = env.float("API_KEY_USAGE_FLUSH_SECONDS", default=60.0)  # usage/last-used writes
RATE_LIMITER = env.str("RATE_LIMITER", default="openai_api.ratelimit.InProcessRateLimiter")  # per-key limits
# Production behind a TLS-terminating reverse proxy (README "Security and limits"; check --deploy).
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)  # redirect plain HTTP to HTTPS
if env.bool("USE_X_FORWARDED_PROTO", default=False):  # the proxy sets X-Forwarded-Proto: https
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)  # Strict-Transport-Security max-age
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)  # admin session cookie over HTTPS only
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=False)  # CSRF cookie over HTTPS only
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])  # e.g. https://llm.example.com

# --- Operations: shutdown, readiness, metrics, logs (llmservice/lifecycle.py, openai_api/access_log.py) ---
AUTO_SHUTDOWN_MINUTES = env.float("AUTO_SHUTDOWN_MINUTES", default=0.0)  # exit after this long with no API request (0: never)
SHUTDOWN_GRACE_SECONDS = env.float("SHUTDOWN_GRACE_SECONDS", default=30.0)  # on shutdown, how long in-flight requests may finish
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")  # bearer token GET /metrics requires (empty: open)
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")  # plain, or json (one JSON object per line)
# Idle unload (inference/keep_alive.py): durations such as "5m", "1h", "30s" or seconds; 0: right after each request; -1: never.
KEEP_ALIVE = env.str("KEEP_ALIVE", default="5m")  # how long a tier stays loaded after its last request (a tier's own wins)
KEEP_ALIVE_MAX = env.str("KEEP_ALIVE_MAX", default="1h")  # the longest keep_alive a request may ask for (-1: no bound)
MAX_LOADED_MODELS = env.int("MAX_LOADED_MODELS", default=0)  # models loaded at once; one more unloads the least recently used idle one (0: no limit)

# --- Responses API (openai_api/serving/responses.py) ----------------------------------------------
RESPONSES_RETENTION_DAYS = env.float("RESPONSES_RETENTION_DAYS", default=30.0)  # days a stored response is kept

# --- Request path (issue 14: registry/tier_snapshot.py) ---------------------------------------------
# Seconds the tier table, once read, answers requests before it is read again (a tier saved in this
# process applies at once; one edited by another process within this time). 0: read it per request.
TIER_SNAPSHOT_SECONDS = env.float("TIER_SNAPSHOT_SECONDS", default=2.0)

# --- Several instances (issue 16): one PostgreSQL (DATABASE_URL) and one Redis (REDIS_URL) ---------
# With REDIS_URL, the instances share the response cache's front (Django's Redis cache), single
# flight of identical requests (a Redis lock) and per-key rate limits (counted in Redis), as well
# as the channel layer above. Without it, one process keeps all of these in memory.
# A Redis command waits at most this long (connecting, or for an answer): an unreachable Redis is
# then a cache miss, a lock not taken, or a 503 for a rate limit, never a request left hanging.
REDIS_TIMEOUT_SECONDS = env.float("REDIS_TIMEOUT_SECONDS", default=2.0)
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
if REDIS_URL:
    CACHES["responses"] = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL,
                           "KEY_PREFIX": "llmservice",
                           "OPTIONS": {"socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
                                       "socket_timeout": REDIS_TIMEOUT_SECONDS}}
    if RATE_LIMITER == "openai_api.ratelimit.InProcessRateLimiter":
        RATE_LIMITER = "openai_api.ratelimit_redis.RedisRateLimiter"

from llmservice.logs import logging_config  # noqa: E402

LOGGING = logging_config(
    level=LOG_LEVEL,
    log_format=LOG_FORMAT if LOG_FORMAT in ("plain", "json") else "plain",  # a wrong value: `manage.py check` says so
    service_loggers=("llmservice", "registry", "inference", "openai_api"),
)
