"""Studio settings: every knob is an environment variable with a sensible default.

The helpers below fail loudly on a bad value, so a typo in a deployment is an error at start-up,
not a silently ignored setting.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
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


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return value


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


DATA_DIR = Path(env_str("STUDIO_DATA_DIR", str(BASE_DIR / "data"))).expanduser().resolve()

# Studio is a local developer tool first: a fixed key is fine there, and a deployment sets one.
SECRET_KEY = env_str("SECRET_KEY", "studio-insecure-local-development-key-change-me-in-production")
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["*"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

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
            ],
        },
    },
]

_default_db = f"sqlite:///{DATA_DIR / 'studio.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(env_str("DATABASE_URL", _default_db))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # WAL lets pages read while the writer commits; IMMEDIATE avoids lock upgrades failing.
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": (
            "PRAGMA journal_mode=WAL;"
            "PRAGMA synchronous=NORMAL;"
            "PRAGMA busy_timeout=20000;"
            "PRAGMA cache_size=-65536;"
            "PRAGMA temp_store=MEMORY;"
        ),
    }
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    # A file, not Django's shared in-memory database: the writer thread and the server threads
    # of the tests each open their own connection to it. One per process, so that test runs
    # side by side do not share it.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / f"test-studio-{os.getpid()}.sqlite3")}
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env_int("CONN_MAX_AGE", 60)

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

_redis_url = env_str("REDIS_URL", "")
if _redis_url:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [_redis_url]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Ingest knobs.
STUDIO_MAX_BODY_BYTES = env_int("STUDIO_MAX_BODY_BYTES", 64 * 1024 * 1024, minimum=1024)
STUDIO_MAX_QUEUE_SPANS = env_int("STUDIO_MAX_QUEUE_SPANS", 100_000, minimum=1)
# Spans of huge prompts would blow a span-count bound: the queue is bounded in bytes too.
STUDIO_MAX_QUEUE_BYTES = env_int(
    "STUDIO_MAX_QUEUE_BYTES", 4 * STUDIO_MAX_BODY_BYTES, minimum=STUDIO_MAX_BODY_BYTES
)
STUDIO_WRITE_TIMEOUT = env_int("STUDIO_WRITE_TIMEOUT", 60, minimum=1)

# Django reads the body before our views see it; the receivers enforce their own limit with a
# proper 413, so Django's own (which answers 400) must not fire first.
DATA_UPLOAD_MAX_MEMORY_SIZE = None

HOST = env_str("STUDIO_HOST", "127.0.0.1")
PORT = env_int("PORT", 3000)
OTEL_GRPC_PORT = env_int("OTEL_GRPC_PORT", 4317)

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

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
