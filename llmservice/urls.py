from django.contrib import admin
from django.urls import path

from openai_api.api import api, health
from openai_api.routers.rerank import rerank_alias

urlpatterns = [
    path("admin/", admin.site.urls),
    path("health", health, name="health"),
    path("v1/", api.urls),
    path("rerank", rerank_alias, name="rerank-alias"),
]
