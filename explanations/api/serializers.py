"""Shapes of the prediction log and explanation endpoints (contract).

The prediction log checks bodies in the service against each model's feature
schema; these serializers describe the shapes in /api/schema/ (the views answer
plain data).
"""

from rest_framework import serializers


class PredictionLogSerializer(serializers.Serializer):
    prediction_id = serializers.CharField(max_length=128)
    model = serializers.CharField(help_text="A registered model name.")
    model_version = serializers.CharField()
    customer_id = serializers.CharField(
        required=False,
        max_length=256,
        help_text="Stored only as a keyed hash.",
    )
    features = serializers.DictField(
        child=serializers.FloatField(allow_null=True),
        help_text="Every feature of the model's schema; null means missing.",
    )
    output = serializers.FloatField()
    created_at = serializers.DateTimeField(required=False, help_text="Default: now.")


class PredictionLoggedSerializer(serializers.Serializer):
    prediction_id = serializers.CharField()
    created = serializers.BooleanField(help_text="false: the same body was logged.")


class _ModelRefSerializer(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.CharField()


class _ContributionSerializer(serializers.Serializer):
    feature = serializers.CharField()
    label = serializers.CharField()
    value = serializers.FloatField(allow_null=True)
    shap = serializers.FloatField()


class ExplanationSerializer(serializers.Serializer):
    prediction_id = serializers.CharField(source="prediction.prediction_id")
    model = serializers.SerializerMethodField()
    output_space = serializers.ChoiceField(choices=["raw", "log_odds", "probability"])
    base_value = serializers.FloatField()
    output = serializers.FloatField()
    contributions = _ContributionSerializer(many=True)

    def get_model(self, explanation) -> _ModelRefSerializer:
        model_version = explanation.model_version
        return {"name": model_version.name, "version": model_version.version}
