"""Login throttling on top of django-axes: the client's real address behind trusted
proxies, and a second, higher limit per address.

- django-axes locks out a (user name, address) pair after LOGIN_FAILURE_LIMIT
  failures. Behind a reverse proxy every request has the proxy's REMOTE_ADDR, so
  that pair would be (user name, proxy) and anyone could lock `admin` out for
  everybody. With TRUSTED_PROXY_COUNT=N the address is taken from X-Forwarded-For,
  N entries from the right (the one the outermost trusted proxy saw); entries
  further left are the client's own claims and are never used. With N=0 (no proxy)
  the header is ignored: a client could write anything there.
- A pair limit alone lets one address try a few passwords against every user
  name; LOGIN_ADDRESS_FAILURE_LIMIT failures from one address, any user names,
  lock the address out too. It is higher so a shared office address is not locked
  out by a few people mistyping.
"""

from axes.attempts import get_cool_off_threshold
from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_failure_limit
from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import Sum


def client_ip_address(request) -> str | None:
    """AXES_CLIENT_IP_CALLABLE: the client address as the trusted proxies saw it."""
    remote = request.META.get("REMOTE_ADDR")
    count = settings.TRUSTED_PROXY_COUNT
    if count <= 0:
        return remote
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    if len(hops) < count:  # did not come through every proxy: their address
        return remote
    return hops[-count]


class AddressLimitedHandler(AxesDatabaseHandler):
    """django-axes' database handler, also locking out an address after
    LOGIN_ADDRESS_FAILURE_LIMIT failures for any user names.

    Both lockout checks (before authenticating, and after a failure) go through
    get_failures, so reporting the pair limit once the address limit is reached
    locks the address out with the same 429 page and cool-off.
    """

    def get_failures(self, request, credentials=None) -> int:
        failures = super().get_failures(request, credentials)
        limit = get_failure_limit(request, credentials)
        if failures >= limit or not getattr(request, "axes_ip_address", None):
            return failures
        from_address = AccessAttempt.objects.filter(
            ip_address=request.axes_ip_address,
            attempt_time__gte=get_cool_off_threshold(request),
        ).aggregate(total=Sum("failures_since_start"))["total"]
        if (from_address or 0) >= settings.LOGIN_ADDRESS_FAILURE_LIMIT:
            return limit
        return failures
