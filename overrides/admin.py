"""Admin pages: admins edit surfaces, regions and the catalog here; rules are read-only
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
class CatalogItemAdmin(admin.ModelAdmin):
    list_display = ("item_id", "title", "category", "created_at")
    list_filter = ("category",)
    search_fields = ("item_id", "title")


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
