"""Added cost per request of the production middleware (request context, CSP,
session timeout, axes): a test-client GET /healthz with and without them.

    python -m deploy.measure_middleware [--requests 500] [--rounds 30]

Prints microseconds per request for each configuration and the difference.
"""

import argparse
import logging
import os
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opsconsole.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import override_settings  # noqa: E402

from opsconsole.logs import ConsoleJsonFormatter, RequestIdFilter  # noqa: E402

OURS = {
    "opsconsole.middleware.RequestContextMiddleware",
    "opsconsole.middleware.ContentSecurityPolicyMiddleware",
    "opsconsole.middleware.SessionTimeoutMiddleware",
    "axes.middleware.AxesMiddleware",
}


def timed(middleware: list[str], requests: int) -> float:
    """Seconds per request for one batch, with MIDDLEWARE as given."""
    with override_settings(MIDDLEWARE=middleware, ALLOWED_HOSTS=["testserver"]):
        client = Client()
        for _ in range(50):
            client.get("/healthz")
        started = time.perf_counter()
        for _ in range(requests):
            client.get("/healthz")
        return (time.perf_counter() - started) / requests


def compare(configurations: dict, requests: int, rounds: int) -> dict[str, float]:
    """Interleaved short batches, the best of each (on a shared machine the minimum
    is the figure least disturbed by other processes), in µs."""
    best = {name: float("inf") for name in configurations}
    for _ in range(rounds):
        for name, (middleware, access_level) in configurations.items():
            logging.getLogger("opsconsole.access").setLevel(access_level)
            best[name] = min(best[name], timed(middleware, requests))
    return {name: seconds * 1e6 for name, seconds in best.items()}


def isolated(names: list[str], access_level: int, rounds: int) -> float:
    """The middleware alone around a view that only answers: µs added per request."""
    from django.http import HttpResponse
    from django.test import RequestFactory
    from django.urls import resolve
    from django.utils.module_loading import import_string

    match = resolve("/healthz")

    def view(request):
        request.resolver_match = match
        return HttpResponse(b'{"status": "ok"}')

    chain = view
    for name in reversed(names):
        chain = import_string(name)(chain)
    logging.getLogger("opsconsole.access").setLevel(access_level)
    factory = RequestFactory()
    best = {"bare": float("inf"), "chain": float("inf")}
    for _ in range(rounds):
        for label, handler in (("bare", view), ("chain", chain)):
            requests = [factory.get("/healthz") for _ in range(2000)]
            started = time.perf_counter()
            for request in requests:
                handler(request)
            elapsed = (time.perf_counter() - started) / len(requests)
            best[label] = min(best[label], elapsed)
    return (best["chain"] - best["bare"]) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    full = list(settings.MIDDLEWARE)
    without = [name for name in full if name not in OURS]
    # The access line is formatted as in production (JSON) and written to /dev/null.
    access = logging.getLogger("opsconsole.access")
    access.propagate = False
    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115
    handler.setFormatter(ConsoleJsonFormatter())
    handler.addFilter(RequestIdFilter())
    access.addHandler(handler)
    results = compare(
        {
            "without": (without, logging.WARNING),
            "with, access log off": (full, logging.WARNING),
            "with, access log on": (full, logging.INFO),
        },
        args.requests,
        args.rounds,
    )
    base = results["without"]
    print("test-client GET /healthz, whole stack:")
    for name, micros in results.items():
        added = "" if name == "without" else f"  (+{micros - base:.1f} µs)"
        print(f"  {name:24} {micros:8.1f} µs/request{added}")
    ours = [name for name in full if name in OURS]
    print("the four middleware alone, around a view that only answers:")
    for label, level in (
        ("access log off", logging.WARNING),
        ("access log on", logging.INFO),
    ):
        added = isolated(ours, level, args.rounds)
        print(f"  {label:24} +{added:7.1f} µs/request")


if __name__ == "__main__":
    main()
