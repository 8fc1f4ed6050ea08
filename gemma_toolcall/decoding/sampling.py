"""Greedy decoding for evaluation: tunix's KV-cache sampler over prompts batched by length, each bucket with its
own KV cache, and a prefill that projects only the last position onto the vocabulary. Only evaluate (and the
benches) depend on it, so a decoding change reruns evaluate, not training."""
from __future__ import annotations

import dataclasses
import functools

from gemma_toolcall.decoding.call_grammar import FREE, NUMBER_MAY_END, CallGrammar, token_allowed
from gemma_toolcall.chat_format import CALL_OPEN, START, parse_model_turn
from gemma_toolcall.model import EOS, Tokenizer

MODEL_TURN = f"{START}model\n"
OPEN_TAG = CALL_OPEN.rstrip("\n")
FULL_BATCH_LENGTH = 2048  # padded prompt length up to which a batch has all `batch_size` rows


def generate(model, config: dict, tokenizer: Tokenizer, prompts: list[str], max_new_tokens: int,
             batch_size: int, progress=None,
             tools: list[list[dict]] | None = None) -> list[Completion]:
    """Greedy completions with tunix's KV-cache sampler, stopping at `<end_of_turn>` or `<eos>`, one `Completion` per
    prompt, in prompt order. Prompts are rendered text without `<bos>` (the sampler adds it).

    With `tools` (the tools offered to each prompt), decoding is constrained: inside a `<tool_call>` block each token
    is the most likely one that keeps the call well-formed for those tools (`call_grammar`); outside one, and always
    without `tools`, it is the most likely token; `Completion` notes what the grammar changed and how the model
    chose between ending its turn and another call after each call it closed.

    Prompts are batched by length (shortest first, `plan_batches`), and each batch is left-padded only to the power
    of two above its longest prompt: one compilation per distinct padded length, and little prefill spent on
    padding. A batch stops decoding once all its rows have ended their turn."""
    from tunix.generate import sampler as sampler_lib
    from tunix.generate.tokenizer_adapter import TokenizerAdapter

    lengths = [len(tokenizer.encode(p)) + 1 for p in prompts]  # + <bos>
    view, samplers = sampling_view(model), {}

    def sampler_for(prompt_length: int):
        # One KV cache per bucket, sized to it: every decoding step reads the whole cache, so one sized for the
        # longest prompt of the set made a 200-token prompt's steps read 8k positions per layer.
        if prompt_length not in samplers:
            samplers[prompt_length] = sampler_lib.Sampler(view, TokenizerAdapter(tokenizer.sp), sampler_lib.CacheConfig(
                cache_size=prompt_length + max_new_tokens, num_layers=config["num_hidden_layers"],
                num_kv_heads=config["num_key_value_heads"], head_dim=config["head_dim"]))
        return samplers[prompt_length]

    completions: list[Completion | None] = [None] * len(prompts)
    vocabulary = TokenTexts(tokenizer) if tools is not None else None
    for rows, prompt_length, batch_rows in plan_batches(lengths, batch_size):
        batch = [prompts[i] for i in rows]
        batch += [batch[-1]] * (batch_rows - len(batch))  # a fixed batch shape per bucket: no recompilation
        if tools is not None:
            grammars = [CallGrammar(tools[i]) for i in rows]
            grammars += [grammars[-1]] * (batch_rows - len(grammars))
            outputs = constrained(sampler_for(prompt_length), batch, prompt_length, max_new_tokens, grammars,
                                  tokenizer, vocabulary)
            for i, completion in zip(rows, outputs):
                completions[i] = completion
        else:
            result = sampler_for(prompt_length)(batch, max_generation_steps=max_new_tokens,
                                                max_prompt_length=prompt_length,
                                                eos_tokens=[EOS, tokenizer.end_of_turn], temperature=0.0)
            for i, text, tokens in zip(rows, result.text, result.tokens):
                # The sampler cuts each output at its first stop token: a shorter output stopped on one.
                completions[i] = Completion(text, END_OF_TURN if len(tokens) < max_new_tokens else MAX_NEW_TOKENS)
        if progress is not None:
            progress.update(len(rows))
    return completions


# What stopped an output: the model (`<end_of_turn>` or `<eos>`), a decoding rule (`_Rows`: a call written again, a
# call the budget could not close), or the budget.
END_OF_TURN, REPEATED_CALL, NO_ROOM_FOR_CALL, MAX_NEW_TOKENS = STOPS = \
    ("end_of_turn", "repeated_call", "no_room_for_call", "max_new_tokens")


