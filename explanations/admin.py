"""Admin pages: the model registry, read-only; models are registered with the
register_model command, which validates the artifact first."""

from django.contrib import admin, messages

from opsconsole.admin_mixins import ReadOnlyAdminMixin

from . import services
from .models import ModelVersion, PredictionView


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "version",
        "framework",
        "output_space",
        "is_classifier",
        "is_active",
        "registered_at",
        "registered_by",
    )
    list_filter = ("framework", "is_active", "name")
    search_fields = ("name", "version")
    readonly_fields = [field.name for field in ModelVersion._meta.fields]
    actions = ["activate"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Make the selected version the active one")
    def activate(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(
                request, "Select exactly one version.", level=messages.ERROR
            )
            return
        model_version = services.activate_model_version(
            model_version_id=queryset.get().pk, actor=request.user
        )
        self.message_user(request, f"{model_version} is now active.")


@admin.register(PredictionView)
class PredictionViewAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("prediction", "user", "viewed_at")
    list_select_related = ("prediction", "user")
    search_fields = ("prediction__prediction_id", "user__username")
