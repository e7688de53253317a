"""Shapes of the override API's requests and responses (contract, Overrides).

Input serializers check only types and presence; every rule (identifier format,
configured scopes, factor bounds, time windows, overlaps) is the service's, so the
UI, the API and the commands refuse the same things with the same messages.
"""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from opsconsole.identifiers import (
    CUSTOMER_ID_MAX_LENGTH,
    FORBIDDEN_RANGES,
    ITEM_ID_MAX_LENGTH,
)
from overrides import selectors
from overrides.models import Block, Boost

from .filters import BLOCK_STATUSES, BOOST_STATUSES

# Input fields ----------------------------------------------------------------------


def _escaped_class(ranges: tuple[tuple[int, int], ...]) -> str:
    """Code point ranges as a `a-b...` class body of \\uXXXX escapes, which ECMA-262
    (the schema's dialect), Python and Rust regexes read alike.

    Only the Basic Multilingual Plane: without the `u` flag ECMA-262 has no way to
    name a character beyond it (the few forbidden ones there are still refused by
    the server; the description says so). Surrogates are left out: valid UTF-8
    JSON cannot carry one.
    """
    parts = []
    for low, high in ranges:
        for start, end in ((low, min(high, 0xD7FF)), (max(low, 0xE000), high)):
            end = min(end, 0xFFFF)
            if start <= end:
                parts.append(f"{_escape(start)}-{_escape(end)}")
    return "".join(parts)


def _escape(code_point: int) -> str:
    return f"\\u{code_point:04x}"


# The contract's identifier rule as a JSON Schema pattern (the same character class
# the services and the serving checks refuse), so a schema-valid id is an accepted id.
IDENTIFIER_PATTERN = "^[^" + _escaped_class(FORBIDDEN_RANGES) + "]+$"
# The whole rule, every plane included, by name (clients can register the format).
IDENTIFIER_FORMAT = "opsconsole-identifier"
# A reason or a source: some visible text, and no NUL (DRF refuses it in any text).
TEXT_PATTERN = r"^[^\x00]*[^\s\x00][^\x00]*$"


class StrictCharField(serializers.CharField):
    """A JSON string only: a number is a client bug, not an id or a reason."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


@extend_schema_field(
    {
        "type": "string",
        "minLength": 1,
        "maxLength": ITEM_ID_MAX_LENGTH,
        "format": IDENTIFIER_FORMAT,
        "pattern": IDENTIFIER_PATTERN,
        "description": f"1–{ITEM_ID_MAX_LENGTH} characters, no whitespace, control "
        "or invisible formatting characters (any plane); case-sensitive. Need not "
        "be in the catalog.",
    }
)
class ItemIdField(StrictCharField):
    """Passed on untrimmed: " sku-1" is refused by the service, not silently fixed."""

    def __init__(self, **kwargs):
        super().__init__(trim_whitespace=False, **kwargs)


@extend_schema_field(
    {
        "type": "string",
        "minLength": 1,
        "maxLength": CUSTOMER_ID_MAX_LENGTH,
        "format": IDENTIFIER_FORMAT,
        "pattern": IDENTIFIER_PATTERN,
        "description": f"1–{CUSTOMER_ID_MAX_LENGTH} characters, no whitespace or "
        "control characters. Stored only as a keyed hash.",
    }
)
class CustomerIdField(StrictCharField):
    """Passed on untrimmed, like item ids: the service refuses what is not an id."""

    def __init__(self, **kwargs):
        super().__init__(
            trim_whitespace=False, max_length=CUSTOMER_ID_MAX_LENGTH, **kwargs
        )


@extend_schema_field(
    {"type": "string", "minLength": 1, "maxLength": 200, "pattern": TEXT_PATTERN}
)
class SourceField(StrictCharField):
    """Where a privacy request came from (a ticket id): some visible text."""

    def __init__(self, **kwargs):
        super().__init__(max_length=200, **kwargs)


class NumberField(serializers.FloatField):
    """A finite JSON number; "2" and true are refused rather than converted."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return super().to_internal_value(data)


def _scope_field(noun: str, example: str) -> StrictCharField:
    return StrictCharField(
        allow_null=True,
        help_text=f"A configured {noun} code (e.g. {example}), or null for every "
        f"{noun}. Required, so that 'everywhere' is always a deliberate choice.",
    )


