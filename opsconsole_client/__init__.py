"""Python client for OpsConsole's serving API: rules evaluated locally, kept fresh.

Standard library plus `requests` (and `redis`, optionally, for push updates); it never
imports Django, so serving layers can vendor or import it without the console.
"""

from .client import OverridesClient
from .errors import (
    OverridesAuthError,
    OverridesError,
    OverridesRequestError,
    OverridesUnavailable,
)
from .rules import RankResult, RuleSet

__all__ = [
    "OverridesAuthError",
    "OverridesClient",
    "OverridesError",
    "OverridesRequestError",
    "OverridesUnavailable",
    "RankResult",
    "RuleSet",
]
