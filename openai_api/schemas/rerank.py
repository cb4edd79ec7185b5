"""The rerank request: Cohere's shape (as Jina and TEI also accept), converted to the neutral request.

https://docs.cohere.com/reference/rerank
https://huggingface.github.io/text-embeddings-inference/#/Text%20Embeddings%20Inference/rerank
"""

from __future__ import annotations

from django.conf import settings
from pydantic import Field

from inference.retrieval import RerankRequest as NeutralRerankRequest
from llmservice.errors import InvalidRequest

from .common import KeepAliveExtension, StrictModel

EMPTY_QUERY = "'query' must not be empty."
NO_DOCUMENTS = "Send the documents to rank as 'documents' (or 'texts'), a non-empty list."
BOTH_DOCUMENTS = "Send either 'documents' or 'texts', not both."
TOO_MANY_DOCUMENTS = "'{param}' has {count} items; at most {limit} are allowed in one request."


class RerankDocument(StrictModel):
    text: str


class RerankRequest(KeepAliveExtension):
    """https://docs.cohere.com/reference/rerank"""

    model: str
    query: str
    documents: list[str | RerankDocument] | None = Field(None, description="Strings or {\"text\": ...} objects.")
    top_n: int | None = Field(None, ge=1, description="Return only the n best results (all by default).")
    return_documents: bool = Field(False, description="Include each result's document text.")

    # --- other servers' names ---------------------------------------------------------------
    texts: list[str] | None = Field(None, description="TEI's name for 'documents'.")

    def document_texts(self) -> tuple[str, ...]:
        if self.documents is not None and self.texts is not None:
            raise InvalidRequest(BOTH_DOCUMENTS, param="texts")
        param = "texts" if self.texts is not None else "documents"
        docs = self.texts if self.texts is not None else self.documents
        if not docs:
            raise InvalidRequest(NO_DOCUMENTS, param=param)
        if len(docs) > settings.RERANK_MAX_DOCUMENTS:
            raise InvalidRequest(
                TOO_MANY_DOCUMENTS.format(param=param, count=len(docs), limit=settings.RERANK_MAX_DOCUMENTS), param=param
            )
        return tuple(d if isinstance(d, str) else d.text for d in docs)

    def to_request(self) -> NeutralRerankRequest:
        if not self.query.strip():
            raise InvalidRequest(EMPTY_QUERY, param="query")
        return NeutralRerankRequest(query=self.query, documents=self.document_texts())
