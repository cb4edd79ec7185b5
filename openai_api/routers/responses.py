from django.http import HttpRequest
from ninja import Router

from ..schemas.errors import GENERATION_ERRORS, READ_ERRORS, error_responses
from ..schemas.response_objects import ResponseDeleted, ResponseObject
from ..schemas.responses import ResponseCreateRequest
from ..serving.responses import response_create, response_delete, response_retrieve

router = Router(tags=["responses"])


@router.post("/responses", response={200: ResponseObject, **error_responses(*GENERATION_ERRORS)},
             summary="Create a response (streaming with stream=true: the response.* events)")
async def create_response(request: HttpRequest, body: ResponseCreateRequest):
    """https://platform.openai.com/docs/api-reference/responses/create"""
    return await response_create(request, body)


@router.get("/responses/{response_id}", response={200: ResponseObject, **error_responses(*READ_ERRORS)},
            summary="Retrieve a stored response")
async def retrieve_response(request: HttpRequest, response_id: str):
    """https://platform.openai.com/docs/api-reference/responses/get"""
    return await response_retrieve(request, response_id)


@router.delete("/responses/{response_id}", response={200: ResponseDeleted, **error_responses(*READ_ERRORS)},
               summary="Delete a stored response")
async def delete_response(request: HttpRequest, response_id: str):
    """https://platform.openai.com/docs/api-reference/responses/delete"""
    return await response_delete(request, response_id)
