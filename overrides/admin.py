"""Admin pages: admins edit surfaces, regions and the catalog here, each edit audited
with its actor and a generated reason (the fields it changed); rules are read-only
because every rule change must go through the services (audit, version, change feed)."""

from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from opsconsole.admin_mixins import AuditedDeletesMixin, ReadOnlyAdminMixin

from .models import Block, Boost, CatalogItem, OverrideChange, Region, Surface


class ReasonedHistoryAdmin(AuditedDeletesMixin, SimpleHistoryAdmin):
    """Admin edits say what changed, so the audit trail has a reason for each."""

    def save_model(self, request, obj, form, change):
        fields = ", ".join(form.changed_data) or "nothing"
        obj._history_user = request.user
        obj._change_reason = (
            f"Changed in the admin: {fields}" if change else "Added in the admin"
        )
        super().save_model(request, obj, form, change)


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
        if change:
            _record_imported_state(obj.pk)
        super().save_model(request, obj, form, change)


def _record_imported_state(pk: int) -> None:
    """Imports add no history (bulk upserts, see the model): before an admin edit,
    when the row differs from its latest history record (never edited, or imported
    again since), record the row as the import left it, dated when it was imported,
    so the edit's diff is against the import and not the earlier admin state."""
    item = CatalogItem.objects.get(pk=pk)
    history_model = CatalogItem.history.model
    fields = [f.attname for f in history_model.tracked_fields]
    latest = item.history.order_by("-history_date", "-history_id").first()
    if latest is not None and all(
        getattr(latest, name) == getattr(item, name) for name in fields
    ):
        return
    history_model.objects.create(
        history_type="+" if latest is None else "~",
        history_date=item.imported_at,
        history_change_reason="As imported (recorded at its next edit in the admin)",
        **{name: getattr(item, name) for name in fields},
    )


class ReadOnlyRuleAdmin(ReadOnlyAdminMixin, SimpleHistoryAdmin):
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


admin.site.register(Block, ReadOnlyRuleAdmin)
admin.site.register(Boost, ReadOnlyRuleAdmin)


@admin.register(OverrideChange)
class OverrideChangeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("version", "action", "created_at")
    list_filter = ("action",)
