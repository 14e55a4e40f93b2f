"""Settings classes that read the environment when they are instantiated, never at import."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
VAR_DIR = ROOT / "var"
# The email layouts (DESIGN.md: top-level templates/emails/), found from the application's
# root here and nowhere else; EMAIL_TEMPLATES_DIR moves them (an installed package).
EMAIL_TEMPLATES_DIR = ROOT / "templates" / "emails"

TRANSPORTS = ("outbox", "smtp", "sendgrid")
# Retention periods are whole days up to ten years: a slip such as 90000 is refused, not obeyed.
MAX_RETENTION_DAYS = 3650
DEV_SECRET = "dev-only-insecure-secret-key-change-me"  # noqa: S105 - refused in production


class ConfigError(RuntimeError):
    """A setting is missing or wrong; raised at start-up so the process fails at once."""


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from exc


def _float(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc
    if not value >= 0:  # also refuses NaN
        raise ConfigError(f"{name} must be zero or more, got {raw!r}")
    return value


def _host_ports(environ: Mapping[str, str], name: str) -> list[tuple[str, int]]:
    """A comma-separated list of host:port pairs (IPv6 hosts in brackets)."""
    pairs: list[tuple[str, int]] = []
    for item in (environ.get(name) or "").split(","):
        item = item.strip()
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{name} must list host:port pairs separated by commas; got {item!r}")
        pairs.append((host, int(port)))
    return pairs


# A run of this many digits may be an integer beyond 64 bits, which orjson reads as a float.
_LONG_NUMBER = re.compile(rb"\d{19}")


def read_json(data: bytes | str) -> Any:
    """A jsonb value as `json.loads` reads it, by orjson when that is the same thing.

    A send reads every recipient's `attributes` (~1.9 µs a row with json.loads, ~0.3 µs
    this way). orjson reads integers beyond 64 bits as floats where json.loads keeps them
    whole, and refuses what json.loads may take (1e400); those go to json.loads.
    """
    raw = data.encode() if isinstance(data, str) else data
    if _LONG_NUMBER.search(raw) is None:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return json.loads(raw)


def url_host(host: str) -> str:
    """A host as it goes into a URL: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


