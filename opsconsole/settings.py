"""OpsConsole settings, all read from the environment.

Every variable has a default that is safe for the local demo (SQLite under var/,
in-process tasks, no services). Production sets DEBUG=0 and the secrets; the README's
configuration table lists every variable.
"""

import importlib.util
import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("OPSCONSOLE_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "")
    return float(value) if value.strip() else default


def env_list(name: str, default: str) -> list[str]:
    return [
        part.strip()
        for part in os.environ.get(name, default).split(",")
        if part.strip()
    ]


DEBUG = env_bool("DEBUG", True)

_DEMO_SECRET_KEY = "django-insecure-demo-only-do-not-use-in-production"  # noqa: S105
SECRET_KEY = os.environ.get("SECRET_KEY") or (_DEMO_SECRET_KEY if DEBUG else "")
if not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG=0.")


def _secret_from_var(name: str, env_name: str) -> str:
    """A secret from the environment; in DEBUG, one generated once into var/."""
    value = os.environ.get(env_name, "")
    if value:
        return value
    if not DEBUG:
        raise ImproperlyConfigured(f"{env_name} must be set when DEBUG=0.")
    path = VAR_DIR / name
    if not path.exists():
        import secrets

        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


# Customer ids are stored only as HMAC-SHA256 with this key (contract, Identifiers).
CUSTOMER_ID_HMAC_KEY = _secret_from_var("customer-id-hmac.key", "CUSTOMER_ID_HMAC_KEY")
# An open deletion request keeps the raw id AES-GCM-encrypted with this key (64 hex
# digits) until every downstream has acknowledged (contract, Privacy).
CUSTOMER_ID_ENCRYPTION_KEY = _secret_from_var(
    "customer-id-encryption.key", "CUSTOMER_ID_ENCRYPTION_KEY"
)

ALLOWED_HOSTS = env_list(
    "ALLOWED_HOSTS", "127.0.0.1,localhost" + (",testserver" if DEBUG else "")
)
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "simple_history",
    "axes",
    "opsconsole",
    "overrides",
    "explanations",
    "privacy",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files are answered here, before the request context: no id, no metric.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "opsconsole.middleware.RequestContextMiddleware",
    "opsconsole.middleware.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # Before the session timeout, which leaves a "session expired" message.
    "django.contrib.messages.middleware.MessageMiddleware",
    "opsconsole.middleware.SessionTimeoutMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    "opsconsole.middleware.ApiTimezoneMiddleware",
    # Last: turns a locked-out login into the lockout page (429).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "opsconsole.urls"
WSGI_APPLICATION = "opsconsole.wsgi.application"

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
                "opsconsole.context_processors.console",
            ],
        },
    },
]

# Database: SQLite under var/ for the demo, any DATABASE_URL otherwise.
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'opsconsole.sqlite3'}",
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Wait for the write lock instead of failing at once when two requests write.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis: when unset, a local-memory cache and in-process Celery tasks.
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": os.environ.get("CACHE_KEY_PREFIX", "opsconsole"),
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 2, "SOCKET_TIMEOUT": 2},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL or "memory://")
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_QUEUE", "opsconsole")
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_BEAT_SCHEDULE = {
    "record-expired-rules": {
        "task": "overrides.tasks.record_expired_rules",
        "schedule": env_float("EXPIRY_SWEEP_SECONDS", 60.0),
    },
    "prune-change-log": {
        "task": "overrides.tasks.prune_change_log",
        "schedule": 3600.0,
    },
    "ensure-optout-mirror": {
        "task": "overrides.tasks.ensure_optout_mirror",
        "schedule": 60.0,
    },
    "rebuild-optout-mirror": {
        "task": "overrides.tasks.rebuild_optout_mirror",
        "schedule": 86400.0,
    },
    "delete-expired-predictions": {
        "task": "explanations.tasks.delete_expired_predictions",
        "schedule": 86400.0,
    },
    "sweep-deletion-requests": {
        "task": "privacy.tasks.sweep_deletion_requests",
        "schedule": env_float("DELETION_SWEEP_SECONDS", 60.0),
    },
    "deletion-deadline-digest": {
        "task": "privacy.tasks.send_deadline_digest",
        "schedule": 86400.0,
    },
}

