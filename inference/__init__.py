"""Backends and the manager of lazily loaded models. Public surface for the other apps."""
