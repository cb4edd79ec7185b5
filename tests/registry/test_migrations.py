"""Migration 0005: tiers' load-parameter columns move into their per-backend options, and back."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("registry", "0004_tier_admission_and_api_keys")]
AFTER = [("registry", "0005_tier_options")]


def migrate(targets):
    """Migrate to `targets`; the models as they are there."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps.get_model("registry", "Tier")


@pytest.fixture
def old_tier_model():
    yield migrate(BEFORE)
    migrate(MigrationExecutor(connection).loader.graph.leaf_nodes("registry"))


def test_set_columns_become_options_and_unset_ones_stay_unset(old_tier_model):
    Tier = old_tier_model
    Tier.objects.create(name="light", model_path="/a.gguf", n_ctx=4096, n_threads=2, n_gpu_layers=-1, chat_format="chatml")
    Tier.objects.create(name="plain", model_path="/b.gguf", n_batch=None, chat_format="")
    Tier.objects.create(name="zero", model_path="/c.gguf", n_gpu_layers=0)
    Tier.objects.create(name="embed", kind="embedding", backend="sentence_transformers", model_path="/m", n_ctx=512)

    Tier = migrate(AFTER)
    options = dict(Tier.objects.values_list("name", "options"))
    assert options == {
        "light": {"n_ctx": 4096, "n_threads": 2, "n_gpu_layers": -1, "chat_format": "chatml"},
        "plain": {},
        "zero": {"n_gpu_layers": 0},  # 0 was set (CPU only): it stays set, not left to N_GPU_LAYERS
        "embed": {},  # the embedding backends never read these columns
    }
    assert not any(f.name in ("n_ctx", "chat_format") for f in Tier._meta.get_fields())

    Tier = migrate(BEFORE)  # and back
    light = Tier.objects.get(name="light")
    assert (light.n_ctx, light.n_threads, light.n_gpu_layers, light.n_batch, light.chat_format) == (4096, 2, -1, None, "chatml")
    assert Tier.objects.get(name="plain").chat_format == ""
