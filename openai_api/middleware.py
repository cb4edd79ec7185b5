"""Error responses Django or ninja make themselves (unknown route, wrong method) get the envelope."""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings

from .errors import error_response, from_status

DEFAULT_MESSAGES = {404: "Not found: {method} {path}", 405: "Method {method} is not allowed on {path}"}


def _wrap(request, response):
    if (
        response.status_code >= 400
        and request.path.startswith(settings.API_PATH_PREFIXES)
        and not response.get("Content-Type", "").startswith("application/json")
    ):
        template = DEFAULT_MESSAGES.get(response.status_code, "HTTP {status}")
        message = template.format(method=request.method, path=request.path, status=response.status_code)
        return error_response(from_status(response.status_code, message))
    return response


def openai_error_envelope(get_response):
    if iscoroutinefunction(get_response):

        async def middleware(request):
            return _wrap(request, await get_response(request))

        markcoroutinefunction(middleware)
    else:

        def middleware(request):
            return _wrap(request, get_response(request))

    return middleware


openai_error_envelope.sync_capable = True
openai_error_envelope.async_capable = True
