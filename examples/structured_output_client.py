"""An async client for llmservice's structured output: answers that always parse and follow a schema.

Run a server (`make run`), then:

    python examples/structured_output_client.py                      # http://127.0.0.1:8000, tier "light"
    python examples/structured_output_client.py --base-url http://host:8000 --model medium

Needs only `pip install openai`. Every field in these schemas is bounded (maxLength, maxItems):
the server enforces the schema token by token, and bounds keep a small model from rambling
inside a string until `max_tokens`. Guide: docs/structured_output_client_guide.md
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from openai import AsyncOpenAI

ENTITIES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "people": {"type": "array", "items": {"type": "string", "maxLength": 40}, "maxItems": 4},
        "organizations": {"type": "array", "items": {"type": "string", "maxLength": 40}, "maxItems": 4},
        "locations": {"type": "array", "items": {"type": "string", "maxLength": 40}, "maxItems": 4},
        "dates": {"type": "array", "items": {"type": "string", "maxLength": 40}, "maxItems": 4},
    },
    "required": ["people", "organizations", "locations", "dates"],
    "additionalProperties": False,
}

PRODUCT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 60},
        "description": {"type": "string", "maxLength": 200},
        "price": {"type": "number", "minimum": 0, "maximum": 100000},
        "currency": {"enum": ["USD", "EUR", "GBP"]},
        "features": {"type": "array", "items": {"type": "string", "maxLength": 60}, "minItems": 1, "maxItems": 5},
        "in_stock": {"type": "boolean"},
    },
    "required": ["name", "description", "price", "currency", "features", "in_stock"],
    "additionalProperties": False,
}


class StructuredOutputError(RuntimeError):
    """The answer was cut short (finish_reason "length"): raise max_tokens or tighten the schema."""


class StructuredLLMClient:
    """Structured answers from an OpenAI-compatible llmservice endpoint."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000/v1",
        model: str = "light",
        *,
        api_key: str = "unused",
        max_tokens: int = 400,
        temperature: float = 0.0,
    ):
        self.client = AsyncOpenAI(base_url=base_url, api_key=api_key)
        self.model = model
        self.max_tokens = max_tokens
        self.temperature = temperature

    async def complete_json(self, prompt: str, schema: dict[str, Any], name: str, *, system: str | None = None) -> dict:
        """One JSON object valid against `schema` (the server guarantees it or says why not)."""
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": prompt})
        response = await self.client.chat.completions.create(
            model=self.model,
            messages=messages,
            response_format={"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}},
            max_tokens=self.max_tokens,
            temperature=self.temperature,
        )
        choice = response.choices[0]
        if choice.finish_reason == "length":
            raise StructuredOutputError(f"the {name} answer was cut at max_tokens={self.max_tokens}")
        return json.loads(choice.message.content)

    async def extract_entities(self, text: str) -> dict[str, list[str]]:
        """People, organizations, locations and dates mentioned in `text`."""
        return await self.complete_json(
            f"Extract the named entities from this text:\n\n{text}",
            ENTITIES_SCHEMA,
            "entities",
            system="You extract named entities. List each entity once, exactly as written in the text.",
        )

    async def generate_product(self, kind: str) -> dict[str, Any]:
        """A made-up product listing of the given kind: name, description, price, features, ..."""
        return await self.complete_json(
            f"Invent a product listing for a {kind}.",
            PRODUCT_SCHEMA,
            "product",
            system="You write short, realistic product listings.",
        )

    async def close(self) -> None:
        await self.client.close()

    async def __aenter__(self) -> "StructuredLLMClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="the server, without /v1")
    parser.add_argument("--model", default="light", help="a tier name or alias")
    args = parser.parse_args()
    async with StructuredLLMClient(base_url=args.base_url.rstrip("/") + "/v1", model=args.model) as llm:
        entities, product = await asyncio.gather(
            llm.extract_entities("Tim Cook presented the new iPhone at Apple Park in Cupertino on 9 September 2025."),
            llm.generate_product("coffee grinder"),
        )
    print(json.dumps({"entities": entities, "product": product}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
