"""The console's routes plus `api/v1/_bench/baseline`, served by the same process."""

from django.urls import path

from opsconsole import urls as console_urls

from .baseline import BaselineView

urlpatterns = [
    path("api/v1/_bench/baseline", BaselineView.as_view(), name="bench-baseline"),
    *console_urls.urlpatterns,
]

handler403 = console_urls.handler403
handler404 = console_urls.handler404
handler500 = console_urls.handler500
