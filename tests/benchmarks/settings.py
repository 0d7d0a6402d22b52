"""Benchmark settings: the test settings plus Django's default middleware (what a real site pays)."""

from tests.settings import *  # noqa: F403

ROOT_URLCONF = "tests.benchmarks.urls"
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

import os as _os  # noqa: E402

if _os.environ.get("BENCH_CONN_MAX_AGE"):
    DATABASES["default"]["CONN_MAX_AGE"] = None  # noqa: F405
if _os.environ.get("BENCH_NO_AUDIT"):
    MCP_APP = {**MCP_APP, "AUDIT_LOG": False}  # noqa: F405
