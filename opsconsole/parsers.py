"""Request parsers that keep Django's body-size limit (DRF reads the raw stream)."""

import json

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


def read_limited(stream, limit: int | None) -> bytes:
    """Read a request body, refusing (413) one larger than `limit` bytes."""
    if stream is None:
        return b""
    if limit is None:
        return stream.read()
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise RequestDataTooBig(
            "The request body is larger than this endpoint accepts."
        )
    return data


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON; numbers must be finite.")


class LimitedJSONParser(JSONParser):
    """Strict JSON up to DATA_UPLOAD_MAX_MEMORY_SIZE: larger bodies get a 413,
    NaN/Infinity and too-deep nesting a 400, never a 500."""

    def parse(self, stream, media_type=None, parser_context=None):
        data = read_limited(stream, settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        try:
            return json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
        except UnicodeDecodeError as error:
            raise ParseError("The body is not UTF-8.") from error
        except RecursionError as error:
            raise ParseError("The JSON is nested too deeply.") from error
        except ValueError as error:
            raise ParseError(f"JSON parse error: {error}") from error
