from django.contrib import admin
from django.urls import path

from openai_api.api import api, health
from openai_api.consumers import status_page
from openai_api.routers.health import metrics, ready
from openai_api.routers.internal import internal_api
from openai_api.routers.rerank import rerank_alias

urlpatterns = [
    path("admin/", admin.site.urls),
    path("health", health, name="health"),
    path("ready", ready, name="ready"),
    path("metrics", metrics, name="metrics"),
    path("status/", status_page, name="status"),
    path("internal/", internal_api.urls),
    path("v1/", api.urls),
    path("rerank", rerank_alias, name="rerank-alias"),
]
