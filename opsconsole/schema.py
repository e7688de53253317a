"""How drf-spectacular describes the console's authentication in /api/schema/.

Imported once at start-up (apps.py); extensions register themselves on import.
"""

from drf_spectacular.authentication import SessionScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ConsoleSessionScheme(SessionScheme):
    """The web UI's session cookie (cookieAuth)."""

    target_class = "opsconsole.auth.ConsoleSessionAuthentication"


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """`Authorization: Bearer <api key>` (bearerAuth)."""

    target_class = "opsconsole.auth.ApiKeyAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key from an admin; its scopes limit what it may do.",
        }
