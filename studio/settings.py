"""Studio settings: every knob is an environment variable with a sensible default.

The helpers below fail loudly on a bad value, so a typo in a deployment is an error at start-up,
not a silently ignored setting. Their messages name the variable, the value and what is expected,
in one line: manage.py and the ASGI module print it and exit with status 2 (see studio.boot).
"""

from __future__ import annotations

import ipaddress
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from django.conf import global_settings
from django.core.exceptions import ImproperlyConfigured

from studio import security
from tracing import prices

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_int(name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    expected = f"an integer from {minimum} to {maximum}" if maximum is not None else "an integer"
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be {expected}, got {raw!r}") from None
    if maximum is not None and not minimum <= value <= maximum:
        raise ImproperlyConfigured(f"{name} must be {expected}, got {value}")
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, got {raw!r}")


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach an address Studio binds to."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    """One of `choices` (as spelled there), in any case."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    for choice in choices:
        if raw.strip().lower() == choice.lower():
            return choice
    raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, got {raw!r}")


def env_database_url(name: str, default: str) -> dict[str, Any]:
    """A SQLite or PostgreSQL URL, as Django's DATABASES entry."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        raw = default
    # The value goes into an error message: never its password.
    shown = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", raw)
    expected = "a URL such as postgres://user:password@host:5432/studio or sqlite:////path/db"
    try:
        database = dj_database_url.parse(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be {expected}, got {shown!r}") from None
    if database["ENGINE"] not in SUPPORTED_DATABASES:
        raise ImproperlyConfigured(f"{name} must be {expected}, got {shown!r}")
    return dict(database)


def env_path(name: str, default: Path) -> Path:
    raw = os.environ.get(name)
    return Path(raw if raw and raw.strip() else default).expanduser().resolve()


def make_dir(name: str, path: Path) -> None:
    """Create the directory `path` (from the variable `name`) if it is missing."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImproperlyConfigured(
            f"{name} must be a directory Studio can create and write, got {str(path)!r} "
            f"({exc.strerror})"
        ) from None


