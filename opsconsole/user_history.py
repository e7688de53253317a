"""The history of people's accounts: who gave whom which role, who disabled whom.

Django keeps no history of users, so django-simple-history records one here with
two deliberate differences from the other audited models:

- Signing in saves `last_login` (and a password upgrade on sign-in saves the
  re-hashed `password`) with `update_fields`: a save that touches only those fields
  is not a change anyone made, so it adds no record. Neither field is kept.
- The password hash is never kept; each record says whether the password changed
  (`password_changed`) and whether password sign-in is possible (`usable_password`).
  Roles (groups) and direct permissions are kept as a snapshot of names on each
  record, so the trail reads "roles: support_agent → support_agent, admin" even after
  a group is renamed, and diffing a page of records needs no extra queries.

Membership changes made anywhere (shell, commands, `group.user_set`) add a record; the
admin instead saves the user and its roles as one record with the reason it asks for
(opsconsole/admin.py).
"""

from functools import partial

import simple_history
from django.contrib.auth import get_user_model
from django.db import models
from django.db.models.signals import m2m_changed
from simple_history.models import HistoricalRecords
from simple_history.signals import pre_create_historical_record

# Kept out of the history: sign-in bookkeeping and the credential itself.
NOT_RECORDED = ("last_login", "password")
# Fields only the history has, compared like the user's own fields in the trail.
SNAPSHOT_FIELDS = ("roles", "direct_permissions", "usable_password")


class UserSnapshot(models.Model):
    """What a user record adds to the user's own fields: access, password events."""

    roles = models.TextField(blank=True, default="")
    direct_permissions = models.TextField(blank=True, default="")
    usable_password = models.BooleanField(default=True)
    password_changed = models.BooleanField(default=False)

    audit_snapshot_fields = SNAPSHOT_FIELDS

    class Meta:
        abstract = True


def _password_set(user) -> bool:
    # set_password() keeps the raw password in _password until save() has run the
    # validators' password_changed hooks, i.e. until after post_save.
    return getattr(user, "_password", None) is not None


class UserHistoricalRecords(HistoricalRecords):
    """HistoricalRecords for the user model: skips sign-in saves, fills snapshots."""

    registered: "UserHistoricalRecords | None" = None

    def finalize(self, sender, **kwargs):
        super().finalize(sender, **kwargs)
        type(self).registered = self
        pre_create_historical_record.connect(
            _fill_snapshot, sender=sender.history.model, weak=False
        )

    def post_save(self, instance, created, using=None, **kwargs):
        update_fields = kwargs.get("update_fields")
        if (
            not created
            and update_fields is not None
            and set(update_fields) <= set(NOT_RECORDED)
            and not _password_set(instance)
        ):
            return  # update_last_login, or a password re-hashed on sign-in
        super().post_save(instance, created, using=using, **kwargs)

    def get_change_reason_for_object(self, instance, history_type, using):
        reason = super().get_change_reason_for_object(instance, history_type, using)
        if reason:
            return reason
        # Outside the admin (commands, the user's own password form, the shell) no
        # one is asked why: say what happened, so no record has an empty reason.
        if history_type == "+":
            return "Created (outside the admin)"
        if history_type == "-":
            return "Deleted (outside the admin)"
        if _password_set(instance):
            return "Password changed"
        return "Changed outside the admin"


def record_user_change(user, history_type: str = "~") -> None:
    """Add one record for `user` now (the admin saves a user and its roles as one)."""
    UserHistoricalRecords.registered.create_historical_record(user, history_type)


def _names(queryset) -> str:
    return ", ".join(sorted(queryset))


def _fill_snapshot(sender, instance, history_instance, **kwargs) -> None:
    if instance.pk is not None and history_instance.history_type != "+":
        history_instance.roles = _names(instance.groups.values_list("name", flat=True))
        history_instance.direct_permissions = _names(
            f"{app_label}.{codename}"
            for app_label, codename in instance.user_permissions.values_list(
                "content_type__app_label", "codename"
            )
        )
    history_instance.usable_password = instance.has_usable_password()
    history_instance.password_changed = _password_set(instance)


def _memberships_changed(
    sender, instance, action, reverse, model, pk_set, *, attr: str, **kwargs
) -> None:
    """A user's roles or direct permissions changed: one record per user."""
    if reverse:  # group.user_set.add(...): instance is the group
        if action == "pre_clear":
            instance._clearing_user_ids = list(
                model.objects.filter(**{attr: instance}).values_list("pk", flat=True)
            )
            return
        if action not in ("post_add", "post_remove", "post_clear"):
            return
        ids = pk_set if action != "post_clear" else instance._clearing_user_ids
        users = list(model.objects.filter(pk__in=ids or ()))
    else:
        if action not in ("post_add", "post_remove", "post_clear"):
            return
        users = [instance]
    for user in users:
        if not hasattr(user, "skip_history_when_saving"):
            record_user_change(user)


def register() -> None:
    user_model = get_user_model()
    simple_history.register(
        user_model,
        app="opsconsole",
        records_class=UserHistoricalRecords,
        excluded_fields=list(NOT_RECORDED),
        bases=[UserSnapshot],
        history_change_reason_field=models.TextField(null=True),
    )
    for attr in ("groups", "user_permissions"):
        m2m_changed.connect(
            partial(_memberships_changed, attr=attr),
            sender=getattr(user_model, attr).through,
            weak=False,
            dispatch_uid=f"opsconsole.user_history.{attr}",
        )