def normalise_database_url(url: str) -> str:
    """Point plain PostgreSQL URLs at psycopg 3, the driver Rallypoint ships with."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class BaseConfig:
    """Settings shared by every environment.

    Args:
        environ: the environment to read; ``os.environ`` when omitted. Tests pass a dict.
    """

    ENV_NAME = "base"
    DEBUG = False
    TESTING = False
    DEV_TOOLS = False  # the development inbox page (/dev/outbox)
    # List-Unsubscribe headers on an http PUBLIC_BASE_URL, so one-click unsubscribe can be
    # tried on http://localhost. RFC 8058 asks for https: never in production.
    ONE_CLICK_OVER_HTTP = False

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env: Mapping[str, str] = os.environ if environ is None else environ
        self.environ = env
        self._read_core(env)
        self._read_sendgrid(env)
        self._read_tracking(env)
        self._read_delivery(env)
        self._read_places(env)
        self._read_web(env)
        self._set_api()

    def _read_core(self, env: Mapping[str, str]) -> None:
        """Secrets, the database, Redis and the public address."""
        self.SECRET_KEY: str | None = env.get("SECRET_KEY") or self.default_secret()
        # Older secrets stay valid for verifying tracking links already sent (rotation).
        self.SECRET_KEY_FALLBACKS: list[str] = [
            s for s in env.get("SECRET_KEY_FALLBACKS", "").split(",") if s.strip()
        ]
        default_db = f"sqlite:///{VAR_DIR / 'rallypoint.db'}"
        self.SQLALCHEMY_DATABASE_URI = normalise_database_url(
            env.get("DATABASE_URL") or self.default_database_url() or default_db
        )
        # Behind PgBouncer in transaction pooling mode (DATABASE_URL names PgBouncer): the
        # connection that runs `flask db upgrade` (DATABASE_DIRECT_URL, PostgreSQL itself), and
        # no server-side prepared statements (PgBouncer before 1.21 cannot keep them).
        # docs/operations.md, "PgBouncer", lists what else needs session state and why none of
        # it breaks in transaction mode.
        self.DATABASE_DIRECT_URL = normalise_database_url(env.get("DATABASE_DIRECT_URL") or "")
        self.DATABASE_TRANSACTION_POOLING = _bool(
            env.get("DATABASE_TRANSACTION_POOLING"), bool(self.DATABASE_DIRECT_URL)
        )
        # A read-only replica for the CSV exports (members, a campaign's outcomes, an
        # import's issues): they read whole tables and can lag the primary by its delay.
        self.DATABASE_REPLICA_URL = normalise_database_url(env.get("DATABASE_REPLICA_URL") or "")
        self.SQLALCHEMY_ENGINE_OPTIONS: dict[str, Any] = self._engine_options()
        self.SQLALCHEMY_BINDS: dict[str, Any] = (
            {"replica": {"url": self.DATABASE_REPLICA_URL, **self._engine_options()}}
            if self.DATABASE_REPLICA_URL
            else {}
        )
        self.REDIS_URL = env.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
        # Redis through Sentinel (several hosts): "host:port,host:port" of the Sentinels and
        # the name they monitor the master under. Set, it replaces REDIS_URL everywhere: the
        # broker (Celery's sentinel transport), locks, the send-rate bucket, the tracking
        # stream and the login rate limits (app/infra/redis_client.py builds every client).
        self.REDIS_SENTINELS: list[tuple[str, int]] = _host_ports(env, "REDIS_SENTINELS")
        self.REDIS_SENTINEL_MASTER = env.get("REDIS_SENTINEL_MASTER") or "rallypoint"
        self.REDIS_PASSWORD = env.get("REDIS_PASSWORD") or None
        self.REDIS_SENTINEL_PASSWORD = env.get("REDIS_SENTINEL_PASSWORD") or None
        self.REDIS_DB = _int(env, "REDIS_DB", 0)
        self.PUBLIC_BASE_URL = (env.get("PUBLIC_BASE_URL") or "http://localhost:5000").rstrip("/")

    def _read_sendgrid(self, env: Mapping[str, str]) -> None:
        """The mail transport, SendGrid's API and its signed Event Webhook."""
        self.MAIL_TRANSPORT = (env.get("MAIL_TRANSPORT") or "outbox").strip().lower()
        self.SENDGRID_API_KEY = env.get("SENDGRID_API_KEY") or ""
        self.SENDGRID_API_HOST = (
            env.get("SENDGRID_API_HOST") or "https://api.sendgrid.com"
        ).rstrip("/")
        self.SENDGRID_WEBHOOK_PUBLIC_KEY = env.get("SENDGRID_WEBHOOK_PUBLIC_KEY") or ""
        # Signed Event Webhook: refuse timestamps further than this from our clock (replays).
        self.SENDGRID_WEBHOOK_MAX_AGE = _int(env, "SENDGRID_WEBHOOK_MAX_AGE", 600)

    def _read_tracking(self, env: Mapping[str, str]) -> None:
        """The tracking buffer, retention of personal data in events, machine-open ranges."""
        # Tracking hits wait this long in the web process before one pipelined XADD; a hard
        # kill of a web worker can lose at most this window of that worker's hits.
        self.TRACKING_FLUSH_MS = _int(env, "TRACKING_FLUSH_MS", 20)
        # Added to the flusher thread's nice value (0-19; 0: no change): see
        # workers/tasks/tracking.py.
        self.TRACKING_FLUSH_NICE = _int(env, "TRACKING_FLUSH_NICE", 10)
        # When Redis and the database are both down, web processes write tracking hits here
        # (past a bounded number in memory) and send them on once either is back.
        self.TRACKING_SPILL_DIR = env.get("TRACKING_SPILL_DIR") or str(VAR_DIR / "tracking-spill")
        # Retention (app/services/stats/retention.py): open and click events lose the member's IP
        # address and user agent after TRACKING_DETAIL_DAYS; processed raw Event Webhook
        # batches (addresses, IPs, user agents) are deleted after WEBHOOK_BATCH_DAYS.
        self.TRACKING_DETAIL_DAYS = _int(env, "TRACKING_DETAIL_DAYS", 90)
        self.WEBHOOK_BATCH_DAYS = _int(env, "WEBHOOK_BATCH_DAYS", 30)
        # Apple's Private Relay egress ranges (`flask tracking load-apple-ranges` writes it);
        # the small sample shipped in app/data is used until then.
        self.APPLE_RANGES_FILE = env.get("APPLE_RANGES_FILE") or str(
            VAR_DIR / "data" / "apple_mpp_egress.csv"
        )
        # A bare "hello" route for benchmarks/tracking.py; never on in production.
        self.BENCH_ROUTES = _bool(env.get("RALLYPOINT_BENCH"))

    def _read_delivery(self, env: Mapping[str, str]) -> None:
        """SMTP, SendGrid's timeouts, and the sender's batches, sweeps and patience."""
        self.SMTP_HOST = env.get("SMTP_HOST") or "localhost"
        self.SMTP_PORT = _int(env, "SMTP_PORT", 587)
        self.SMTP_USERNAME = env.get("SMTP_USERNAME") or ""
        self.SMTP_PASSWORD = env.get("SMTP_PASSWORD") or ""
        self.SMTP_SECURITY = (env.get("SMTP_SECURITY") or "starttls").lower()  # starttls|ssl|none
        self.SMTP_TIMEOUT = _float(env, "SMTP_TIMEOUT", 30.0)
        # A connection that cannot be opened in a few seconds will not open: retry the batch
        # soon. Once the request is sent, SendGrid answers a 1,000-recipient batch in about a
        # second; waiting 30 s covers a slow day without holding a worker for long.
        self.SENDGRID_CONNECT_TIMEOUT = _float(env, "SENDGRID_CONNECT_TIMEOUT", 3.0)
        self.SENDGRID_READ_TIMEOUT = _float(env, "SENDGRID_READ_TIMEOUT", 30.0)
        # Sending (app/services/sending): batch size (SendGrid takes at most 1,000 recipients
        # a request), how often beat ticks and sweeps, how long a claimed batch's lease lives
        # without a refresh (a worker that died is noticed after that plus a sweep), when a
        # claimed batch is declared 'unknown' whatever its lease says (longer than any batch
        # can take), when a campaign without progress has its batches queued again (a lost
        # broker message), how long after its claim a batch in doubt with no SendGrid event
        # may be judged never to have arrived, and how many failed batches in a row pause a
        # campaign.
        self.SEND_BATCH_SIZE = min(max(_int(env, "SEND_BATCH_SIZE", 1000), 1), 1000)
        self.SCHEDULER_TICK_SECONDS = _float(env, "SCHEDULER_TICK_SECONDS", 5.0)
        self.SEND_SWEEP_SECONDS = _float(env, "SEND_SWEEP_SECONDS", 5.0)
        self.SEND_LEASE_SECONDS = _float(env, "SEND_LEASE_SECONDS", 6.0)
        self.SEND_STUCK_SECONDS = _float(env, "SEND_STUCK_SECONDS", 300.0)
        self.SEND_STALL_SECONDS = _float(env, "SEND_STALL_SECONDS", 30.0)
        self.SEND_UNKNOWN_WINDOW_SECONDS = _float(env, "SEND_UNKNOWN_WINDOW_SECONDS", 600.0)
        self.SEND_MAX_FAILED_BATCHES = max(_int(env, "SEND_MAX_FAILED_BATCHES", 3), 1)

    def _read_places(self, env: Mapping[str, str]) -> None:
        """Where files go and come from, the organization's default zone, logging."""
        self.OUTBOX_DIR = env.get("OUTBOX_DIR") or str(VAR_DIR / "outbox")
        self.EMAIL_TEMPLATES_DIR = env.get("EMAIL_TEMPLATES_DIR") or str(EMAIL_TEMPLATES_DIR)
        # Uploaded member CSV files wait here for the import task: web and workers share it.
        self.IMPORT_DIR = env.get("IMPORT_DIR") or str(VAR_DIR / "imports")
        # Public subscribe forms, per client address.
        self.SUBSCRIBE_RATE_LIMIT = env.get("SUBSCRIBE_RATE_LIMIT") or "5 per minute;30 per hour"
        # Hosted petitions never refuse a signature for its address (a union hall signs from
        # one): past this many signatures of one petition from one address in an hour, the
        # rest are flagged for review (app/services/actions/abuse.py). 0 turns it off.
        self.ACTION_IP_FLAG_THRESHOLD = _int(env, "ACTION_IP_FLAG_THRESHOLD", 200)
        self.TIMEZONE = env.get("RALLYPOINT_TIMEZONE") or "America/Edmonton"
        self.LOG_LEVEL = (env.get("LOG_LEVEL") or "INFO").upper()

    def _read_web(self, env: Mapping[str, str]) -> None:
        """Rate limits, proxies, CSRF, cookies and sessions, upload sizes."""
        self.LOGIN_RATE_LIMIT = env.get("LOGIN_RATE_LIMIT") or "10 per minute;50 per hour"
        self.RATELIMIT_ENABLED = _bool(env.get("RATELIMIT_ENABLED"), True)
        # Reverse proxies in front of the web process (a load balancer, nginx, Heroku's
        # router: 1). Each appends the client address to X-Forwarded-For; only that many
        # entries, counted from the right, are believed. 0: the header is ignored, so nobody
        # can claim another address to dodge a rate limit or fake an Apple proxy open.
        self.TRUSTED_PROXY_COUNT = _int(env, "TRUSTED_PROXY_COUNT", 0)
        self.RATELIMIT_STORAGE_URI = env.get("RATELIMIT_STORAGE_URI") or self._limiter_uri()
        self.RATELIMIT_STORAGE_OPTIONS: dict[str, Any] = (
            {
                # The master's password apart from the URI (limits does not unquote it).
                "password": self.REDIS_PASSWORD,
                "sentinel_kwargs": {"password": self.REDIS_SENTINEL_PASSWORD},
            }
            if self.REDIS_SENTINELS and not env.get("RATELIMIT_STORAGE_URI")
            else {}
        )
        self.RATELIMIT_HEADERS_ENABLED = True
        self.WTF_CSRF_ENABLED = True
        self.WTF_CSRF_TIME_LIMIT = 8 * 3600
        self.SESSION_COOKIE_HTTPONLY = True
        self.SESSION_COOKIE_SAMESITE = "Lax"
        self.SESSION_COOKIE_SECURE = _bool(
            env.get("SESSION_COOKIE_SECURE"), self.PUBLIC_BASE_URL.startswith("https://")
        )
        self.REMEMBER_COOKIE_HTTPONLY = True
        self.REMEMBER_COOKIE_SECURE = self.SESSION_COOKIE_SECURE
        self.REMEMBER_COOKIE_SAMESITE = "Lax"
        self.PERMANENT_SESSION_LIFETIME = timedelta(hours=12)
        # Webhook batches reach 768 KB; CSV uploads are larger and streamed to disk.
        self.MAX_CONTENT_LENGTH = _int(env, "MAX_UPLOAD_MB", 200) * 1024 * 1024

    def _set_api(self) -> None:
        """Celery's eager mode (never) and flask-smorest's OpenAPI document."""
        self.CELERY_TASK_ALWAYS_EAGER = False
        # flask-smorest / OpenAPI
        self.API_TITLE = "Rallypoint API"
        self.API_VERSION = "v1"
        self.OPENAPI_VERSION = "3.0.3"
        self.OPENAPI_URL_PREFIX = "/api/v1"
        self.OPENAPI_JSON_PATH = "openapi.json"
        self.OPENAPI_REDOC_PATH = "/docs"
        self.OPENAPI_REDOC_URL = None  # set by the factory to a locally served bundle or None
        self.API_SPEC_OPTIONS = {
            "components": {
                "securitySchemes": {
                    "bearerAuth": {"type": "http", "scheme": "bearer"},
                }
            },
            "security": [{"bearerAuth": []}],
        }

    def default_secret(self) -> str | None:
        return DEV_SECRET

    def default_database_url(self) -> str | None:
        return None

    def _limiter_uri(self) -> str:
        """flask-limiter's storage: REDIS_URL, or the Sentinel-watched master (limits' URI)."""
        if not self.REDIS_SENTINELS:
            return self.REDIS_URL
        hosts = ",".join(f"{url_host(host)}:{port}" for host, port in self.REDIS_SENTINELS)
        return f"redis+sentinel://{hosts}/{self.REDIS_SENTINEL_MASTER}"

    def _engine_options(self) -> dict[str, Any]:
        if self.SQLALCHEMY_DATABASE_URI.startswith("sqlite"):
            # Web, worker and beat share the file: wait for locks instead of failing at once.
            return {"connect_args": {"timeout": 30}}
        options: dict[str, Any] = {
            "pool_pre_ping": True,
            "pool_size": 5,
            "max_overflow": 10,
            "json_deserializer": read_json,
        }
        if self.DATABASE_TRANSACTION_POOLING:
            # psycopg prepares a statement run five times on its connection; behind PgBouncer
            # in transaction mode the next transaction may reach another server connection,
            # where that prepared statement does not exist.
            options["connect_args"] = {"prepare_threshold": None}
        return options

    @property
    def is_sqlite(self) -> bool:
        return self.SQLALCHEMY_DATABASE_URI.startswith("sqlite")

    def validate(self) -> None:
        """Fail fast with a clear message when a setting makes the service unusable."""
        if self.MAIL_TRANSPORT not in TRANSPORTS:
            raise ConfigError(
                f"MAIL_TRANSPORT must be one of {', '.join(TRANSPORTS)}; "
                f"got {self.MAIL_TRANSPORT!r}"
            )
        if self.MAIL_TRANSPORT == "sendgrid" and not self.SENDGRID_API_KEY:
            raise ConfigError("MAIL_TRANSPORT=sendgrid needs SENDGRID_API_KEY")
        if not self.PUBLIC_BASE_URL.startswith(("http://", "https://")):
            raise ConfigError("PUBLIC_BASE_URL must start with http:// or https://")
        if not 0 <= self.TRUSTED_PROXY_COUNT <= 5:
            raise ConfigError(
                "TRUSTED_PROXY_COUNT must be 0 (no proxy) to 5, the number of reverse proxies "
                f"in front of the web process; got {self.TRUSTED_PROXY_COUNT}"
            )
        if not 0 <= self.TRACKING_FLUSH_NICE <= 19:
            raise ConfigError(
                "TRACKING_FLUSH_NICE must be 0 (no change) to 19, added to the tracking "
                f"flusher's nice value; got {self.TRACKING_FLUSH_NICE}"
            )
        if self.REDIS_SENTINELS and not 0 <= self.REDIS_DB <= 15:
            raise ConfigError(f"REDIS_DB must be a database number 0 to 15; got {self.REDIS_DB}")
        for name in ("DATABASE_DIRECT_URL", "DATABASE_REPLICA_URL"):
            url = getattr(self, name)
            if url and not url.startswith("postgresql"):
                raise ConfigError(f"{name} must be a postgresql:// URL; got {url.split(':')[0]}:")
        for name in ("TRACKING_DETAIL_DAYS", "WEBHOOK_BATCH_DAYS"):
            days = getattr(self, name)
            if not 1 <= days <= MAX_RETENTION_DAYS:
                raise ConfigError(
                    f"{name} must be a number of days from 1 to {MAX_RETENTION_DAYS}; got {days}"
                )
        # A stored batch's signature is the durable replay guard: it must outlive the window
        # in which a replayed post would still be accepted.
        if self.WEBHOOK_BATCH_DAYS * 86400 <= self.SENDGRID_WEBHOOK_MAX_AGE:
            raise ConfigError(
                f"WEBHOOK_BATCH_DAYS ({self.WEBHOOK_BATCH_DAYS}) must keep webhook batches longer "
                f"than SENDGRID_WEBHOOK_MAX_AGE ({self.SENDGRID_WEBHOOK_MAX_AGE} s)"
            )

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in dir(self) if k.isupper()}