@dataclasses.dataclass(frozen=True)
class Completion:
    """One prompt's greedy output: its text (without the stop token), what stopped it (`STOPS`), how many of its
    tokens the call grammar changed, and its end margins: where a call had just closed, the model chose between
    ending its turn and a newline that opens another call, and logit(`<end_of_turn>`) - logit(newline) there is
    the margin, one per closed call (positive: it preferred to end; `bench/end_margins.py` reads them)."""
    text: str
    stop: str
    changed: int = 0
    margins: tuple[float, ...] = ()

    @property
    def ended(self) -> bool:
        """Whether the model ended its turn (`<end_of_turn>` or `<eos>`), not a rule or the budget."""
        return self.stop == END_OF_TURN


CANDIDATES = 64  # the most likely tokens tried against the grammar, before the whole vocabulary in order


class TokenTexts:
    """Each token id's decoded text for the grammar (None for control tokens and bytes of a longer UTF-8
    character), and the ids that stop a turn."""

    def __init__(self, tokenizer: Tokenizer):
        sp = tokenizer.sp
        self.texts: list[str | None] = []
        for i in range(sp.get_piece_size()):
            piece = sp.id_to_piece(i)
            if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
                self.texts.append(None)
            elif sp.is_byte(i):
                byte = int(piece[3:5], 16)
                self.texts.append(chr(byte) if byte < 0x80 else None)
            else:
                self.texts.append(piece.replace("\u2581", " "))
        self.stops, self.end = frozenset({EOS, tokenizer.end_of_turn}), tokenizer.end_of_turn
        self.newline = sp.piece_to_id("\n")  # what follows a call's `</tool_call>` where another call comes
        self.encode, self.decode = tokenizer.encode, tokenizer.decode


