"""Request and response shapes of the privacy endpoints (I/O only; rules are in
privacy.services)."""

from rest_framework import serializers

from overrides.api.serializers import CustomerIdField, SourceField
from overrides.models import OptOutKind


class OptOutRequestSerializer(serializers.Serializer):
    customer_id = CustomerIdField()
    kinds = serializers.ListField(
        child=serializers.ChoiceField(choices=OptOutKind.choices), min_length=1
    )
    source = SourceField()


class OptOutResultSerializer(serializers.Serializer):
    changed = serializers.ListField(
        child=serializers.ChoiceField(choices=OptOutKind.choices),
        help_text="Kinds this call registered (or withdrew); empty if nothing changed.",
    )
    active = serializers.ListField(
        child=serializers.ChoiceField(choices=OptOutKind.choices),
        help_text="The customer's active opt-outs after the call.",
    )


class DeletionRequestCreateSerializer(serializers.Serializer):
    customer_id = CustomerIdField()
    source = SourceField()
    received_at = serializers.DateTimeField(required=False)


class DeletionRequestAcceptedSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.CharField()
    due_at = serializers.DateTimeField()


class DeliveryEvidenceSerializer(serializers.Serializer):
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=["pending", "acknowledged"])
    idempotency_key = serializers.CharField()
    attempts = serializers.IntegerField()
    last_status_code = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField(allow_null=True)
    acknowledged_at = serializers.DateTimeField(allow_null=True)
    payload_sha256 = serializers.CharField(allow_null=True)


class TimelineEventSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    event = serializers.CharField()
    actor = serializers.CharField(allow_null=True)
    detail = serializers.DictField()


class DeletionRequestDetailSerializer(serializers.Serializer):
    """Status per downstream and the evidence (privacy.selectors.evidence_document)."""

    id = serializers.UUIDField()
    customer_hash = serializers.CharField()
    source = serializers.CharField()
    status = serializers.ChoiceField(choices=["pending", "in_progress", "completed"])
    received_at = serializers.DateTimeField()
    due_at = serializers.DateTimeField()
    days_left = serializers.IntegerField()
    progress_percent = serializers.IntegerField()
    extended_at = serializers.DateTimeField(allow_null=True)
    extension_reason = serializers.CharField(allow_null=True)
    completed_at = serializers.DateTimeField(allow_null=True)
    raw_id_erased_at = serializers.DateTimeField(allow_null=True)
    downstreams = DeliveryEvidenceSerializer(many=True)
    timeline = TimelineEventSerializer(many=True)
