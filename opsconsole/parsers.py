"""JSON in and out of the API: strict, size-limited, and fast (orjson).

DRF reads the raw request stream, which skips Django's body-size check, so the limit
is applied here: a larger body gets a 413; NaN/Infinity, invalid UTF-8 and too-deep
nesting get a 400, never a 500.
"""

import orjson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer


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


class LimitedJSONParser(JSONParser):
    """Strict JSON (orjson rejects NaN, Infinity and nesting deeper than 1,024)."""

    def parse(self, stream, media_type=None, parser_context=None):
        data = read_limited(stream, settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as error:
            raise ParseError(f"JSON parse error: {error}") from error


class FastJSONRenderer(JSONRenderer):
    """orjson for the serving endpoints' large answers (UTC times, plain types)."""

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        if data is None:
            return b""
        return orjson.dumps(data)