_VALIDATORS_MODULE = "django.contrib.auth.password_validation"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": f"{_VALIDATORS_MODULE}.{name}"}
    for name in (
        "UserAttributeSimilarityValidator",
        "MinimumLengthValidator",
        "CommonPasswordValidator",
        "NumericPasswordValidator",
    )
]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
# Login throttling (django-axes): LOGIN_FAILURE_LIMIT failed sign-ins for one user
# name from one address lock that pair out for LOGIN_LOCKOUT_MINUTES, and
# LOGIN_ADDRESS_FAILURE_LIMIT from one address (any user names) lock the address
# out; the lockout page answers 429. Every failure and sign-in is recorded (admin:
# Axes). Behind TRUSTED_PROXY_COUNT reverse proxies the address comes from
# X-Forwarded-For (opsconsole.login_throttle), else it is REMOTE_ADDR.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_HANDLER = "opsconsole.login_throttle.AddressLimitedHandler"
AXES_CLIENT_IP_CALLABLE = "opsconsole.login_throttle.client_ip_address"
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
LOGIN_ADDRESS_FAILURE_LIMIT = env_int("LOGIN_ADDRESS_FAILURE_LIMIT", 50)
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429
AXES_ENABLE_ACCESS_FAILURE_LOG = True
AXES_VERBOSE = False
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "staticfiles"))
SHAP_RESOURCES = (
    Path(importlib.util.find_spec("shap").submodule_search_locations[0])
    / "plots"
    / "resources"
)
STATICFILES_DIRS = [
    BASE_DIR / "static",
    # shap's own force-plot bundle, served as {% static 'shap/bundle.js' %}; found
    # without importing shap, which is slow to import.
    ("shap", SHAP_RESOURCES),
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# Uploads: a bulk CSV is small; anything larger is refused before it is parsed.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 5 * 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = DATA_UPLOAD_MAX_MEMORY_SIZE
BULK_MAX_ROWS = env_int("BULK_MAX_ROWS", 5000)

# Override rules.
BOOST_MAX_FACTOR = env_float("BOOST_MAX_FACTOR", 5.0)
BOOST_MAX_DAYS = env_int("BOOST_MAX_DAYS", 90)
BOOST_DEFAULT_DAYS = env_int("BOOST_DEFAULT_DAYS", 14)
CHANGE_LOG_RETENTION_DAYS = env_int("CHANGE_LOG_RETENTION_DAYS", 14)

# Predictions and explanations.
PREDICTION_RETENTION_DAYS = env_int("PREDICTION_RETENTION_DAYS", 90)
EXPLANATION_PRECOMPUTE = env_bool("EXPLANATION_PRECOMPUTE", False)
EXPLAINER_MAX_SECONDS = env_float("EXPLAINER_MAX_SECONDS", 10.0)
MODEL_ARTIFACT_DIR = Path(os.environ.get("MODEL_ARTIFACT_DIR", VAR_DIR / "models"))

# Privacy: deletion requests and their downstream webhooks.
DELETION_DEADLINE_MONTHS = env_int("DELETION_DEADLINE_MONTHS", 1)  # GDPR Art. 12(3)
DELETION_EXTENSION_MONTHS = env_int("DELETION_EXTENSION_MONTHS", 2)
DELETION_FLAG_AFTER_DAYS = env_int("DELETION_FLAG_AFTER_DAYS", 20)
DOWNSTREAM_TIMEOUT_SECONDS = env_float("DOWNSTREAM_TIMEOUT_SECONDS", 10.0)
DOWNSTREAM_RETRY_BASE_SECONDS = env_float("DOWNSTREAM_RETRY_BASE_SECONDS", 10.0)
DOWNSTREAM_RETRY_MAX_SECONDS = env_float("DOWNSTREAM_RETRY_MAX_SECONDS", 3600.0)
# A task that has not finished this long after it was due is enqueued again.
DELETION_SWEEP_GRACE_SECONDS = env_float("DELETION_SWEEP_GRACE_SECONDS", 30.0)
DEADLINE_DIGEST_RECIPIENTS = env_list("DEADLINE_DIGEST_RECIPIENTS", "")
# Where people open the console, for links in e-mails.
CONSOLE_URL = os.environ.get("CONSOLE_URL", "http://127.0.0.1:8000")
EMAIL_BACKEND = os.environ.get(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "opsconsole@localhost")

# Serving read path.
API_KEY_RATE_LIMIT_PER_MINUTE = env_int("API_KEY_RATE_LIMIT_PER_MINUTE", 600_000)
SERVING_INSTANCE_ACTIVE_MINUTES = env_int("SERVING_INSTANCE_ACTIVE_MINUTES", 5)
SERVING_MAX_CANDIDATES = 10_000
SERVING_CHANGES_PAGE = env_int("SERVING_CHANGES_PAGE", 5_000)
SERVING_VERSION_MEMO_SECONDS = env_float("SERVING_VERSION_MEMO_SECONDS", 0.1)
OVERRIDES_CHANNEL = os.environ.get("OVERRIDES_CHANNEL", "opsconsole:overrides")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "opsconsole.auth.ApiKeyAuthentication",
        "opsconsole.auth.ConsoleSessionAuthentication",
    ],
    "DEFAULT_THROTTLE_CLASSES": ["opsconsole.auth.ApiKeyRateThrottle"],
    "DEFAULT_PERMISSION_CLASSES": ["opsconsole.permissions.RolePermission"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "opsconsole.pagination.ConsolePagination",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["opsconsole.parsers.LimitedJSONParser"],
    "EXCEPTION_HANDLER": "opsconsole.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "OpsConsole API",
    "DESCRIPTION": "Overrides, serving reads, privacy and explanations. "
    "The contract is shared/API_CONTRACT.md.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # One name for the opt-out kinds wherever they appear in the schema.
    "ENUM_NAME_OVERRIDES": {"OptOutKindEnum": "overrides.models.OptOutKind"},
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "opsconsole.schema.query_text_without_nul",
    ],
}

