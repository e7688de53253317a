"""Override rules (blocks and boosts), their configuration and the version counter.

Rules are never edited or deleted: a block is lifted and a boost ended by a new,
recorded change, so the history and the serving change feed stay complete.
"""

from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator, RegexValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from opsconsole.identifiers import ITEM_ID_MAX_LENGTH, validate_item_id

# Hard ceilings the database enforces whatever the settings say; the services apply
# the configured BOOST_MAX_FACTOR and BOOST_MAX_DAYS, which must stay below these.
BOOST_FACTOR_CEILING = 100.0
REASON_MAX_LENGTH = 1000


# The largest override version (and reported version) the database can hold.
MAX_VERSION = 2**63 - 1


class ItemIdField(models.CharField):
    """An item id column whose only messages come from `validate_item_id`."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", ITEM_ID_MAX_LENGTH)
        kwargs.setdefault("validators", [validate_item_id])
        kwargs.setdefault("error_messages", {"blank": "Item id is required."})
        super().__init__(**kwargs)
        # CharField adds Django's own length check, which would repeat ours.
        self.validators[:] = [
            v for v in self.validators if not isinstance(v, MaxLengthValidator)
        ]


class Surface(models.Model):
    """A place where predictions are shown (home page, search, e-mail...)."""

    code = models.SlugField(
        max_length=32,
        unique=True,
        validators=[
            RegexValidator(r"^[a-z0-9_]+$", "Use lowercase letters, digits and _.")
        ],
        help_text="Used in the API, e.g. home or product_page.",
    )
    name = models.CharField(max_length=64)
    is_active = models.BooleanField(
        default=True,
        help_text="Inactive surfaces keep their rules but take no new ones.",
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code


class Region(models.Model):
    """A market, by ISO 3166-1 alpha-2 code, that rules can be limited to."""

    code = models.CharField(
        max_length=2,
        unique=True,
        validators=[
            RegexValidator(r"^[A-Z]{2}$", "Use an ISO 3166-1 alpha-2 code, e.g. SG.")
        ],
    )
    name = models.CharField(max_length=64)
    is_active = models.BooleanField(default=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code


class CatalogItem(models.Model):
    """Optional product metadata so screens can show titles; rules never require it."""

    item_id = ItemIdField(unique=True)
    title = models.CharField(max_length=300)
    category = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(
        null=True, blank=True, help_text="When the product was created."
    )
    imported_at = models.DateTimeField(auto_now=True)
    # Hand edits in the admin are audited (a wrong title misleads whoever blocks by
    # it); imports write with bulk_create, which adds no history: the feed's file is
    # their record, and one entry per imported row would drown the trail. Before an
    # edit, the admin records an imported row as the import left it, when that
    # differs from its latest history record (overrides/admin.py).
    history = HistoricalRecords(
        excluded_fields=["imported_at"],
        history_change_reason_field=models.TextField(null=True),
    )

    class Meta:
        ordering = ["item_id"]
        indexes = [models.Index(fields=["title"])]

    def __str__(self) -> str:
        return f"{self.item_id} — {self.title}"


class RuleStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    SCHEDULED = "scheduled", "Scheduled"
    EXPIRED = "expired", "Expired"
    LIFTED = "lifted", "Lifted"
    ENDED = "ended", "Ended early"


class RuleQuerySet(models.QuerySet):
    """Time-window filters shared by blocks and boosts; `now` is always explicit."""

    def _end_field(self) -> str:
        return self.model.window_end_field

    def _not_ended_by(self, now: datetime) -> Q:
        end = self._end_field()
        return Q(**{f"{end}__isnull": True}) | Q(**{f"{end}__gt": now})

    def not_withdrawn(self) -> "RuleQuerySet":
        return self.filter(withdrawn_at__isnull=True)

    def active(self, now: datetime) -> "RuleQuerySet":
        return self.not_withdrawn().filter(self._not_ended_by(now), starts_at__lte=now)

    def scheduled(self, now: datetime) -> "RuleQuerySet":
        return self.not_withdrawn().filter(starts_at__gt=now)

    def current_or_scheduled(self, now: datetime) -> "RuleQuerySet":
        return self.not_withdrawn().filter(self._not_ended_by(now))

    def expired(self, now: datetime) -> "RuleQuerySet":
        return self.not_withdrawn().filter(**{f"{self._end_field()}__lte": now})

    def withdrawn(self) -> "RuleQuerySet":
        return self.filter(withdrawn_at__isnull=False)

    def with_status(self, status: str, now: datetime) -> "RuleQuerySet":
        if status == RuleStatus.ACTIVE:
            return self.active(now)
        if status == RuleStatus.SCHEDULED:
            return self.scheduled(now)
        if status == RuleStatus.EXPIRED:
            return self.expired(now)
        if status == self.model.withdrawn_status:
            return self.withdrawn()
        return self.none()

    def for_scope(self, surface: str | None, region: str | None) -> "RuleQuerySet":
        return self.filter(surface_id=surface, region_id=region)

    def overlapping(
        self, *, starts_at: datetime, ends_at: datetime | None
    ) -> "RuleQuerySet":
        """Rules still in force whose window meets [starts_at, ends_at)."""
        end = self._end_field()
        overlap = self.not_withdrawn().filter(
            Q(**{f"{end}__isnull": True}) | Q(**{f"{end}__gt": starts_at})
        )
        if ends_at is not None:
            overlap = overlap.filter(starts_at__lt=ends_at)
        return overlap


class OverrideRule(models.Model):
    """What blocks and boosts share: an item, a scope, a time window and a reason.

    `surface` and `region` are null for "all". `withdrawn_*` records the lift of a
    block or the early end of a boost; `expiry_recorded_at` is set by the sweep job
    once the window has passed, so screens and the change feed show it ended.
    """

    window_end_field = ""
    withdrawn_status = ""

    item_id = ItemIdField(db_index=True)
    surface = models.ForeignKey(
        Surface,
        to_field="code",
        db_column="surface",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Empty means every surface.",
    )
    region = models.ForeignKey(
        Region,
        to_field="code",
        db_column="region",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Empty means every region.",
    )
    reason = models.TextField(
        max_length=REASON_MAX_LENGTH,
        validators=[MaxLengthValidator(REASON_MAX_LENGTH)],
        error_messages={"blank": "A reason is required."},
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    starts_at = models.DateTimeField(default=timezone.now)
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    withdrawn_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    withdrawal_reason = models.TextField(
        max_length=REASON_MAX_LENGTH,
        blank=True,
        validators=[MaxLengthValidator(REASON_MAX_LENGTH)],
    )
    expiry_recorded_at = models.DateTimeField(null=True, blank=True)
    changed_version = models.PositiveBigIntegerField(
        default=0, help_text="Override version of this rule's latest change."
    )

    objects = RuleQuerySet.as_manager()
    history = HistoricalRecords(
        inherit=True, history_change_reason_field=models.TextField(null=True)
    )

    class Meta:
        abstract = True
        ordering = ["-created_at", "-id"]

    @property
    def window_end(self) -> datetime | None:
        return getattr(self, self.window_end_field)

    @property
    def scope_label(self) -> str:
        return (
            f"{self.surface_id or 'all surfaces'} · {self.region_id or 'all regions'}"
        )

    def status_at(self, now: datetime) -> str:
        if self.withdrawn_at is not None:
            return self.withdrawn_status
        if self.window_end is not None and self.window_end <= now:
            return RuleStatus.EXPIRED
        if self.starts_at > now:
            return RuleStatus.SCHEDULED
        return RuleStatus.ACTIVE

    @property
    def status(self) -> str:
        return self.status_at(timezone.now())

    @property
    def status_label(self) -> str:
        return RuleStatus(self.status).label

    @property
    def is_open(self) -> bool:
        """Still in force or waiting to start, so it can be lifted or ended."""
        return self.status in (RuleStatus.ACTIVE, RuleStatus.SCHEDULED)

    def clean(self) -> None:
        """Raise every problem at once, so a form or an API answer lists them all."""
        super().clean()
        errors = self.rule_errors()
        if errors:
            raise ValidationError(errors)

    def rule_errors(self) -> dict[str, str]:
        """Problems beyond single fields; subclasses add their own."""
        errors = {}
        if self.reason and not self.reason.strip():
            errors["reason"] = "A reason is required."
        elif isinstance(self.reason, str) and "\x00" in self.reason:
            # PostgreSQL cannot store it; forms and serializers refuse it too.
            errors["reason"] = "Null characters are not allowed."
        end = self.window_end
        if end is not None and self.starts_at is not None and end <= self.starts_at:
            errors[self.window_end_field] = "The end must be after the start."
        return errors


class Block(OverrideRule):
    """An item that must not be shown in a scope, permanently or until expires_at."""

    window_end_field = "expires_at"
    withdrawn_status = RuleStatus.LIFTED

    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="Empty means permanent."
    )

    class Meta(OverrideRule.Meta):
        constraints = [
            models.CheckConstraint(
                condition=Q(expires_at__isnull=True) | Q(expires_at__gt=F("starts_at")),
                name="block_expires_after_start",
            ),
            models.CheckConstraint(
                condition=~Q(reason=""), name="block_reason_required"
            ),
        ]
        indexes = [models.Index(fields=["surface", "region"])]

    def __str__(self) -> str:
        return f"Block #{self.pk} {self.item_id} ({self.scope_label})"


class Boost(OverrideRule):
    """A temporary multiplier on an item's score, bounded in factor and duration."""

    window_end_field = "ends_at"
    withdrawn_status = RuleStatus.ENDED

    factor = models.FloatField()
    ends_at = models.DateTimeField()

    class Meta(OverrideRule.Meta):
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__gt=F("starts_at")), name="boost_ends_after_start"
            ),
            models.CheckConstraint(
                condition=Q(factor__gt=1) & Q(factor__lte=BOOST_FACTOR_CEILING),
                name="boost_factor_bounds",
            ),
            models.CheckConstraint(
                condition=~Q(reason=""), name="boost_reason_required"
            ),
        ]
        indexes = [models.Index(fields=["surface", "region"])]

    def __str__(self) -> str:
        return f"Boost #{self.pk} {self.item_id} ×{self.factor:g} ({self.scope_label})"

    def rule_errors(self) -> dict[str, str]:
        errors = super().rule_errors()
        max_factor = settings.BOOST_MAX_FACTOR
        if isinstance(self.factor, int | float) and not (1 < self.factor <= max_factor):
            errors["factor"] = (
                f"The factor must be more than 1 and at most {max_factor:g} "
                f"(got {self.factor:g})."
            )
        if self.starts_at and self.ends_at and self.ends_at > self.starts_at:
            days = (self.ends_at - self.starts_at).total_seconds() / 86400
            if days > settings.BOOST_MAX_DAYS:
                errors["ends_at"] = (
                    f"A boost can last at most {settings.BOOST_MAX_DAYS} days "
                    f"(this one lasts {days:.1f})."
                )
        return errors