class DevelopmentConfig(BaseConfig):
    """`make run`: SQLite by default, outbox transport, the development inbox page."""

    ENV_NAME = "development"
    DEBUG = False  # the reloader/debugger are not used under honcho; DEV_TOOLS turns on the inbox
    DEV_TOOLS = True
    ONE_CLICK_OVER_HTTP = True


class TestingConfig(BaseConfig):
    """The test suite: real PostgreSQL and Redis, given by the fixtures."""

    ENV_NAME = "testing"
    __test__ = False  # not a pytest test class despite the name
    TESTING = True
    DEV_TOOLS = True
    ONE_CLICK_OVER_HTTP = True

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        super().__init__(environ)
        self.PASSWORD_HASH_FAST = True


class ProductionConfig(BaseConfig):
    """Production: every secret comes from the environment."""

    ENV_NAME = "production"
    DEV_TOOLS = False
    ONE_CLICK_OVER_HTTP = False  # RFC 8058: https only, whatever PUBLIC_BASE_URL says

    def default_secret(self) -> str | None:
        return None

    def validate(self) -> None:
        if not self.SECRET_KEY:
            raise ConfigError(
                "SECRET_KEY is not set. Rallypoint signs sessions, tracking and unsubscribe links "
                "with it; set SECRET_KEY to a long random value (e.g. `python -c 'import secrets; "
                "print(secrets.token_urlsafe(48))'`) before starting in production."
            )
        if self.SECRET_KEY == DEV_SECRET or len(self.SECRET_KEY) < 32:
            raise ConfigError(
                "SECRET_KEY is too weak for production: use at least 32 random characters."
            )
        if "DATABASE_URL" not in self.environ:
            raise ConfigError("DATABASE_URL is not set; production runs on PostgreSQL.")
        super().validate()


CONFIGS: dict[str, type[BaseConfig]] = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def config_from_env(environ: Mapping[str, str] | None = None) -> BaseConfig:
    """Pick the settings class named by RALLYPOINT_ENV (development by default) and build it."""
    env = os.environ if environ is None else environ
    name = (env.get("RALLYPOINT_ENV") or "development").lower()
    try:
        cls = CONFIGS[name]
    except KeyError as exc:
        raise ConfigError(
            f"RALLYPOINT_ENV must be one of {', '.join(CONFIGS)}; got {name!r}"
        ) from exc
    return cls(env)
