"""Admin pages: read-only, because every privacy change must go through the services
(evidence, encryption, opt-outs); the console's own pages are where people act."""

from django.contrib import admin

from opsconsole.admin_mixins import ReadOnlyAdminMixin

from .models import DeletionRequest, Downstream, EvidenceEvent


class ReadOnlyAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Requests, their evidence and downstreams: shown here, changed in the console."""


@admin.register(Downstream)
class DownstreamAdmin(ReadOnlyAdmin):
    list_display = ("name", "url", "is_active", "created_at")
    exclude = ("secret",)


@admin.register(DeletionRequest)
class DeletionRequestAdmin(ReadOnlyAdmin):
    list_display = ("id", "status", "received_at", "due_at", "completed_at")
    list_filter = ("status",)
    exclude = ("encrypted_customer_id",)


@admin.register(EvidenceEvent)
class EvidenceEventAdmin(ReadOnlyAdmin):
    list_display = ("request", "kind", "at")
    list_filter = ("kind",)
