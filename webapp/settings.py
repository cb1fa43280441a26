"""Layercake's one settings module: environment variables in, defaults that run on one machine with no services."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


BASE_DIR = Path(__file__).resolve().parent.parent
# Every piece of local state (database, uploads, models, broker files) lives here.
LAYERCAKE_HOME = Path(os.environ.get("LAYERCAKE_HOME", BASE_DIR / "var")).resolve()
# Converted base models and downloaded files; shared between test runs so the GGUF conversion runs once.
LAYERCAKE_CACHE = Path(os.environ.get("LAYERCAKE_CACHE", LAYERCAKE_HOME / "cache")).resolve()

DEBUG = env_bool("DEBUG", False)


def read_secret_key() -> str:
    # No guessed fallback: the key comes from the environment or from the file `make setup` writes.
    if key := os.environ.get("SECRET_KEY"):
        return key
    key_file = LAYERCAKE_HOME / "secret_key"
    if key_file.exists():
        return key_file.read_text().strip()
    raise ImproperlyConfigured(
        f"SECRET_KEY is not set and {key_file} does not exist: run `make setup` or set SECRET_KEY."
    )


SECRET_KEY = read_secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    # Kept only so that the migration hashing its plaintext tokens into knox can run; it holds none since.
    "rest_framework.authtoken",
    "knox",
    "axes",
    "drf_spectacular",
    "django_htmx",
    "webapp.accounts",
    "webapp.catalog",
    "webapp.playground",
    "webapp.datasets",
    "jobs",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "webapp.accounts.middleware.PagesNeedLoginMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its 429 page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "webapp.urls"
WSGI_APPLICATION = "webapp.wsgi.application"

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
                "webapp.accounts.context_processors.signup_setting",
            ],
        },
    },
]

# Database: SQLite under LAYERCAKE_HOME unless DATABASE_URL says otherwise.
DATABASES = {
    "default": dj_database_url.config(
        env="DATABASE_URL",
        default=f"sqlite:///{LAYERCAKE_HOME / 'db.sqlite3'}",
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "0")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web and worker processes share the file: WAL lets readers run beside the writer,
    # and IMMEDIATE transactions avoid "database is locked" on lock upgrades.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not memory, so that a real worker process can reach the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(LAYERCAKE_HOME / "test-db.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(LAYERCAKE_HOME / "django-cache"),
        }
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if env_bool("LAYERCAKE_FAST_PASSWORD_HASHER", False):
    # Tests only: the default hasher costs ~0.3 s a login.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "catalog:list"
LOGOUT_REDIRECT_URL = "login"
# Off unless an operator opens it: a fresh install exposed to a network is not an open door.
LAYERCAKE_SIGNUP = env_bool("LAYERCAKE_SIGNUP", False)

# Password guessing (django-axes): after 5 wrong passwords for one username from one address, that pair is
# refused (429) for 15 minutes; a right password before the limit resets the count. Covers the admin login too.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = int(os.environ.get("LAYERCAKE_LOGIN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=int(os.environ.get("LAYERCAKE_LOGIN_COOLOFF_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "accounts/locked_out.html"
AXES_VERBOSE = False

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

# Files: local disk under LAYERCAKE_HOME by default, an S3 bucket when S3_BUCKET is set
# (needed once web and workers run on different machines).
MEDIA_ROOT = LAYERCAKE_HOME / "files"
S3_BUCKET = os.environ.get("S3_BUCKET", "")
if S3_BUCKET:
    default_storage: dict = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": S3_BUCKET,
            "endpoint_url": os.environ.get("S3_ENDPOINT_URL") or None,
            "region_name": os.environ.get("S3_REGION") or None,
            "access_key": os.environ.get("S3_ACCESS_KEY_ID") or None,
            "secret_key": os.environ.get("S3_SECRET_ACCESS_KEY") or None,
            "location": os.environ.get("S3_PREFIX", ""),
            "file_overwrite": False,
            "default_acl": None,
            "querystring_auth": True,
        },
    }
else:
    default_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": MEDIA_ROOT}}

STATIC_URL = "static/"
# Collected files exist only where `collectstatic` ran (compose image); elsewhere whitenoise uses the finders.
STATIC_ROOT = LAYERCAKE_HOME / "static" if env_bool("LAYERCAKE_COLLECTED_STATIC", False) else None
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": default_storage,
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if env_bool("LAYERCAKE_COLLECTED_STATIC", False)
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
# Without collectstatic (make run, tests) whitenoise serves straight from the finders.
WHITENOISE_USE_FINDERS = not env_bool("LAYERCAKE_COLLECTED_STATIC", False)

# Uploads spool to disk after 2.5 MB and are streamed to storage in chunks.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_TEMP_DIR = os.environ.get("FILE_UPLOAD_TEMP_DIR") or None
LAYERCAKE_MAX_UPLOAD_MB = int(os.environ.get("LAYERCAKE_MAX_UPLOAD_MB", "2048"))
# Storage each user may fill with datasets, models, GGUF exports and job checkpoints (webapp.accounts.quota); 0: unlimited.
LAYERCAKE_USER_QUOTA_MB = int(os.environ.get("LAYERCAKE_USER_QUOTA_MB", "20480"))

# Security headers; `manage.py check --deploy` is clean when HTTPS is on (LAYERCAKE_HTTPS=1).
HTTPS = env_bool("LAYERCAKE_HTTPS", False)
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = 31_536_000 if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS else None
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# Content-Security-Policy (django-csp): scripts only from our own static files (no inline script, no eval,
# no CDN); inline style attributes stay allowed for the bars and progress widths the templates draw.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "font-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: an anonymous call gets 401 with a WWW-Authenticate header.
        # Hashed tokens (knox); an address that keeps sending wrong ones is refused for a while (429).
        "webapp.accounts.authentication.GuardedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "webapp.api.errors.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": None,
}
# API tokens: stored as SHA-512 digests (knox), shown once, valid until revoked on the Account page.
REST_KNOX = {"TOKEN_TTL": None, "TOKEN_PREFIX": "lc_", "AUTH_HEADER_PREFIX": "Token"}
# Wrong API tokens from one address before it is refused, and for how long.
LAYERCAKE_TOKEN_FAILURE_LIMIT = int(os.environ.get("LAYERCAKE_TOKEN_FAILURE_LIMIT", "20"))
LAYERCAKE_TOKEN_COOLOFF_SECONDS = int(os.environ.get("LAYERCAKE_TOKEN_COOLOFF_SECONDS", "600"))

SPECTACULAR_SETTINGS = {
    "TITLE": "Layercake API",
    "DESCRIPTION": "No-code fine-tuning: datasets, jobs and the model catalog.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # Two models have a `kind` field with different choices: name their enums apart.
    "ENUM_NAME_OVERRIDES": {"ModelKindEnum": "webapp.catalog.models.Kind", "JobKindEnum": "jobs.models.Kind"},
}

# Celery: Redis when REDIS_URL is set, otherwise kombu's filesystem transport, a broker
# that needs no server (a real worker process still runs the tasks; never eager mode).
BROKER_DIR = LAYERCAKE_HOME / "broker"
CELERY_BROKER_URL = REDIS_URL or "filesystem://"
LONGEST_JOB_SECONDS = int(os.environ.get("LAYERCAKE_LONGEST_JOB_SECONDS", str(24 * 3600)))
if REDIS_URL:
    CELERY_BROKER_TRANSPORT_OPTIONS: dict = {
        # Longer than the longest job, or Redis hands an unacked job to a second worker.
        "visibility_timeout": LONGEST_JOB_SECONDS + 3600,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
        # kombu polls the folder; its 1 s default alone would add a second to every job's start.
        "polling_interval": 0.1,
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "cpu"
# Queues are hardware: `cpu` for imports and profiling; `gpu` for training, chosen per job (a CPU job goes to
# `cpu`); `checks` for dataset checks, on a worker of their own so that an upload is never checked behind
# a training job, nor a job started behind hundreds of checks.
CHECKS_QUEUE = "checks"
CELERY_TASK_ROUTES = {
    "webapp.datasets.*": {"queue": CHECKS_QUEUE},
    # The periodic check too: on the training worker it would wait behind the very job it must watch.
    "jobs.tasks.check_jobs": {"queue": CHECKS_QUEUE},
    "webapp.*": {"queue": "cpu"},
}
CELERY_TASK_SOFT_TIME_LIMIT = LONGEST_JOB_SECONDS
CELERY_TASK_TIME_LIMIT = LONGEST_JOB_SECONDS + 300
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE = {
    # The database is the source of truth: end or resume jobs whose worker vanished, re-send lost messages.
    "check-jobs": {"task": "jobs.tasks.check_jobs", "schedule": 5.0},
}

# Workers heartbeat every LAYERCAKE_HEARTBEAT_SECONDS; a running job without a heartbeat for
# LAYERCAKE_STALE_JOB_SECONDS is re-queued (up to LAYERCAKE_MAX_ATTEMPTS attempts in all).
# Detection within 30 s: a beat every 5 s, stale after 25 s, checked every 5 s. A worker restarted under the
# same name (make run's supervisor) gives its jobs back at once (jobs.worker_registry).
LAYERCAKE_HEARTBEAT_SECONDS = int(os.environ.get("LAYERCAKE_HEARTBEAT_SECONDS", "5"))
LAYERCAKE_STALE_JOB_SECONDS = int(os.environ.get("LAYERCAKE_STALE_JOB_SECONDS", "25"))
LAYERCAKE_WORKER_OFFLINE_AFTER_SECONDS = int(os.environ.get("LAYERCAKE_WORKER_OFFLINE_AFTER_SECONDS", "60"))
LAYERCAKE_MAX_ATTEMPTS = int(os.environ.get("LAYERCAKE_MAX_ATTEMPTS", "3"))
LAYERCAKE_RESEND_AFTER_SECONDS = int(os.environ.get("LAYERCAKE_RESEND_AFTER_SECONDS", "600"))
# Checkpoints of jobs that ended failed or cancelled are deleted (disk and bucket) this many hours after the job ended,
# by the same periodic check (jobs.retention); 0: at the next check. Nothing resumes from them: a retry starts afresh.
LAYERCAKE_CHECKPOINT_RETENTION_HOURS = int(os.environ.get("LAYERCAKE_CHECKPOINT_RETENTION_HOURS", "72"))
# The same check recovers the other background work (webapp.lib.background sends it all): a dataset check,
# playground run or deployment profile gets LAYERCAKE_MAX_SENDS messages, then ends with a reason. A check
# still running past the task's hard time limit (3720 s) lost its worker. A playground run still queued
# LAYERCAKE_PLAYGROUND_RESEND_AFTER_SECONDS after its message is re-sent; one running for
# LAYERCAKE_PLAYGROUND_STUCK_SECONDS lost its inference worker and fails. A profile measuring for
# LAYERCAKE_PROFILE_STUCK_SECONDS lost its worker.
LAYERCAKE_MAX_SENDS = int(os.environ.get("LAYERCAKE_MAX_SENDS", "3"))
LAYERCAKE_CHECK_STUCK_SECONDS = int(os.environ.get("LAYERCAKE_CHECK_STUCK_SECONDS", "3900"))
LAYERCAKE_PLAYGROUND_RESEND_AFTER_SECONDS = int(os.environ.get("LAYERCAKE_PLAYGROUND_RESEND_AFTER_SECONDS", "60"))
LAYERCAKE_PLAYGROUND_STUCK_SECONDS = int(os.environ.get("LAYERCAKE_PLAYGROUND_STUCK_SECONDS", "600"))
LAYERCAKE_PROFILE_STUCK_SECONDS = int(os.environ.get("LAYERCAKE_PROFILE_STUCK_SECONDS", "3600"))
# Measure the deployment table (three ways to run it) for every new derived model on a cpu worker.
LAYERCAKE_PROFILE_DERIVED_MODELS = env_bool("LAYERCAKE_PROFILE_DERIVED_MODELS", True)
# The playground's inference worker keeps this many base models, and this many adapters over them, loaded.
LAYERCAKE_RESIDENT_MODELS = int(os.environ.get("LAYERCAKE_RESIDENT_MODELS", "2"))
LAYERCAKE_RESIDENT_ADAPTERS = int(os.environ.get("LAYERCAKE_RESIDENT_ADAPTERS", "16"))
# Training device for workers: auto (CUDA when present), cpu or cuda.
LAYERCAKE_TRAINING_DEVICE = os.environ.get("LAYERCAKE_TRAINING_DEVICE", "auto")
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # django-axes logs every login at INFO; failures and lockouts (WARNING) are what an operator needs.
    "loggers": {"django.db.backends": {"level": "WARNING"}, "axes": {"level": "WARNING"}},
}
