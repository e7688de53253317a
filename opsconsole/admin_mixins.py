"""Admin behaviour shared by every app's admin pages, so a rule is written once."""


class ReadOnlyAdminMixin:
    """Shown, never added, changed or deleted here: those changes go through the
    services (audit, version, change feed) or are code."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class AuditedDeletesMixin:
    """A deletion in the admin is recorded (django-simple-history) with its actor
    and a reason, the bulk "delete selected" action too."""

    def delete_model(self, request, obj):
        obj._history_user = request.user
        obj._change_reason = "Deleted in the admin"
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        # One by one, so each deletion is recorded with its actor and reason.
        for obj in queryset:
            self.delete_model(request, obj)
