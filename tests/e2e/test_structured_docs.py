"""The structured output guide's examples and the example client run as written (only the port differs)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
GUIDE = (ROOT / "docs" / "structured_output_client_guide.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", GUIDE, re.S)


def on(server, code: str) -> str:
    return code.replace("http://127.0.0.1:8000", server.base_url)


def load_example():
    spec = importlib.util.spec_from_file_location("structured_output_client", ROOT / "examples" / "structured_output_client.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_client(llm_server):
    example = load_example()

    async def run():
        async with example.StructuredLLMClient(base_url=llm_server.base_url + "/v1") as llm:
            return await asyncio.gather(
                llm.extract_entities("Angela Merkel met Airbus engineers in Toulouse in 2019."),
                llm.generate_product("bicycle"),
            )

    entities, product = asyncio.run(run())
    jsonschema.validate(entities, example.ENTITIES_SCHEMA)
    jsonschema.validate(product, example.PRODUCT_SCHEMA)
    assert {"people", "organizations", "locations"} <= set(entities)
    assert {"name", "price", "features"} <= set(product)


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_examples_run(llm_server, index, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    code = compile(on(llm_server, blocks("python")[index]), f"guide python example {index}", "exec", dont_inherit=True)
    exec(code, {"__name__": "guide_example"})
    assert capsys.readouterr().out.strip()


@pytest.mark.skipif(not shutil.which("node"), reason="node is not installed")
def test_javascript_example_runs(llm_server, tmp_path):
    (code,) = blocks("javascript")
    script = tmp_path / "product.mjs"
    script.write_text(on(llm_server, code))
    out = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()


@pytest.mark.skipif(not shutil.which("curl"), reason="curl is not installed")
@pytest.mark.parametrize("index", range(len(blocks("bash"))))
def test_curl_examples_run(llm_server, index):
    command = on(llm_server, blocks("bash")[index])
    out = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0
    if '"strict": true' in command:
        assert '"unsupported_parameter"' in out.stdout and "'uniqueItems' at #/properties/tags" in out.stdout
    elif '"stream": true' in command:
        assert '"tool_calls"' in out.stdout and "data: [DONE]" in out.stdout
    else:
        assert '"chat.completion"' in out.stdout
        if '"regex"' in command:
            content = json.loads(out.stdout)["choices"][0]["message"]["content"]
            assert re.fullmatch(r"[A-Z]{2}-[0-9]{3}-[A-Z]{2}", content), content