class OverrideVersion(models.Model):
    """The single counter that rises in the same transaction as every rule change."""

    SINGLETON_ID = 1
    value = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"Override version {self.value}"


class OverrideChange(models.Model):
    """One entry of the serving change feed: the rule as it is after the change."""

    class Action(models.TextChoices):
        BLOCK = "block", "Blocked"
        UNBLOCK = "unblock", "Unblocked"
        BOOST = "boost", "Boosted"
        UNBOOST = "unboost", "Boost ended"

    version = models.PositiveBigIntegerField(unique=True)
    action = models.CharField(max_length=16, choices=Action.choices)
    rule = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["version"]
        permissions = [("view_audit_trail", "Can view the full audit trail")]

    def __str__(self) -> str:
        return f"v{self.version} {self.action} {self.rule.get('item_id')}"


class ServingInstance(models.Model):
    """A serving process that reports the override version it has loaded."""

    name = models.CharField(max_length=128, unique=True)
    version = models.PositiveBigIntegerField()
    last_seen_at = models.DateTimeField()
    api_key = models.ForeignKey(
        "opsconsole.ApiKey", on_delete=models.SET_NULL, null=True, related_name="+"
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} at v{self.version}"


class OptOutKind(models.TextChoices):
    PERSONALIZATION = "personalization", "No personalisation"
    TRAINING = "training", "No use for training"


class OptOut(models.Model):
    """A customer's objection to one use of their data, by hashed customer id.

    Withdrawn opt-outs are kept (withdrawn_at set) so the register shows its history.
    """

    customer_hash = models.CharField(max_length=64, db_index=True)
    kind = models.CharField(max_length=32, choices=OptOutKind.choices)
    source = models.CharField(
        max_length=200, help_text="Where it came from, e.g. a ticket id."
    )
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+"
    )
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    withdrawn_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    withdrawal_source = models.CharField(max_length=200, blank=True)
    # The change reason is the source (up to 200 characters): text, not varchar(100).
    history = HistoricalRecords(history_change_reason_field=models.TextField(null=True))

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["customer_hash", "kind"],
                condition=Q(withdrawn_at__isnull=True),
                name="one_active_optout_per_customer_and_kind",
            )
        ]

    def __str__(self) -> str:
        return f"Opt-out {self.kind} {self.customer_hash[:12]}…"
