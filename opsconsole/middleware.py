"""Project middleware: request context (id, logs, metrics, caching rule), the
Content-Security-Policy header, session timeouts, and the API's time zone.

Everything here runs on every request, the serving endpoints included, so none of it
touches the database and the per-request work is a few dictionary operations.
"""

import logging
import time
import uuid
from datetime import UTC

from csp.constants import HEADER as CSP_HEADER
from csp.middleware import CheckableLazyObject, CSPMiddleware
from csp.utils import build_policy
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.signals import user_logged_in
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils import timezone

from opsconsole import metrics
from opsconsole.logs import VALID_REQUEST_ID, request_id_var

access_log = logging.getLogger("opsconsole.access")

REQUEST_ID_RESPONSE_HEADER = "X-Request-ID"


class RequestContextMiddleware:
    """Request id, one access log line, metrics, and `Cache-Control: no-store`.

    - The request id is the incoming `X-Request-ID` when it is plain and short
      (a proxy's), else a new one; it is echoed in the response and put on every
      log line of the request (opsconsole.logs) and on tasks it enqueues.
    - Caching rule: a response whose view did not choose its own Cache-Control is
      `no-store`. Nearly every page and API answer of the console shows personal
      data or staff records (customer lookups, explanations, privacy requests,
      audit); the few that may be cached say so themselves (the serving snapshot,
      revalidated by ETag). Static files never reach this middleware (whitenoise
      answers them first, with long-lived caching of hashed names).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        incoming = request.META.get("HTTP_X_REQUEST_ID")
        if incoming and VALID_REQUEST_ID.fullmatch(incoming):
            request_id = incoming
        else:
            request_id = uuid.uuid4().hex
        request.request_id = request_id
        token = request_id_var.set(request_id)
        try:
            response = self.get_response(request)
            response[REQUEST_ID_RESPONSE_HEADER] = request_id
            if "Cache-Control" not in response:
                response["Cache-Control"] = "no-store"
            seconds = time.perf_counter() - started
            match = request.resolver_match
            route = (match.view_name or "unnamed") if match else "unmatched"
            status = response.status_code
            metrics.observe_request(route, request.method, status, seconds)
            if access_log.isEnabledFor(logging.INFO) and (
                settings.ACCESS_LOG_SERVING
                or not _is_quiet_serving_read(request.path, status)
            ):
                access_log.info(
                    "%s %s %s",
                    request.method,
                    route,
                    status,
                    extra={
                        "method": request.method,
                        "path": request.path,
                        "route": route,
                        "status": status,
                        "duration_ms": round(seconds * 1000, 3),
                    },
                )
            return response
        finally:
            request_id_var.reset(token)


SERVING_PATH_PREFIX = "/api/v1/serving/"


def _is_quiet_serving_read(path: str, status: int) -> bool:
    """A successful serving read (2xx or 304), which gets no access line unless
    ACCESS_LOG_SERVING=1: it is the hot path (thousands a second), and the
    Prometheus metrics count it by route and status. Failures are still logged."""
    ok = 200 <= status < 300 or status == 304
    return ok and path.startswith(SERVING_PATH_PREFIX)


def _is_json(response) -> bool:
    media_type = response.get("Content-Type", "").partition(";")[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


class ContentSecurityPolicyMiddleware(CSPMiddleware):
    """django-csp's middleware with the policy string built once, not per response,
    and no policy on JSON answers.

    django-csp rebuilds the header from settings on every response (twice: policy
    and report-only), which costs more than the rest of the request context. When a
    response has no per-view policy (`@csp_update` and friends, report-only ones
    included), no nonce was asked for and there is no report-only policy, the same
    header from CONTENT_SECURITY_POLICY applies: cache it. Anything else goes to
    django-csp itself, so behaviour is the same.

    A JSON response (the API, serving included) gets no policy: a browser never
    renders one as a document, so the header does nothing there and costs ~400
    bytes per serving answer. HTML pages and HTML error pages keep it, and so does
    every other type (an SVG or XML document can run scripts).
    """

    _overrides = (
        "_csp_config",
        "_csp_update",
        "_csp_replace",
        "_csp_exempt",
        "_csp_config_ro",
        "_csp_update_ro",
        "_csp_replace_ro",
        "_csp_exempt_ro",
    )
    _policy: str | None = None

    def process_response(self, request, response):
        is_json = _is_json(response)
        if not is_json and (
            getattr(request, "_csp_nonce", None) is not None
            or getattr(settings, "CONTENT_SECURITY_POLICY_REPORT_ONLY", None)
            or any(hasattr(response, name) for name in self._overrides)
            or (settings.DEBUG and response.status_code in (404, 500))
        ):
            return super().process_response(request, response)
        policy = ContentSecurityPolicyMiddleware._policy
        if policy is None:
            policy = ContentSecurityPolicyMiddleware._policy = build_policy()
        if policy and not is_json and CSP_HEADER not in response:
            prefixes = settings.CONTENT_SECURITY_POLICY.get("EXCLUDE_URL_PREFIXES")
            if not prefixes or not request.path_info.startswith(tuple(prefixes)):
                response[CSP_HEADER] = policy
        if getattr(request, "_csp_nonce", None) is None:
            # As django-csp does: a nonce asked for after the header was written
            # would not be in it, so asking is an error, not a silently unsafe page.
            request.csp_nonce = CheckableLazyObject(self._csp_nonce_post_response)
        return response


@receiver(setting_changed)
def _forget_policy(setting=None, **kwargs):
    if setting and setting.startswith("CONTENT_SECURITY_POLICY"):
        ContentSecurityPolicyMiddleware._policy = None


# Sessions -------------------------------------------------------------------------

SESSION_STARTED_KEY = "_opsconsole_signed_in_at"
SESSION_SEEN_KEY = "_opsconsole_seen_at"
# The idle clock is written at most this often, so a page view is not a session
# write (the idle limit is then enforced to within this many seconds).
SESSION_ACTIVITY_RESOLUTION_SECONDS = 60


@receiver(user_logged_in)
def _start_session_clock(sender, request=None, **kwargs):
    if request is not None and hasattr(request, "session"):
        now = time.time()
        request.session[SESSION_STARTED_KEY] = now
        request.session[SESSION_SEEN_KEY] = now


class SessionTimeoutMiddleware:
    """Signs a person out after SESSION_IDLE_SECONDS without a request, and in any
    case SESSION_COOKIE_AGE seconds after signing in (the absolute limit).

    Only requests that carry a session cookie are looked at, so API-key traffic
    (serving) never loads a session. Must come after SessionMiddleware and
    MessageMiddleware (it leaves a message saying why the person must sign in
    again, shown on the login page) and before anything reads request.user.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if settings.SESSION_COOKIE_NAME in request.COOKIES:
            self._check(request)
        return self.get_response(request)

    def _check(self, request) -> None:
        session = request.session
        if "_auth_user_id" not in session:
            return
        now = time.time()
        started = session.get(SESSION_STARTED_KEY)
        seen = session.get(SESSION_SEEN_KEY)
        if started is None:  # signed in before this middleware existed
            session[SESSION_STARTED_KEY] = session[SESSION_SEEN_KEY] = now
            return
        idle = now - (seen or started)
        if now - started > settings.SESSION_COOKIE_AGE:
            hours = _count(settings.SESSION_COOKIE_AGE / 3600, "hour")
            why = f"Your session ended {hours} after you signed in"
        elif idle > settings.SESSION_IDLE_SECONDS:
            minutes = _count(settings.SESSION_IDLE_SECONDS / 60, "minute")
            why = f"Your session expired after {minutes} of inactivity"
        else:
            if idle > SESSION_ACTIVITY_RESOLUTION_SECONDS:
                session[SESSION_SEEN_KEY] = now
            return
        session.flush()
        messages.info(request, f"{why}; sign in again.", fail_silently=True)


def _count(amount: float, unit: str) -> str:
    """`amount` rounded to a whole number (1 at least) of `unit`s: "1 hour"."""
    whole = max(1, round(amount))
    return f"{whole} {unit}{'s' if whole != 1 else ''}"


class ApiTimezoneMiddleware:
    """The API speaks UTC (contract: ISO 8601 with a Z); pages use TIME_ZONE."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/api/"):
            timezone.activate(UTC)
        else:
            timezone.deactivate()
        return self.get_response(request)