def constrained(sampler, batch: list[str], prompt_length: int, max_new_tokens: int, grammars: list,
                tokenizer: Tokenizer, vocabulary: TokenTexts) -> list[Completion]:
    """Greedy decoding of one batch under each row's call grammar: tunix's prefill and KV cache, then a compiled
    loop of model steps that hands each step's logits to the host, which picks the tokens (`_Rows.pick`)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from tunix.generate import utils

    ids = [sampler.tokenize(x) for x in batch]
    padded = np.array([utils.pad_to_length(x, target_length=prompt_length, pad_value=sampler.tokenizer.pad_id(),
                                           left=True) for x in ids])
    state = sampler.init_sample_state(jnp.array(padded), total_sampling_steps=prompt_length + max_new_tokens,
                                      include_logits=False, forbidden_token_ids=None, temperature=0.0, top_p=None,
                                      top_k=None, seed=jax.random.PRNGKey(0), beam_size=None)
    prefill, decode, current = _compiled(sampler)
    state, greedy, logits = prefill(sampler._flattened_transformer_state, state)
    rows = _Rows(grammars, batch, vocabulary, max_new_tokens)
    current["rows"] = rows
    first, _ = rows.pick(np.asarray(greedy), np.asarray(logits))
    if not rows.all_done() and max_new_tokens > 1:
        jax.block_until_ready(decode(sampler._flattened_transformer_state, state, jnp.asarray(first),
                                     jnp.int32(max_new_tokens - 1)))
    return [Completion(tokenizer.decode(o), rule or (END_OF_TURN if d else MAX_NEW_TOKENS), c + bool(rule), tuple(m))
            for o, d, c, rule, m in zip(rows.out, rows.done, rows.changed, rows.rule_stop, rows.margins)]


class _Rows:
    """The host side of constrained decoding for one batch: each row's tokens, grammar state and whether it ended.

    A turn never repeats a call: where a row closes a call equal to one it wrote before (name and arguments), that
    call is dropped and the row stops there. Greedy decoding that repeats a call has lost its place (the next call
    would repeat it again), and a repeated call is never what a question asks. A row a rule stops (this, or a call
    that would not fit the budget) notes the rule in `rule_stop`: it counts as not having ended its turn, since the
    model did not end it, and its end as one token the grammar changed. Where a call has just closed, the row's
    end margin is noted."""

    def __init__(self, grammars: list, batch: list[str], vocabulary: TokenTexts, budget: int):
        self.grammars, self.vocabulary, self.budget = grammars, vocabulary, budget
        self.after_call = [False] * len(batch)  # the row's last token closed a call
        self.margins = [[] for _ in batch]
        # A prompt may open the model turn itself (`...<start_of_turn>model\n<tool_call>\n`): the grammar starts
        # after that text, and a row whose opening text is no call's start decodes freely (state None).
        self.states = [g.feed(FREE, text.rsplit(MODEL_TURN, 1)[-1]) if MODEL_TURN in text else FREE
                       for g, text in zip(grammars, batch)]
        self.out = [[] for _ in batch]
        self.done, self.changed = [False] * len(batch), [0] * len(batch)
        self.closing = [[] for _ in batch]  # token ids of a closing being written (`_closing`)
        # Where each row's open call starts: (text of it in the prompt, index in `out` of its first token).
        self.call_start = [(text.rsplit(MODEL_TURN, 1)[-1], 0) if s is not None and g.in_call(s) else None
                           for g, s, text in zip(grammars, self.states, batch)]
        self.calls = [[] for _ in batch]  # the calls each row has written
        self.rule_stop: list[str | None] = [None] * len(batch)  # the rule that stopped a row, not the model

    def all_done(self) -> bool:
        return all(self.done)

    def record(self, tokens) -> None:
        for r, t in enumerate(tokens.tolist()):
            if self.done[r]:
                continue
            if t in self.vocabulary.stops:
                self.done[r] = True
                continue
            self.out[r].append(t)
            if self.states[r] is not None:
                before = self.states[r]
                self.states[r] = token_allowed(self.grammars[r], before, self.vocabulary.texts[t])
                if self.states[r] is not None and self.grammars[r].in_call(before) != \
                        self.grammars[r].in_call(self.states[r]):
                    self._call_edge(r)

    def _call_edge(self, r: int) -> None:
        """The row's last token opened or closed a call: note where it opened, or check the closed one."""
        if self.grammars[r].in_call(self.states[r]):
            # The open tag is several tokens (`<`, `tool`, `_`, `call`, `>`): the call starts at the one holding `<`.
            start = len(self.out[r]) - 1
            while start > 0 and OPEN_TAG not in self.vocabulary.decode(self.out[r][start:]):
                start -= 1
            self.call_start[r] = ("", start)
            return
        prompt_text, start = self.call_start[r]
        calls = parse_model_turn(prompt_text + self.vocabulary.decode(self.out[r][start:])).calls
        if calls and calls[-1] in self.calls[r]:
            del self.out[r][start:]
            self.done[r], self.rule_stop[r] = True, REPEATED_CALL
        self.calls[r].extend(calls[-1:])
        self.after_call[r] = not self.done[r]

    def pick(self, greedy, logits):
        """The next token of each row (the greedy one unless the grammar refuses it, or the call must close to fit
        the budget), recorded; and whether every row has ended."""
        import numpy as np

        token = np.array(greedy, dtype=np.int32)
        for r in range(len(token)):
            grammar, state = self.grammars[r], self.states[r]
            if self.done[r] or state is None:
                continue  # a row the grammar lost decodes freely
            if not grammar.in_call(state):  # outside a call every token is allowed, but a call must fit
                if self.after_call[r]:
                    self.after_call[r] = False
                    margin = float(logits[r][self.vocabulary.end] - logits[r][self.vocabulary.newline])
                    self.margins[r].append(round(margin, 3))
                if not self._leaves_room(r, int(token[r])):
                    token[r], self.rule_stop[r] = self.vocabulary.end, NO_ROOM_FOR_CALL  # counted in `constrained`
                continue
            choice = self._closing(r) if self.closing[r] else None
            if choice is None:
                choice = token[r]
                if not _allowed(grammar, state, int(choice), self.vocabulary):
                    choice = _best_allowed(grammar, state, logits[r], self.vocabulary)
                    if choice is None:
                        self.states[r] = None  # nothing fits (a name outside the vocabulary): the row goes on freely
                        continue
                if not self._leaves_room(r, int(choice)):
                    self.closing[r] = self.vocabulary.encode(grammar.closing(state) or "")
                    closing = self._closing(r) if self.closing[r] else None
                    choice = choice if closing is None else closing
            self.changed[r] += int(choice != token[r])
            token[r] = choice
        self.record(token)
        return token, np.bool_(self.all_done())

    # The budget: a row inside a call always keeps room for the call's shortest closing (`CallGrammar.closing`)
    # and one token to end its turn. When the token it would write next leaves less, it writes that closing
    # instead; a row that would open a call with less room left ends its turn there (a rule's end, not the
    # model's: NO_ROOM_FOR_CALL), since the call could not be written whole. Without it a row caught in a value (a
    # string the model never closes, an array of one number repeated) ran out of tokens inside the call: no call,
    # and no end of turn. Whether to end the turn after the call stays the model's.

    def _leaves_room(self, r: int, token: int) -> bool:
        after = token_allowed(self.grammars[r], self.states[r], self.vocabulary.texts[token])
        if after is None or not self.grammars[r].in_call(after):
            return True
        text = self.grammars[r].closing(after)
        left = self.budget - len(self.out[r]) - 1  # after this token
        return text is None or len(self.vocabulary.encode(text)) + 1 <= left

    def _closing(self, r: int) -> int | None:
        """The next token of the closing row `r` is writing, or None (and the closing dropped) where the grammar
        reads that token otherwise."""
        token = self.closing[r].pop(0)
        if not _allowed(self.grammars[r], self.states[r], token, self.vocabulary):
            self.closing[r] = []
            return None
        return token


