"""The README's curl, openai and LangChain examples work as written (only the port differs), and
each gives the answer its example promises: the shape is checked, not just that something printed."""

import json
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", README, re.S)


def on(server, code):
    return code.replace("http://127.0.0.1:8000", server.base_url)


# --- Python: what each example leaves in its namespace and prints ---------------------------------
def check_chat(ns: dict, out: str) -> None:
    from openai.types.chat import ChatCompletion

    reply = ns["reply"]
    assert isinstance(reply, ChatCompletion) and reply.model == "light"
    content = reply.choices[0].message.content
    assert content and out.startswith(content + "\n")
    assert out[len(content) + 1 :].strip()  # the streamed answer printed after it


def check_langchain(ns: dict, out: str) -> None:
    from langchain_openai import ChatOpenAI

    assert isinstance(ns["llm"], ChatOpenAI) and ns["llm"].model_name == "light"
    assert out.strip() and out.strip() != "None"


def check_embeddings(ns: dict, out: str) -> None:
    data = ns["vectors"].data
    assert [d.index for d in data] == [0, 1] and all(len(d.embedding) == 384 for d in data)
    assert out == "384\n"


def check_structured(ns: dict, out: str) -> None:
    city = ns["city"]
    assert isinstance(city, ns["City"]) and city.name and city.country
    assert out == f"{city}\n"


PYTHON_CHECKS = {  # a marker in the example's code -> what its result must look like
    "client.chat.completions.parse": check_structured,
    "ChatOpenAI": check_langchain,
    "client.embeddings.create": check_embeddings,
    "client.chat.completions.create": check_chat,
}


def python_examples() -> list[str]:
    return [b for b in blocks("python") if "127.0.0.1:8000" in b]


def check_for(code: str, checks: dict):
    matched = [check for marker, check in checks.items() if marker in code]
    assert matched, f"a README example with no check of its result:\n{code}"
    return matched[0]


@pytest.mark.parametrize("index", range(len(python_examples())))
def test_python_examples_run(llm_server, index, capsys):
    code = python_examples()[index]
    check = check_for(code, PYTHON_CHECKS)
    namespace: dict = {}
    exec(compile(on(llm_server, code), f"README python example {index}", "exec"), namespace)
    check(namespace, capsys.readouterr().out)


# --- curl ----------------------------------------------------------------------------------------
def check_curl_chat(out: str) -> None:
    body = json.loads(out)
    assert body["object"] == "chat.completion" and body["model"] == "light"
    assert isinstance(body["choices"][0]["message"]["content"], str) and body["usage"]["completion_tokens"] <= 32


def check_curl_x_cache(out: str) -> None:
    assert re.fullmatch(r"x-cache: (HIT|MISS)\r?\n", out, re.I), out


def check_curl_bge_m3(out: str) -> None:
    item = json.loads(out)["data"][0]
    assert len(item["embedding"]) == 384 and isinstance(item["sparse_embedding"], dict)  # the tiny test model's
    assert item["colbert_embedding"] and all(len(v) == 384 for v in item["colbert_embedding"])  # weights are random


def check_curl_rerank(out: str) -> None:
    body = json.loads(out)
    assert [r["index"] for r in body["results"]] == [1]  # "Cats eat meat." answers what cats eat
    assert 0 <= body["results"][0]["relevance_score"] <= 1


def check_curl_mlx_chat(out: str) -> None:
    body = json.loads(out)
    assert body["object"] == "chat.completion" and body["model"] == "light-mlx"
    assert body["choices"][0]["message"]["content"] and body["usage"]["completion_tokens"] <= 32


CURL_CHECKS = {
    '"model": "light-mlx"': check_curl_mlx_chat,
    "grep -i x-cache": check_curl_x_cache,
    "/v1/chat/completions": check_curl_chat,
    '"model": "m3"': check_curl_bge_m3,
    "/v1/rerank": check_curl_rerank,
}


def curl_examples() -> list[str]:
    return [b for b in blocks("bash") if b.lstrip().startswith("curl") and "127.0.0.1:8000" in b]


@pytest.mark.parametrize("index", range(len(curl_examples())))
def test_curl_examples_run(llm_server, index):
    command = curl_examples()[index]
    check = check_for(command, CURL_CHECKS)
    out = subprocess.run(["bash", "-c", on(llm_server, command)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    check(out.stdout)
