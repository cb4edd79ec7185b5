"""Load parameters move from fixed Tier columns into the per-backend `options` JSON (issue 12).

A tier's set values of n_ctx, n_gpu_layers, n_threads, n_batch and chat_format become its options;
unset ones stay unset (the global N_CTX, ... settings still fill them). The built-in embedding and
rerank backends never read these columns, so their tiers start with no options. Reversible: going
back moves the options into the columns again.
"""

from django.db import migrations, models

MOVED = ("n_ctx", "n_gpu_layers", "n_threads", "n_batch", "chat_format")
WITHOUT_LOAD_PARAMETERS = ("sentence_transformers", "bge_m3", "cross_encoder", "flag_reranker")


def columns_to_options(apps, schema_editor):
    Tier = apps.get_model("registry", "Tier")
    for tier in Tier.objects.all():
        if tier.backend in WITHOUT_LOAD_PARAMETERS:
            continue
        options = {name: getattr(tier, name) for name in MOVED if getattr(tier, name) not in (None, "")}
        if options:
            tier.options = {**options, **(tier.options or {})}
            tier.save(update_fields=["options"])


def options_to_columns(apps, schema_editor):
    Tier = apps.get_model("registry", "Tier")
    for tier in Tier.objects.all():
        options = tier.options or {}
        for name in MOVED:
            value = options.get(name)
            setattr(tier, name, value if value is not None else ("" if name == "chat_format" else None))
        tier.save(update_fields=list(MOVED))


class Migration(migrations.Migration):

    dependencies = [
        ("registry", "0004_tier_admission_and_api_keys"),
    ]

    operations = [
        migrations.AddField(
            model_name="tier",
            name="options",
            field=models.JSONField(blank=True, default=dict, help_text="The backend's load options."),
        ),
        migrations.RunPython(columns_to_options, options_to_columns),
        migrations.RemoveField(model_name="tier", name="chat_format"),
        migrations.RemoveField(model_name="tier", name="n_batch"),
        migrations.RemoveField(model_name="tier", name="n_ctx"),
        migrations.RemoveField(model_name="tier", name="n_gpu_layers"),
        migrations.RemoveField(model_name="tier", name="n_threads"),
        migrations.AlterField(
            model_name="tier",
            name="backend",
            field=models.CharField(
                default="llamacpp", help_text="One of the backends in settings.INFERENCE_BACKENDS.", max_length=32
            ),
        ),
    ]