def _best_allowed(grammar: CallGrammar, state: tuple, logits, vocabulary: TokenTexts) -> int | None:
    """The most likely token the grammar allows, where the model's own choice was refused. Inside a number that may
    end here, a token that ends it comes before one that adds a digit: the refused token was no digit (a unit, `$`,
    a word), so the model meant the number to end, and the next most likely digit would start a runaway value
    (`"days": 3000000...` for "3 days")."""
    ending = state[-1][0] == "num" and state[-1][1] in NUMBER_MAY_END
    digit = None
    for t in _by_logit(logits):
        if not _allowed(grammar, state, t, vocabulary):
            continue
        if not (ending and vocabulary.texts[t][:1] in _NUMBER_GOES_ON):
            return t
        digit = t if digit is None else digit
    return digit


_NUMBER_GOES_ON = frozenset("0123456789.eE+-")


def _allowed(grammar: CallGrammar, state: tuple, token: int, vocabulary: TokenTexts) -> bool:
    return token not in vocabulary.stops and token_allowed(grammar, state, vocabulary.texts[token]) is not None


def _by_logit(logits):
    """Token ids, most likely first (ties: lower id first, as argmax), lazily: the CANDIDATES best, then the rest."""
    import numpy as np

    top = np.argpartition(-logits, CANDIDATES)[:CANDIDATES]
    top = top[np.lexsort((top, -logits[top]))]
    yield from top.tolist()
    tried = set(top.tolist())
    yield from (t for t in np.lexsort((np.arange(len(logits)), -logits)).tolist() if t not in tried)


def _compiled(sampler):
    """The prefill and the decoding loop, compiled once per sampler (bucket).

    The prefill is tunix's (`Sampler._prefill_fn`: the same mask, positions and last-position logits, so the same
    greedy tokens), returning the logits instead of sampling from them. The loop's steps write the chosen token at
    the current position, run the model on it against the KV cache, and hand the next position's greedy ids and
    float32 logits to the host callback (the `_Rows` put in the returned dict's "rows"), which returns the tokens to
    write next and whether all rows have ended. A loop on the device, as in tunix's sampler, rather than a jitted
    step called from Python, which was 1.7 times slower per step (0.54 s against 0.32 at batch 16, 1,024-token
    prompts): XLA hoists the work that depends on the weights alone only out of a compiled loop."""
    if getattr(sampler, "_constrained", None) is not None:
        return sampler._constrained
    import dataclasses

    import jax
    import jax.numpy as jnp
    from flax import nnx
    from jax.experimental import io_callback
    from tunix.generate import utils

    pad, cache_size, graphdef = sampler.tokenizer.pad_id(), sampler.cache_config.cache_size, \
        sampler._transformer_graphdef
    current = {}

    def last_logits(logits):
        logits = logits[:, -1].astype(jnp.float32)
        return jnp.argmax(logits, axis=-1), logits

    @jax.jit
    def prefill(params, state):
        n = state.num_input_tokens
        tokens, positions = state.token_buffer[:, :n], state.positions[:, :n]
        transformer = nnx.merge(graphdef, params)
        attention_mask = transformer.get_attention_mask(tokens, inputs_mask=tokens != pad)
        attention_mask = jnp.pad(attention_mask, ((0, 0), (0, 0), (0, cache_size - attention_mask.shape[-1])))
        logits, cache = transformer(tokens, positions, state.cache, attention_mask, decode_only_last_token=True)
        return (dataclasses.replace(state, decoding_step=n, cache=cache), *last_logits(logits))

    def pick(greedy, logits):
        return current["rows"].pick(greedy, logits)

    @jax.jit
    def decode(params, state, token, steps):
        shapes = (jax.ShapeDtypeStruct(token.shape, jnp.int32), jax.ShapeDtypeStruct((), jnp.bool_))

        def body(carry):
            state, token, _, i = carry
            at = state.decoding_step
            buffer = state.token_buffer.at[:, at].set(token)
            attention_mask = utils.compute_attention_masks(at, cache_size, buffer == pad)
            transformer = nnx.merge(graphdef, params)  # inside the loop's trace: LoRA modules mutate on call
            logits, cache = transformer(buffer[:, at][:, None], positions=state.positions[:, at][:, None],
                                        cache=state.cache, attention_mask=attention_mask)
            token, ended = io_callback(pick, shapes, *last_logits(logits), ordered=True)
            state = dataclasses.replace(state, decoding_step=at + 1, token_buffer=buffer, cache=cache)
            return state, token, ended, i + 1

        carry = jax.lax.while_loop(lambda c: ~c[2] & (c[3] < steps), body,
                                   (state, token.astype(jnp.int32), jnp.bool_(False), jnp.int32(0)))
        return carry[0].decoding_step

    sampler._constrained = prefill, decode, current
    return sampler._constrained


