from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from opsconsole import health, metrics_view, views

# The API first (the serving reads lead it): a request walks these patterns in order
# until one matches, so the machines' hot path should not pass every page's first.
urlpatterns = [
    path("api/v1/", include("overrides.api.urls")),
    path("api/v1/", include("explanations.api.urls")),
    path("api/v1/", include("privacy.api.urls")),
    path("", views.DashboardView.as_view(), name="dashboard"),
    path(
        "login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "password/change/",
        auth_views.PasswordChangeView.as_view(success_url="/password/changed/"),
        name="password_change",
    ),
    path(
        "password/changed/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path("settings/api-keys/", views.ApiKeyListView.as_view(), name="apikey_list"),
    path(
        "settings/api-keys/new/",
        views.ApiKeyCreateView.as_view(),
        name="apikey_create",
    ),
    path(
        "settings/api-keys/<int:pk>/revoke/",
        views.ApiKeyRevokeView.as_view(),
        name="apikey_revoke",
    ),
    path("", include("overrides.urls")),
    path("", include("explanations.urls")),
    path("", include("privacy.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path(
        "api/docs/",
        # The split view serves its start-up script as a file (no inline script).
        SpectacularSwaggerSplitView.as_view(url_name="api-schema"),
        name="api-docs",
    ),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics_view.MetricsView.as_view(), name="metrics"),
    path("admin/", admin.site.urls),
]

handler403 = "opsconsole.views.permission_denied"
handler404 = "opsconsole.views.page_not_found"
handler500 = "opsconsole.views.server_error"

admin.site.site_header = "OpsConsole settings"
admin.site.site_title = "OpsConsole"
admin.site.index_title = "Surfaces, regions, catalog and users"
