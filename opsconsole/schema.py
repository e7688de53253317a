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


# Django's form fields (the list filters) refuse a NUL in any text (400).
NO_NUL_PATTERN = r"^[^\x00]*$"


def query_text_without_nul(result, generator, request, public):
    """drf-spectacular hook: every free-text query parameter of the management API
    says it takes no NUL, which its filters refuse. The serving reads are left as
    they are: they take any string (contract, Identifiers)."""
    from opsconsole.middleware import SERVING_PATH_PREFIX

    for path, operations in result.get("paths", {}).items():
        if path.startswith(SERVING_PATH_PREFIX):
            continue
        for operation in operations.values():
            for parameter in operation.get("parameters", ()):
                schema = parameter.get("schema", {})
                if (
                    parameter.get("in") == "query"
                    and schema.get("type") == "string"
                    and not {"pattern", "enum", "format"} & schema.keys()
                ):
                    schema["pattern"] = NO_NUL_PATTERN
    return result
