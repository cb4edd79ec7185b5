"""Engines: loaded models that serve many requests at once (the engine contract of issue 12)."""
