"""The client's exceptions, so callers can tell "no rules" from "bad key" from a bug."""


class OverridesError(Exception):
    """Base class: catch this to handle every client error in one place."""


class OverridesUnavailable(OverridesError):
    """No rules were ever loaded (not from disk, not from the console).

    Serving without them would show blocked items, so the client refuses instead:
    blocks fail closed.
    """


class OverridesAuthError(OverridesError):
    """The console refused the API key (401) or its scope (403); retrying won't help."""


class OverridesRequestError(OverridesError, ValueError):
    """The console rejected a request as invalid (400), e.g. a malformed customer id."""