@extend_schema_field({"type": "string", "minLength": 1, "pattern": TEXT_PATTERN})
class ReasonField(StrictCharField):
    """Blank passes through so the service says why a reason is needed; the schema
    says what the service accepts: some visible text."""

    def run_validation(self, data=serializers.empty):
        if data == "":
            return data
        return super().run_validation(data)


def _reason_field(help_text: str) -> StrictCharField:
    return ReasonField(trim_whitespace=False, help_text=help_text)


class BlockCreateSerializer(serializers.Serializer):
    item_id = ItemIdField()
    surface = _scope_field("surface", "home")
    region = _scope_field("region", "SG")
    reason = _reason_field("Why the item is blocked; kept in the audit trail.")
    starts_at = serializers.DateTimeField(
        required=False, allow_null=True, help_text="Default: now."
    )
    expires_at = serializers.DateTimeField(
        required=False, allow_null=True, help_text="Default (or null): permanent."
    )


class BoostCreateSerializer(serializers.Serializer):
    item_id = ItemIdField()
    factor = NumberField(
        help_text="Score multiplier: more than 1, at most BOOST_MAX_FACTOR (5)."
    )
    surface = _scope_field("surface", "home")
    region = _scope_field("region", "SG")
    reason = _reason_field("Why the item is boosted; kept in the audit trail.")
    starts_at = serializers.DateTimeField(
        required=False, allow_null=True, help_text="Default: now."
    )
    ends_at = serializers.DateTimeField(
        help_text="At most BOOST_MAX_DAYS (90) days after the start."
    )


class WithdrawSerializer(serializers.Serializer):
    reason = _reason_field("Why; kept in the audit trail.")


class BulkQuerySerializer(serializers.Serializer):
    dry_run = serializers.BooleanField(
        default=False,
        help_text="Validate and report without writing anything.",
    )


class BulkRowSerializer(serializers.Serializer):
    """One object of a JSON bulk upload (documentation: bulk.py parses the rows)."""

    item_id = serializers.CharField()
    surface = serializers.CharField(required=False, allow_null=True)
    region = serializers.CharField(required=False, allow_null=True)
    reason = serializers.CharField()
    starts_at = serializers.DateTimeField(required=False, allow_null=True)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)


# Output ----------------------------------------------------------------------------


class BlankAsNullCharField(serializers.CharField):
    """An empty model text (no lift yet) reads as null, like the other lift fields."""

    def to_representation(self, value):
        return value or None


class RuleSerializer(serializers.ModelSerializer):
    """What blocks and boosts share; rules come from the selectors (item_title)."""

    item_title = serializers.CharField(
        read_only=True, allow_null=True, help_text="Null when not in the catalog."
    )
    surface = serializers.CharField(
        source="surface_id", read_only=True, allow_null=True
    )
    region = serializers.CharField(source="region_id", read_only=True, allow_null=True)
    created_by = serializers.CharField(source="created_by.username", read_only=True)
    warnings = serializers.SerializerMethodField()

    def get_warnings(self, rule) -> list[str]:
        if rule.item_title is None:
            return [f"Item {rule.item_id} is not in the catalog."]
        return []


class BlockSerializer(RuleSerializer):
    """A block as the API shows it; the lift fields are null until it is lifted."""

    status = serializers.ChoiceField(choices=BLOCK_STATUSES, read_only=True)
    lifted_at = serializers.DateTimeField(
        source="withdrawn_at", read_only=True, allow_null=True
    )
    lifted_by = serializers.CharField(
        source="withdrawn_by.username", read_only=True, allow_null=True
    )
    lift_reason = BlankAsNullCharField(
        source="withdrawal_reason", read_only=True, allow_null=True
    )

    class Meta:
        model = Block
        fields = [
            "id",
            "item_id",
            "item_title",
            "surface",
            "region",
            "reason",
            "status",
            "starts_at",
            "expires_at",
            "created_at",
            "created_by",
            "lifted_at",
            "lifted_by",
            "lift_reason",
            "warnings",
        ]
        read_only_fields = fields