def env_prices(name: str) -> dict[str, prices.Price]:
    """A JSON file of model prices (USD per million tokens) over the shipped table."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return {}
    try:
        return prices.load_overrides(Path(raw.strip()).expanduser())
    except prices.PriceError as exc:
        raise ImproperlyConfigured(
            f"{name} must be a JSON file mapping model names to USD per million tokens, "
            f'like {{"my-model": {{"input": 2.0, "output": 8.0}}}}, got {raw!r}: {exc}'
        ) from None


SUPPORTED_DATABASES = ("django.db.backends.sqlite3", "django.db.backends.postgresql")


DATA_DIR = env_path("STUDIO_DATA_DIR", BASE_DIR / "data")

# Made on first start and kept beside the data (mode 0600), so sessions and CSRF tokens survive
# restarts and no two Studios share a key.
SECRET_KEY = env_str("SECRET_KEY", "")
if not SECRET_KEY:
    make_dir("STUDIO_DATA_DIR", DATA_DIR)
    SECRET_KEY = security.stored_secret_key(DATA_DIR)
DEBUG = env_bool("DEBUG", False)
HOST = env_str("STUDIO_HOST", "127.0.0.1")
# Names (no port) besides loopback and the bound address that Studio answers to; anything else
# gets 400, which is what stops a site that rebinds its name to this machine. `ALLOWED_HOSTS` is
# the older name, still read. runstudio --host recomputes the list for the address it binds.
STUDIO_ALLOWED_HOSTS = env_list("STUDIO_ALLOWED_HOSTS", []) + env_list("ALLOWED_HOSTS", [])
ALLOWED_HOSTS = security.allowed_hosts(HOST, STUDIO_ALLOWED_HOSTS)
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# runstudio serves plain HTTP; behind an HTTPS proxy, cookies should never travel in clear.
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("STUDIO_SECURE_COOKIES", False)
# Django's defaults, pinned: a response is never sniffed, framed, or named in another site's logs.
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "servestatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "channels",
    "django_htmx",
    "template_partials",
    "tracing",
    "accounts",
    "ingest",
    "studio",
    "runs",
    "axes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "servestatic.middleware.ServeStaticMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # After the session and htmx: it reads both. Every route needs sign-in unless allow-listed.
    "accounts.middleware.require_sign_in",
    "studio.middleware.content_security_policy",
    "studio.middleware.remember_project",
    # Last, as django-axes asks: it turns a sign-in refused for too many failures into a 429.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "studio.urls"
ASGI_APPLICATION = "studio.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "accounts.context_processors.auth",
                "studio.context_processors.project",
            ],
        },
    },
]

_default_db = f"sqlite:///{DATA_DIR / 'studio.sqlite3'}"
DATABASES = {"default": env_database_url("DATABASE_URL", _default_db)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # How long a write waits for another connection's lock before it fails (and the writer
    # retries, then answers 503).
    SQLITE_TIMEOUT = env_int("STUDIO_SQLITE_TIMEOUT", 20, minimum=1)
    # FULL: in WAL mode, NORMAL may lose the last commits on power loss, commits an exporter
    # was told are stored. FULL syncs the WAL at every commit; group commit keeps that cheap.
    SQLITE_SYNCHRONOUS = env_choice(
        "STUDIO_SQLITE_SYNCHRONOUS", "FULL", ("FULL", "NORMAL", "EXTRA")
    )
    # Each connection's page cache (the writer's, the search indexer's, each page-serving
    # thread's) stays resident once filled: 64 MB each made a big commit hold 60 MB for good.
    SQLITE_CACHE_MB = env_int("STUDIO_SQLITE_CACHE_MB", 16, minimum=1, maximum=4096)
    DATABASES["default"]["OPTIONS"] = {
        # WAL lets pages read while the writer commits; IMMEDIATE avoids lock upgrades failing.
        "transaction_mode": "IMMEDIATE",
        "timeout": SQLITE_TIMEOUT,
        # Per connection, and none takes a lock: each page opens a connection while the writer
        # may hold the write lock. Incremental auto-vacuum and WAL, which are the database's,
        # are set by tracing.retention.prepare_sqlite_connection.
        "init_command": (
            f"PRAGMA synchronous={SQLITE_SYNCHRONOUS};"
            f"PRAGMA busy_timeout={SQLITE_TIMEOUT * 1000};"
            f"PRAGMA cache_size=-{SQLITE_CACHE_MB * 1024};"
            "PRAGMA temp_store=MEMORY;"
        ),
    }
    make_dir("STUDIO_DATA_DIR", DATA_DIR)
    # A file, not Django's shared in-memory database: the writer thread and the server threads
    # of the tests each open their own connection to it. One per process, so that test runs
    # side by side do not share it.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / f"test-studio-{os.getpid()}.sqlite3")}
else:
    # Django's docs advise against persistent connections under ASGI (one kept per thread, which
    # async code never closes): each process borrows from a psycopg pool instead, and returns the
    # connection when a request ends. STUDIO_DB_POOL_MAX=0 turns the pool off.
    STUDIO_DB_POOL_MIN = env_int("STUDIO_DB_POOL_MIN", 2, minimum=0)
    STUDIO_DB_POOL_MAX = env_int("STUDIO_DB_POOL_MAX", 10, minimum=0)
    DATABASES["default"]["CONN_MAX_AGE"] = env_int("CONN_MAX_AGE", 0)
    if STUDIO_DB_POOL_MAX:
        if STUDIO_DB_POOL_MIN > STUDIO_DB_POOL_MAX:
            raise ImproperlyConfigured(
                f"STUDIO_DB_POOL_MIN must be at most STUDIO_DB_POOL_MAX ({STUDIO_DB_POOL_MAX}), "
                f"got {STUDIO_DB_POOL_MIN}"
            )
        if DATABASES["default"]["CONN_MAX_AGE"]:
            raise ImproperlyConfigured(
                "CONN_MAX_AGE must be 0 while the connection pool is on (STUDIO_DB_POOL_MAX > 0), "
                f"got {DATABASES['default']['CONN_MAX_AGE']}"
            )
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": STUDIO_DB_POOL_MIN,
            "max_size": STUDIO_DB_POOL_MAX,
            # A request waits this long for a free connection, then fails (and the writer's
            # retry, then its 503, take over).
            "timeout": 10,
        }
    # A connection is checked before it is lent (by the pool) or reused (without one), so that
    # the first request after a database restart reconnects instead of failing.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
# Served by ServeStatic (WhiteNoise's async-capable fork: a sync middleware would push every
# request, ingest included, through a thread) straight from the finders: no collectstatic step.
SERVESTATIC_USE_FINDERS = True
SERVESTATIC_AUTOREFRESH = DEBUG

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
}

# Shared state between Studio processes (--workers, several hosts): live pages over Channels,
# and which process holds a run's Socket.IO connection (runs/sockets.py).
REDIS_URL = env_str("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Ingest knobs.
# Ingest memory is about: the decode budget (which the queue shares) + Studio itself (README,
# "Memory"). The defaults keep it under 400 MB for any input: a body of the smallest spans takes
# about 16x its size while it is decoded, so one maximum body of those is the whole budget.
STUDIO_MAX_BODY_BYTES = env_int("STUDIO_MAX_BODY_BYTES", 8 * 1024 * 1024, minimum=1024)
STUDIO_DECODE_BUDGET_BYTES = env_int(
    "STUDIO_DECODE_BUDGET_BYTES", 16 * STUDIO_MAX_BODY_BYTES, minimum=1024 * 1024
)
# Worker processes that decode bodies, so that ingest does not starve the pages of the GIL;
# 0 decodes in the server's threads.
STUDIO_DECODE_WORKERS = env_int("STUDIO_DECODE_WORKERS", 1, maximum=64)
STUDIO_MAX_QUEUE_SPANS = env_int("STUDIO_MAX_QUEUE_SPANS", 100_000, minimum=1)
# The niceness of ingest's threads and decoding processes (0 to 19; 0: as the pages'), so that
# under load the CPU serves the pages first.
STUDIO_INGEST_NICENESS = env_int("STUDIO_INGEST_NICENESS", 10, maximum=19)
# Spans of huge prompts would blow a span-count bound: the queue is bounded in bytes too.
STUDIO_MAX_QUEUE_BYTES = env_int(
    "STUDIO_MAX_QUEUE_BYTES", 4 * STUDIO_MAX_BODY_BYTES, minimum=STUDIO_MAX_BODY_BYTES
)
STUDIO_WRITE_TIMEOUT = env_int("STUDIO_WRITE_TIMEOUT", 60, minimum=1)

# The big traces' streamed tree data kept for their next readers (studio.tree_cache): about
# 50 bytes a span, so 32 MiB keeps four traces of 150,000 spans.
STUDIO_TREE_CACHE_BYTES = env_int("STUDIO_TREE_CACHE_BYTES", 32 * 1024 * 1024)

# Model prices added to or overriding the shipped table (tracing/prices.json).
STUDIO_PRICES_FILE = env_str("STUDIO_PRICES", "").strip()
STUDIO_PRICES = env_prices("STUDIO_PRICES")

# Request bodies: Django reads (and spools to disk) a whole body before any view runs, so the ASGI
# guard (ingest/asgi.py) bounds every path first. OTLP paths take STUDIO_MAX_BODY_BYTES (their
# views answer 413 in OTLP's encoding), /trpc/* its own limit, every other path Django's default.
STUDIO_MAX_TRPC_BODY_BYTES = env_int("STUDIO_MAX_TRPC_BODY_BYTES", 8 * 1024 * 1024, minimum=1024)
STUDIO_MAX_OTHER_BODY_BYTES = global_settings.DATA_UPLOAD_MAX_MEMORY_SIZE
# Django's own check (a 400, on Content-Length) sits behind the guard: it must not refuse a tRPC
# body the guard admitted. The OTLP views read their bodies in a way it does not check.
DATA_UPLOAD_MAX_MEMORY_SIZE = max(STUDIO_MAX_OTHER_BODY_BYTES, STUDIO_MAX_TRPC_BODY_BYTES)

# Retention (tracing.retention): traces whose last span is older than this many days go, and then
# the oldest traces while more spans than the cap are kept; 0 turns a limit off. runstudio purges
# every STUDIO_RETENTION_INTERVAL seconds (0: only `manage.py purge` does).
STUDIO_RETENTION_DAYS = env_int("STUDIO_RETENTION_DAYS", 30, maximum=36500)
STUDIO_RETENTION_MAX_SPANS = env_int("STUDIO_RETENTION_MAX_SPANS", 1_000_000)
STUDIO_RETENTION_INTERVAL = env_int("STUDIO_RETENTION_INTERVAL", 300)
# Seconds between sweeps that finish AgentScope runs no process holds a socket for any more (a
# Studio process killed with -9 releases none); 0: only at start.
STUDIO_RUN_SWEEP_INTERVAL = env_int("STUDIO_RUN_SWEEP_INTERVAL", 60)

PORT = env_int("PORT", 3000, maximum=65535)
OTEL_GRPC_PORT = env_int("OTEL_GRPC_PORT", 4317, maximum=65535)
# Processes runstudio starts, sharing both ports; more than one needs REDIS_URL.
STUDIO_WORKERS = env_int("STUDIO_WORKERS", 1, minimum=1, maximum=64)

# Sign-in: `none` keeps a laptop zero-setup; anything reachable from other machines signs in.
# runstudio re-derives the default from its --host when STUDIO_AUTH is not set.
AUTH_MODES = ("none", "login")
STUDIO_AUTH_SET = bool(os.environ.get("STUDIO_AUTH", "").strip())
STUDIO_AUTH = env_choice("STUDIO_AUTH", "none" if is_loopback(HOST) else "login", AUTH_MODES)
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"
SESSION_COOKIE_AGE = env_int("STUDIO_SESSION_AGE", 14 * 24 * 3600, minimum=60)

# Password guessing (django-axes, counted in the database, so every worker and host sees the same
# counts): STUDIO_SIGNIN_FAILURES failed sign-ins from one client address within
# STUDIO_SIGNIN_LOCKOUT seconds of each other lock that address out of sign-in until
# STUDIO_SIGNIN_LOCKOUT seconds after its last counted failure (429 "try again in ..."); attempts
# while locked out neither count nor prolong it. By address only, not by username: a lock per
# username would let anyone lock any user out of Studio from anywhere.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_FAILURE_LIMIT = env_int("STUDIO_SIGNIN_FAILURES", 10, minimum=1)
AXES_COOLOFF_TIME = timedelta(seconds=env_int("STUDIO_SIGNIN_LOCKOUT", 900, minimum=1))
AXES_LOCKOUT_PARAMETERS = ["ip_address"]
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# A success does not forgive an address its failures: an attacker with an account of their own
# could otherwise sign in between guesses.
AXES_RESET_ON_SUCCESS = False
AXES_LOCKOUT_CALLABLE = "accounts.views.locked_out"
AXES_CLIENT_IP_CALLABLE = "accounts.views.client_address"
AXES_ENABLE_ADMIN = False

LOG_LEVEL = env_choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # One line per request passed on between workers (runs/affinity.py) is noise.
        "httpx": {"level": "WARNING"},
        # django-axes announces itself at start; its warnings (each failed sign-in) stay.
        "axes": {"level": "WARNING"},
    },
}
