"""People in the admin: every change to an account says who made it and why.

Access is an auditor's first question, so the user forms ask for a reason (a ticket,
an approval) instead of generating one: the before and after already say what
changed, only the person can say why. A change to a user and its roles is one audit
record (opsconsole/user_history.py), not one per table written.

Roles are granted through groups only: the groups themselves are read-only here,
because their permissions are code (opsconsole/auth.py ROLE_PERMISSIONS, re-applied
after every migrate), and direct per-user permissions are not offered.
"""

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.forms import (
    AdminPasswordChangeForm,
    AdminUserCreationForm,
    UserChangeForm,
)
from django.contrib.auth.models import Group

from opsconsole.admin_mixins import AuditedDeletesMixin, ReadOnlyAdminMixin
from opsconsole.user_history import record_user_change
from overrides.models import REASON_MAX_LENGTH

User = get_user_model()


def _reason_field() -> forms.CharField:
    return forms.CharField(
        label="Reason",
        max_length=REASON_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Why (a ticket or an approval): it goes into the audit trail.",
    )


class ReasonedUserChangeForm(UserChangeForm):
    change_reason = _reason_field()


class ReasonedUserCreationForm(AdminUserCreationForm):
    change_reason = _reason_field()


class ReasonedPasswordChangeForm(AdminPasswordChangeForm):
    change_reason = _reason_field()

    def save(self, commit=True):
        # The actor comes from HistoryRequestMiddleware; the hash is never recorded.
        what = (
            "Password set in the admin"
            if self.cleaned_data["set_usable_password"]
            else "Password sign-in disabled in the admin"
        )
        self.user._change_reason = f"{what}: {self.cleaned_data['change_reason']}"
        return super().save(commit=commit)


admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class AuditedUserAdmin(AuditedDeletesMixin, UserAdmin):
    form = ReasonedUserChangeForm
    add_form = ReasonedUserCreationForm
    change_password_form = ReasonedPasswordChangeForm
    change_user_password_template = "admin/opsconsole/user_change_password.html"  # noqa: S105
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name", "email")}),
        ("Access", {"fields": ("is_active", "is_staff", "is_superuser", "groups")}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
        ("Why", {"fields": ("change_reason",)}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": (
                    "username",
                    "usable_password",
                    "password1",
                    "password2",
                    "change_reason",
                ),
            },
        ),
    )
    readonly_fields = ("last_login", "date_joined")
    filter_horizontal = ("groups",)

    def save_model(self, request, obj, form, change):
        obj._history_user = request.user
        obj._change_reason = form.cleaned_data["change_reason"]
        if change:
            # Roles are saved after the user (save_related): record both at once.
            obj.skip_history_when_saving = True
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        user = form.instance
        if not change:
            return
        del user.skip_history_when_saving
        if set(form.changed_data) - {"change_reason"}:
            record_user_change(user)


@admin.register(Group)
class ReadOnlyGroupAdmin(ReadOnlyAdminMixin, GroupAdmin):
    """Role definitions are code; the admin shows them and who holds them."""
