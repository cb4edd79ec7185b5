from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("registry", "0001_initial"),
    ]

    operations = [
        migrations.AlterField(
            model_name="tier",
            name="backend",
            field=models.CharField(
                choices=[
                    ("llamacpp", "llama.cpp (GGUF)"),
                    ("sentence_transformers", "sentence-transformers (embeddings)"),
                    ("bge_m3", "BGE-M3 via FlagEmbedding (dense + sparse + ColBERT embeddings)"),
                    ("cross_encoder", "sentence-transformers CrossEncoder (rerank)"),
                    ("flag_reranker", "FlagEmbedding FlagReranker (rerank)"),
                ],
                default="llamacpp",
                max_length=32,
            ),
        ),
    ]
