from django.contrib import admin
from django.urls import path

from openai_api.api import api, health

urlpatterns = [
    path("admin/", admin.site.urls),
    path("health", health, name="health"),
    path("v1/", api.urls),
]