# Security: production (DEBUG=0) passes `manage.py check --deploy` with no warning.
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# Absolute limit after signing in, and idle limit (opsconsole.middleware).
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 8 * 3600)
SESSION_IDLE_SECONDS = env_int("SESSION_IDLE_SECONDS", 30 * 60)


def _inline_style_hashes(bundle: Path) -> list[str]:
    """CSP hashes of the fixed <style> elements shap's force plot renders.

    shap's React components draw their own `<style>` (constant CSS for the axes);
    allowing exactly those stylesheets by hash keeps 'unsafe-inline' out of the
    policy. Read from the installed bundle, so an upgrade of shap follows.
    """
    import base64
    import hashlib
    import json
    import re

    try:
        source = bundle.read_text(encoding="utf-8")
    except OSError:
        return []
    styles = re.findall(
        r'createElement\("style",\{dangerouslySetInnerHTML:\{__html:("(?:[^"\\]|\\.)*")\}',
        source,
    )
    return [
        "'sha256-"
        + base64.b64encode(hashlib.sha256(json.loads(css).encode()).digest()).decode()
        + "'"
        for css in styles
    ]


# No inline script or style anywhere (tests/browser/test_csp.py checks the pages)
# but shap's two fixed force-plot stylesheets, allowed by hash; data: images are
# the favicon and Swagger UI's icons.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, *_inline_style_hashes(SHAP_RESOURCES / "bundle.js")],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    if env_bool("TRUST_X_FORWARDED_PROTO", False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]

# Logs: JSON lines with the request id in production (LOG_FORMAT=json), plain text
# for the demo; every line of a request carries its id either way.
LOG_FORMAT = os.environ.get("LOG_FORMAT", "plain" if DEBUG else "json")
LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "opsconsole.logs.RequestIdFilter"}},
    "formatters": {
        "plain": {
            "format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
        },
        "json": {"()": "opsconsole.logs.ConsoleJsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # One line per request from RequestContextMiddleware (about 20 µs each);
        # ACCESS_LOG=0 or LOG_LEVEL=WARNING: none. Successful serving reads only
        # with ACCESS_LOG_SERVING=1 (ACCESS_LOG_SERVING below).
        "opsconsole.access": {
            "level": LOG_LEVEL if env_bool("ACCESS_LOG", not DEBUG) else "WARNING"
        },
        # runserver's own access lines repeat the middleware's.
        "django.server": {"level": "WARNING" if not DEBUG else "INFO"},
    },
}
# Successful (2xx/304) requests under /api/v1/serving/ get no access line unless
# this is on: they are the hot path and /metrics counts them; failures are logged.
ACCESS_LOG_SERVING = env_bool("ACCESS_LOG_SERVING", False)
# The worker logs through LOGGING too (JSON lines, with the enqueuing request's id).
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
