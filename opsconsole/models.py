"""API keys: how machines (serving layers, scripts) authenticate (contract)."""

from django.conf import settings
from django.db import models
from django.utils import timezone
from simple_history.models import HistoricalRecords


class ApiKeyScope(models.TextChoices):
    SERVING_READ = "serving:read", "Serving reads (snapshot, rank, changes, heartbeat)"
    PREDICTIONS_WRITE = "predictions:write", "Log predictions"
    EXPLANATIONS_READ = "explanations:read", "Read explanations"
    OVERRIDES_WRITE = "overrides:write", "Manage blocks and boosts"
    PRIVACY_WRITE = "privacy:write", "Register opt-outs and deletion requests"
    METRICS_READ = "metrics:read", "Read Prometheus metrics (/metrics)"


class ApiKey(models.Model):
    """A machine credential. Only its SHA-256 is stored; the key is shown once.

    Each key acts through its own service account (`user`), so rules it writes say
    which key made them in the audit trail.
    """

    name = models.SlugField(max_length=64, unique=True)
    prefix = models.CharField(max_length=16, help_text="The key's first characters.")
    key_hash = models.CharField(max_length=64, unique=True)
    scopes = models.JSONField(default=list)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="api_key"
    )
    rate_limit_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Empty: API_KEY_RATE_LIMIT_PER_MINUTE."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    # Creation and revocation are audited; use (last_used_at) is written with
    # update(), so it adds no history.
    history = HistoricalRecords(
        excluded_fields=["key_hash", "last_used_at"],
        history_change_reason_field=models.TextField(null=True),
    )

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


# People's accounts are audited too; their history model lives in this app.
from opsconsole import user_history  # noqa: E402

user_history.register()