def padded_length(n: int) -> int:
    """The bucket of an n-token prompt: the power of two at or above it (at least 32)."""
    return max(32, 1 << (n - 1).bit_length())


def plan_batches(lengths: list[int], batch_size: int) -> list[tuple[list[int], int, int]]:
    """(prompt indices, padded prompt length, batch rows) per batch: prompts shortest first, `batch_size` rows a
    batch, except past FULL_BATCH_LENGTH tokens, where a batch has rows x length^2 <= batch_size x
    FULL_BATCH_LENGTH^2 (prefill's attention scores grow with the square of the length: 16 prompts padded to
    4,096 tokens need more than a 24 GB machine holds)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    rows_at = lambda length: max(1, min(batch_size, batch_size * FULL_BATCH_LENGTH ** 2 // length ** 2))  # noqa: E731
    plan, start = [], 0
    while start < len(order):
        rows = order[start:start + batch_size]
        # A batch does not cross from one bucket past the full-batch length into a longer one: those prompts start
        # their own, smaller batches.
        cap = max(FULL_BATCH_LENGTH, padded_length(lengths[rows[0]]))
        rows = [i for i in rows if padded_length(lengths[i]) <= cap]
        rows = rows[:rows_at(padded_length(lengths[rows[-1]]))]
        length = padded_length(lengths[rows[-1]])
        plan.append((rows, length, rows_at(length)))
        start += len(rows)
    return plan


def sampling_view(model):
    """`model` as tunix's sampler should see it: the prefill computes logits at the last prompt position only.
    tunix's Gemma 3 has no `decode_only_last_token`, so its prefill projects every prompt position onto the
    262,144-token vocabulary (about two thirds of a 270M prefill's FLOPs, and a [batch, prompt, 262,144] float32
    tensor) to keep one row. The view shares the model's parameters."""
    return _last_token_view()(model)


@functools.cache
def _last_token_view():
    from flax import nnx

    class LastTokenLogits(nnx.Module):
        def __init__(self, model):
            self.model = model

        @property
        def config(self):
            return self.model.config

        @property
        def num_embed(self):
            return self.model.num_embed

        def get_attention_mask(self, *args, **kwargs):
            return self.model.get_attention_mask(*args, **kwargs)

        def __call__(self, tokens, positions, cache, attention_mask, decode_only_last_token: bool = False):
            if not decode_only_last_token:
                return self.model(tokens, positions, cache, attention_mask)
            # The full logits go unused, so under jit XLA drops their projection (as in training's loss).
            _, cache = self.model(tokens, positions, cache, attention_mask, output_hidden_states=True)
            (hidden,) = nnx.pop(self.model, nnx.Intermediate)["all_hidden_states"].get_value()
            return self.model.embedder.decode(hidden[:, -1:]), cache

    return LastTokenLogits
