"""bench/call_decision.py: the next-token distribution it reads a model's call/no-call decision from is the plain
forward pass's, whatever the padding of the prompt's bucket."""
import sys

import jax
import jax.numpy as jnp
import numpy as np

from conftest import ROOT
from gemma_toolcall import model as gemma

sys.path.insert(0, str(ROOT / "bench"))
import call_decision  # noqa: E402


def test_first_token_probabilities_are_the_unpadded_forward_pass(tiny_base):
    tok = gemma.Tokenizer(tiny_base / "tokenizer.model")
    model, _ = gemma.load(tiny_base, dtype=jnp.float32)
    for prompt in ["x", "a longer prompt, padded less"]:
        ids = [gemma.BOS] + tok.encode(prompt)
        assert len(ids) < 32  # the bucket pads it to 32
        probs = np.asarray(call_decision.first_token_probs(model, tok, prompt))
        n = len(ids)
        logits, _ = model(jnp.array([ids]), jnp.arange(n)[None], None, jnp.tril(jnp.ones((1, n, n), bool)))
        want = np.asarray(jax.nn.softmax(logits[0, -1].astype(jnp.float32)))
        np.testing.assert_allclose(probs, want, atol=1e-5)
