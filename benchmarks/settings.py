"""The console's settings plus the benchmark's baseline route (gunicorn under test)."""

from opsconsole.settings import *  # noqa: F403

ROOT_URLCONF = "benchmarks.urls"