class BoostSerializer(RuleSerializer):
    """A boost as the API shows it; the end fields are null unless ended early."""

    status = serializers.ChoiceField(choices=BOOST_STATUSES, read_only=True)
    ended_at = serializers.DateTimeField(
        source="withdrawn_at", read_only=True, allow_null=True
    )
    ended_by = serializers.CharField(
        source="withdrawn_by.username", read_only=True, allow_null=True
    )
    end_reason = BlankAsNullCharField(
        source="withdrawal_reason", read_only=True, allow_null=True
    )

    class Meta:
        model = Boost
        fields = [
            "id",
            "item_id",
            "item_title",
            "factor",
            "surface",
            "region",
            "reason",
            "status",
            "starts_at",
            "ends_at",
            "created_at",
            "created_by",
            "ended_at",
            "ended_by",
            "end_reason",
            "warnings",
        ]
        read_only_fields = fields


class BulkRowReportSerializer(serializers.Serializer):
    line = serializers.IntegerField(
        help_text="Line in the CSV (the header is line 1), or position in the list."
    )
    item_id = serializers.CharField()
    surface = serializers.CharField(allow_null=True)
    region = serializers.CharField(allow_null=True)
    errors = serializers.ListField(child=serializers.CharField())
    warnings = serializers.ListField(child=serializers.CharField())
    block_id = serializers.IntegerField(
        allow_null=True, help_text="The new block, once applied."
    )


class BulkReportSerializer(serializers.Serializer):
    """Renders a services.BulkBlockResult; `dry_run` comes from the context."""

    applied = serializers.BooleanField()
    dry_run = serializers.SerializerMethodField()
    created = serializers.SerializerMethodField()
    errors = serializers.IntegerField(
        source="error_count", help_text="Rows with errors."
    )
    rows = serializers.SerializerMethodField()

    def get_dry_run(self, result) -> bool:
        return self.context["dry_run"]

    def get_created(self, result) -> int:
        return len(result.blocks)

    @extend_schema_field(BulkRowReportSerializer(many=True))
    def get_rows(self, result) -> list[dict]:
        # Applied means every row made a block, in order.
        block_ids = [block.pk for block in result.blocks] or [None] * len(result.rows)
        return [
            {
                "line": row.line,
                "item_id": row.item_id,
                "surface": row.surface,
                "region": row.region,
                "errors": row.errors,
                "warnings": row.warnings,
                "block_id": block_id,
            }
            for row, block_id in zip(result.rows, block_ids, strict=True)
        ]


class AuditChangeSerializer(serializers.Serializer):
    field = serializers.CharField()
    before = serializers.JSONField(help_text="null when there was no value.")
    after = serializers.JSONField()


class _IntegerOrNullField(serializers.IntegerField):
    def to_representation(self, value):
        return value if isinstance(value, int) else None


class AuditEntrySerializer(serializers.Serializer):
    """Renders selectors.AuditEntry."""

    kind = serializers.ChoiceField(choices=list(selectors.AUDITED_KINDS))
    object_id = _IntegerOrNullField(
        allow_null=True,
        help_text="Null for records keyed by a UUID (deletion requests): see "
        "object_ref.",
    )
    object_ref = serializers.CharField(help_text="The record's id as text.")
    history_id = serializers.IntegerField()
    when = serializers.DateTimeField()
    actor = serializers.CharField(help_text='Username, or "system" for the sweep.')
    action = serializers.CharField()
    reason = serializers.CharField()
    item_id = serializers.CharField(allow_null=True)
    changes = AuditChangeSerializer(many=True)


# Errors (schema only: opsconsole.errors renders them) -----------------------------


class ApiErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="e.g. invalid, conflict, not_found.")
    message = serializers.CharField()
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Messages per request field; non_field_errors for the rest.",
    )
    existing_id = serializers.IntegerField(
        required=False, help_text="On a 409: the rule the request clashes with."
    )


class ApiErrorSerializer(serializers.Serializer):
    error = ApiErrorDetailSerializer()


class BulkErrorSerializer(ApiErrorSerializer):
    """A refused bulk upload: the contract's error, plus the per-row report when the
    rows could be read (a file that cannot be read has no rows to report)."""

    applied = serializers.BooleanField(required=False)
    dry_run = serializers.BooleanField(required=False)
    created = serializers.IntegerField(required=False)
    errors = serializers.IntegerField(required=False, help_text="Rows with errors.")
    rows = BulkRowReportSerializer(many=True, required=False)
