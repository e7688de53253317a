"""Admin pages: read-only, because every privacy change must go through the services
(evidence, encryption, opt-outs); the console's own pages are where people act."""

from django.contrib import admin

from .models import DeletionRequest, Downstream, EvidenceEvent


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


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
