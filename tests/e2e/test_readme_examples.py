"""The README's curl, openai and LangChain examples work as written (only the port differs)."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", README, re.S)


def on(server, code):
    return code.replace("http://127.0.0.1:8000", server.base_url)


@pytest.mark.parametrize("index", range(len([b for b in blocks("python") if "127.0.0.1:8000" in b])))
def test_python_examples_run(llm_server, index, capsys):
    code = [b for b in blocks("python") if "127.0.0.1:8000" in b][index]
    exec(compile(on(llm_server, code), f"README python example {index}", "exec"), {})
    assert capsys.readouterr().out.strip()


@pytest.mark.skipif(not shutil.which("curl"), reason="curl is not installed")
def test_curl_example_runs(llm_server):
    command = [b for b in blocks("bash") if "curl" in b and "/v1/chat/completions" in b][0]
    out = subprocess.run(["bash", "-c", on(llm_server, command)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and '"chat.completion"' in out.stdout
