"""Settings of the mcpsite demo: SQLite and the in-memory channel layer unless the environment says otherwise.

Environment variables (all optional): DJANGO_SECRET_KEY, DJANGO_DEBUG, DJANGO_ALLOWED_HOSTS (comma
separated), DATABASE_URL-style settings are not parsed: set MCPSITE_POSTGRES_DB to use PostgreSQL (or
MCPSITE_SQLITE for another SQLite file), and MCPSITE_REDIS_URL to use Redis for the channel layer.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

# The demo's key is public; a real site must set DJANGO_SECRET_KEY.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "mcpsite-demo-insecure-key-change-me")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = [h for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h]

INSTALLED_APPS = [
    "daphne",  # its runserver serves the ASGI application, MCP endpoints included
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "oauth2_provider",  # the demo's OAuth 2.1 authorization server (mcp_app's "oauth" extra)
    "mcp_app",
    "mcpsite.demo",
    "mcpsite.library",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "mcpsite.urls"
ASGI_APPLICATION = "mcpsite.asgi.application"

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

if os.environ.get("MCPSITE_POSTGRES_DB"):
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ["MCPSITE_POSTGRES_DB"],
            "HOST": os.environ.get("MCPSITE_POSTGRES_HOST", "127.0.0.1"),
            "USER": os.environ.get("MCPSITE_POSTGRES_USER", "postgres"),
            "PASSWORD": os.environ.get("MCPSITE_POSTGRES_PASSWORD", ""),
            # Django's connection pool (psycopg_pool, the [postgres] extra): ORM work borrows a connection instead
            # of opening one (TCP and authentication) each time; CONN_MAX_AGE stays 0. Room for Django's thread
            # for sync code, the audit and session writers, the worker heartbeat and a few more at once.
            "OPTIONS": {"pool": {"min_size": 2, "max_size": 16, "timeout": 10}},
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("MCPSITE_SQLITE", BASE_DIR / "db.sqlite3"),
            # SQLite set up for a web server (Django 5.1+ OPTIONS): write-ahead logging (readers never wait for
            # the writer, a commit appends to the log instead of rewriting pages), fsync at checkpoints only
            # (synchronous=NORMAL: durable across a crash of the process, WAL-safe), and write transactions
            # that take the lock when they start, so two writers queue instead of failing "database is locked".
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
            },
        }
    }

if os.environ.get("MCPSITE_REDIS_URL"):
    # As the README recommends for many workers: no read timeout on the blocking receive (mcp_app.W003), and
    # room for bursts of the messages queued in Redis for one worker (all its streams together): each worker
    # moves them into its streams' bounded buffers (MCP_APP STREAM_BUFFER_BYTES, 1 MiB) at once, and a send
    # that finds the queue full is retried for 3 s before its POST gets 503, so a reading client never does.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": os.environ["MCPSITE_REDIS_URL"], "socket_timeout": None}], "capacity": 1000},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

MCP_APP = {
    "SERVER_NAME": "mcpsite",
    "SERVER_TITLE": "mcp_app demo site",
    "INSTRUCTIONS": "The mcp_app demo. Try the uppercase_text tool, and the library's data tools.",
    # Bearer tokens from the admin (or `manage.py mcp_token`), the admin's session cookie, and OAuth
    # access tokens from the authorization server below. Without credentials: 401, which starts a
    # client's OAuth flow.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "mcp_app.auth.BearerTokenAuthentication",
        "mcp_app.auth.SessionAuthentication",
        "mcp_app.contrib.oauth.OAuth2Authentication",
    ],
    "OAUTH_AUTHORIZATION_SERVERS": ["/o"],  # this site's django-oauth-toolkit: issuer <origin>/o
    # The MCP Inspector's web UI connects from the browser: let it (CORS).
    "ALLOWED_ORIGINS": ["http://localhost:6274", "http://127.0.0.1:6274"],
}

# The authorization server: django-oauth-toolkit with what MCP clients use (RFC 8414 metadata, dynamic
# client registration, PKCE, RFC 8707 resource indicators). Users sign in at /accounts/login/.
OAUTH2_PROVIDER = {
    "SCOPES": {"mcp": "Use this site's MCP server"},
    "DEFAULT_SCOPES": ["mcp"],
    "PKCE_REQUIRED": True,
    "ACCESS_TOKEN_EXPIRE_SECONDS": 3600,
    "DCR_ENABLED": True,
    # MCP clients register themselves before any user signs in; the user then approves each one.
    "DCR_REGISTRATION_PERMISSION_CLASSES": ("oauth2_provider.dcr.AllowAllDCRPermission",),
    "ALLOWED_REDIRECT_URI_SCHEMES": ["http", "https"],
    # OAuth 2.1: public clients with PKCE (S256 only), no implicit or password grants, issuer in responses.
    "OAUTH2_TOKEN_ENDPOINT_AUTH_METHODS_SUPPORTED": ["none", "client_secret_post", "client_secret_basic"],
    "OAUTH2_RESPONSE_TYPES_SUPPORTED": ["code"],
    "OAUTH2_GRANT_TYPES_SUPPORTED": ["authorization_code", "refresh_token"],
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
}
LOGIN_URL = "/accounts/login/"
# Open registration, kept in bounds (mcpsite.demo.oauth): at most this many registrations per client address
# per window of seconds (429 with Retry-After beyond), and registrations never used are deleted after this
# many hours (after each registration, and by `manage.py purge_unused_clients`).
DEMO_REGISTRATION_RATE = (10, 3600)
DEMO_UNUSED_CLIENT_HOURS = 24

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
