"""One DRF permission class: each request needs one Django model permission."""

from rest_framework.permissions import BasePermission

from opsconsole.auth import missing_permission_message

METHOD_ACTIONS = {
    "GET": "view",
    "HEAD": "view",
    "OPTIONS": "view",
    "POST": "add",
    "PUT": "change",
    "PATCH": "change",
    "DELETE": "delete",
}


class RolePermission(BasePermission):
    """Maps the HTTP method (or the view's named action) to a model permission.

    A view may set `required_permissions = {"lift": "overrides.change_block"}` keyed
    by viewset action or HTTP method; otherwise the queryset's model and the method
    decide. API keys are checked against the view's `api_key_scope` instead (a scope,
    or a dict by action or method); a view without one refuses keys.
    """

    message = "You do not have permission to do this."

    def required_permissions(self, request, view) -> list[str]:
        if not hasattr(view, request.method.lower()):
            # No handler: DRF answers 405, and there is nothing to protect (a view
            # without a queryset used to crash here with a 500).
            return []
        explicit = getattr(view, "required_permissions", {})
        action = getattr(view, "action", None)
        for key in (action, request.method):
            if key in explicit:
                return [explicit[key]]
        if not hasattr(view, "get_queryset"):
            # A view without a queryset names its permissions per method; any
            # other method (OPTIONS) needs all of them rather than a 500.
            return sorted(set(explicit.values())) or ["opsconsole.undeclared"]
        model = view.get_queryset().model
        verb = METHOD_ACTIONS.get(request.method, "change")
        return [f"{model._meta.app_label}.{verb}_{model._meta.model_name}"]

    def required_scope(self, request, view) -> str | None:
        scope = getattr(view, "api_key_scope", None)
        if isinstance(scope, dict):
            return scope.get(getattr(view, "action", None)) or scope.get(request.method)
        return scope

    def has_permission(self, request, view) -> bool:
        from opsconsole.models import ApiKey

        if isinstance(request.auth, ApiKey):
            scope = self.required_scope(request, view)
            if scope is not None and request.auth.has_scope(scope):
                return True
            self.message = (
                f"This API key lacks the scope {scope}."
                if scope
                else "API keys cannot use this endpoint; sign in instead."
            )
            return False
        user = request.user
        if not user or not user.is_authenticated:
            return False
        permissions = self.required_permissions(request, view)
        if user.has_perms(permissions):
            return True
        self.message = missing_permission_message(user, permissions)
        return False
