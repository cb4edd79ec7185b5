"""The only skips a test run may have, each with its reason. Any other skip fails the run.

A test that needs a tool (node, curl, chromium) gets it from `make install-test`; a missing tool is a
setup bug, not a reason to skip. The entries here are tests that cannot pass for a reason outside
this project, such as a LangChain standard test that fails only because the bundled 135M model is too
weak. Key: the test's node id with its parameters, or without them to allow every parametrization.
"""

ALLOWED_SKIPS: dict[str, str] = {}


def allowed(nodeid: str) -> str | None:
    """The reason `nodeid` may be skipped, or None."""
    if nodeid in ALLOWED_SKIPS:
        return ALLOWED_SKIPS[nodeid]
    base = nodeid.split("[", 1)[0]
    return ALLOWED_SKIPS.get(base)
