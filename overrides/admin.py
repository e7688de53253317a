"""Admin pages: admins edit surfaces, regions and the catalog here, each edit audited
with its actor and a generated reason (the fields it changed); rules are read-only
because every rule change must go through the services (audit, version, change feed)."""

from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from .models import Block, Boost, CatalogItem, OverrideChange, Region, Surface


class ReasonedHistoryAdmin(SimpleHistoryAdmin):
    """Admin edits say what changed, so the audit trail has a reason for each."""

    def save_model(self, request, obj, form, change):
        fields = ", ".join(form.changed_data) or "nothing"
        obj._history_user = request.user
        obj._change_reason = (
            f"Changed in the admin: {fields}" if change else "Added in the admin"
        )
        super().save_model(request, obj, form, change)

    def delete_model(self, request, obj):
        obj._history_user = request.user
        obj._change_reason = "Deleted in the admin"
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        # One by one, so each deletion is recorded with its actor and reason.
        for obj in queryset:
            self.delete_model(request, obj)


@admin.register(Surface)
class SurfaceAdmin(ReasonedHistoryAdmin):
    list_display = ("code", "name", "is_active")
    list_filter = ("is_active",)
    search_fields = ("code", "name")


@admin.register(Region)
class RegionAdmin(ReasonedHistoryAdmin):
    list_display = ("code", "name", "is_active")
    list_filter = ("is_active",)
    search_fields = ("code", "name")


@admin.register(CatalogItem)
class CatalogItemAdmin(ReasonedHistoryAdmin):
    list_display = ("item_id", "title", "category", "created_at")
    list_filter = ("category",)
    search_fields = ("item_id", "title")

    def save_model(self, request, obj, form, change):
        if change and not obj.history.exists():
            _record_imported_state(obj.pk)
        super().save_model(request, obj, form, change)


def _record_imported_state(pk: int) -> None:
    """Imports add no history (bulk upserts, see the model): before an item's first
    edit, record the row as the import left it, dated when it was imported, so the
    edit shows its before."""
    item = CatalogItem.objects.get(pk=pk)
    history_model = CatalogItem.history.model
    history_model.objects.create(
        history_type="+",
        history_date=item.imported_at,
        history_change_reason="As imported (recorded at its first edit in the admin)",
        **{f.attname: getattr(item, f.attname) for f in history_model.tracked_fields},
    )


class ReadOnlyRuleAdmin(SimpleHistoryAdmin):
    """Rules are changed in the console pages only, so the audit trail stays whole."""

    list_display = (
        "id",
        "item_id",
        "surface",
        "region",
        "starts_at",
        "created_by",
        "withdrawn_at",
    )
    list_filter = ("surface", "region")
    search_fields = ("item_id", "reason")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


admin.site.register(Block, ReadOnlyRuleAdmin)
admin.site.register(Boost, ReadOnlyRuleAdmin)


@admin.register(OverrideChange)
class OverrideChangeAdmin(admin.ModelAdmin):
    list_display = ("version", "action", "created_at")
    list_filter = ("action",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
