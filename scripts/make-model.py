#!/usr/bin/env python3
"""make-model.py OUT.gguf — write the tiny random-weight llama model used by
the end-to-end tests and the demo (DESIGN §6: real compute, gibberish text,
no download).

Needs numpy (Debian python3-numpy, python3-yaml) and the `gguf` package from
the llama.cpp tree that scripts/llama.sh unpacks: run it through
`scripts/llama.sh --model`, which puts that gguf-py on PYTHONPATH.

The model is deterministic (fixed seed: the same bytes on every machine):

- architecture `llama`, 2 blocks, n_embd 128, 4 heads (2 KV heads, GQA),
  n_ff 256, context 4096, all tensors F32 (1.7 MB);
- a SentencePiece-style vocabulary (tokenizer.ggml.model = "llama") of 512
  tokens: <unk>, <s>, </s>, the ChatML markers <|im_start|>/<|im_end|>
  (control tokens), the 256 byte-fallback tokens <0x00>..<0xFF> (so every
  UTF-8 input tokenizes), single printable ASCII characters, and pseudo-latin
  words "▁lorem", "▁ipsum", ...;
- a ChatML chat template, so /v1/chat/completions works.

The weights are random except for two fixed channels of the residual stream
that shape what the model says, so that replies are readable gibberish and
end in a predictable way:

- channel 0 carries a constant in every token embedding and no block writes
  to it, so after the final RMSNorm it acts as a per-token logit bias: byte
  tokens, control tokens, <unk> and single characters get a large negative
  bias and are never sampled, so replies are always ASCII words, "," and ".";
- channel 1 is set only in the embedding of "." and drives the logit of
  <|im_end|> (the EOS): a reply ends right after a sentence ends, and EOS is
  otherwise never produced. Replies are runs of words with occasional ","
  and "."; with max_tokens small (the tests use 8-32) they end by length.

Everything else (attention, SwiGLU FFN, RoPE) is real random compute.
"""

import sys

import numpy as np

import gguf

SEED = 20261125
N_EMBD = 128
N_HEAD = 4
N_HEAD_KV = 2
N_FF = 256
N_LAYER = 2
N_CTX = 4096
N_VOCAB = 512

WORDS = """lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod
tempor incididunt ut labore et dolore magna aliqua enim ad minim veniam quis
nostrud exercitation ullamco laboris nisi aliquip ex ea commodo consequat duis
aute irure in reprehenderit voluptate velit esse cillum fugiat nulla pariatur
excepteur sint occaecat cupidatat non proident sunt culpa qui officia deserunt
mollit anim id est laborum curabitur pretium tincidunt lacus nunc pulvinar
sapien at mauris rhoncus mattis rutrum vitae eros integer nec odio praesent
libero cursus ante dapibus diam nibh quisque semper porta mi massa vestibulum
lacinia arcu eget nulla class aptent taciti sociosqu litora torquent per
conubia nostra inceptos himenaeos fusce tellus ac turpis condimentum neque
pharetra vel felis lectus sem suspendisse potenti ligula maecenas tempus
dictum tortor quam fermentum viverra hendrerit leo morbi placerat donec
ornare sagittis metus nam faucibus augue proin cras mollis tristique pede
risus mauris feugiat aenean volutpat justo purus vehicula posuere ultrices
pellentesque gravida blandit varius eleifend iaculis ultricies fringilla
sodales lobortis luctus dignissim convallis scelerisque accumsan phasellus
venenatis egestas imperdiet nullam malesuada euismod ornare bibendum
suscipit vivamus sollicitudin consequat cum sociis natoque penatibus
magnis dis parturient montes nascetur ridiculus mus etiam erat congue
primis orci auctor elementum interdum facilisis aliquet habitasse platea
dictumst hac tellus habitant senectus netus fames""".split()

CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)

# token types (gguf.TokenType): 1 normal, 2 unknown, 3 control, 6 byte
NORMAL, UNKNOWN, CONTROL, BYTE = 1, 2, 3, 6


def build_vocab():
    tokens, scores, types = [], [], []

    def add(text, score, ttype):
        assert text not in tokens, text
        tokens.append(text)
        scores.append(score)
        types.append(ttype)

    add("<unk>", 0.0, UNKNOWN)
    add("<s>", 0.0, CONTROL)
    add("</s>", 0.0, CONTROL)
    add("<|im_start|>", 0.0, CONTROL)
    add("<|im_end|>", 0.0, CONTROL)
    for b in range(256):
        add("<0x%02X>" % b, 0.0, BYTE)
    # Single characters: "▁" (the SentencePiece space) and printable ASCII.
    add("\u2581", -1000.0, NORMAL)
    for c in range(0x21, 0x7F):
        add(chr(c), -1000.0 - c, NORMAL)
    # Words (with the leading space marker); longer pieces score higher so
    # the tokenizer prefers them when it can build them.
    seen = set()
    for w in WORDS:
        piece = "\u2581" + w
        if piece in seen or piece in tokens:
            continue
        seen.add(piece)
        if len(tokens) >= N_VOCAB:
            break
        add(piece, -float(len(tokens)), NORMAL)
    while len(tokens) < N_VOCAB:  # pad with unused control tokens
        add("<unused%d>" % (N_VOCAB - len(tokens)), 0.0, CONTROL)
    return tokens, scores, types


def main():
    if len(sys.argv) != 2:
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    out = sys.argv[1]
    rng = np.random.default_rng(SEED)
    tokens, scores, types = build_vocab()
    tid = {t: i for i, t in enumerate(tokens)}
    eos = tid["<|im_end|>"]
    head_dim = N_EMBD // N_HEAD

    def rand(*shape, scale):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    # numpy shapes are (out, in): gguf stores them reversed, which is the
    # ne[] order llama.cpp expects (e.g. token_embd ne = {n_embd, n_vocab}).
    embd = rand(N_VOCAB, N_EMBD, scale=1.0)
    embd[:, 0] = 4.0  # the bias channel
    embd[:, 1] = 0.0  # the end-of-sentence channel
    embd[tid["."], 1] = 4.0

    output = rand(N_VOCAB, N_EMBD, scale=0.25)
    output[:, 0] = 0.0
    output[:, 1] = 0.0
    # Only whole words, "," and "." are ever sampled; bytes, control tokens,
    # <unk> and single characters (which read badly) get the large negative
    # bias and exist only so that any input tokenizes.
    speakable = np.array([tok.startswith("\u2581") and len(tok) > 1 and ty == NORMAL
                          for tok, ty in zip(tokens, types)])
    speakable[tid["."]] = speakable[tid[","]] = True
    output[~speakable, 0] = -8.0
    output[tid["."], 0] = 0.4          # sentences end now and then
    output[tid[","], 0] = 0.25
    output[eos, :] = 0.0
    output[eos, 0] = -8.0              # EOS only ...
    output[eos, 1] = 12.0              # ... right after "."

    w = gguf.GGUFWriter(out, "llama")
    w.add_name("confide-tiny-random")
    w.add_description("random weights for tests: real compute, gibberish text")
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_vocab_size(N_VOCAB)
    w.add_context_length(N_CTX)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD_KV)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(10000.0)

    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(tid["<unk>"])
    w.add_bos_token_id(tid["<s>"])
    w.add_eos_token_id(eos)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)

    w.add_tensor("token_embd.weight", embd)
    w.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    w.add_tensor("output.weight", output)
    kv_dim = head_dim * N_HEAD_KV
    for i in range(N_LAYER):
        p = "blk.%d." % i
        attn_out = rand(N_EMBD, N_EMBD, scale=0.5 / np.sqrt(N_EMBD))
        ffn_down = rand(N_EMBD, N_FF, scale=0.5 / np.sqrt(N_FF))
        # No block writes to the two fixed channels (see the docstring).
        attn_out[0:2, :] = 0.0
        ffn_down[0:2, :] = 0.0
        w.add_tensor(p + "attn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        w.add_tensor(p + "attn_q.weight", rand(N_EMBD, N_EMBD, scale=1.0 / np.sqrt(N_EMBD)))
        w.add_tensor(p + "attn_k.weight", rand(kv_dim, N_EMBD, scale=1.0 / np.sqrt(N_EMBD)))
        w.add_tensor(p + "attn_v.weight", rand(kv_dim, N_EMBD, scale=1.0 / np.sqrt(N_EMBD)))
        w.add_tensor(p + "attn_output.weight", attn_out)
        w.add_tensor(p + "ffn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        w.add_tensor(p + "ffn_gate.weight", rand(N_FF, N_EMBD, scale=1.0 / np.sqrt(N_EMBD)))
        w.add_tensor(p + "ffn_up.weight", rand(N_FF, N_EMBD, scale=1.0 / np.sqrt(N_EMBD)))
        w.add_tensor(p + "ffn_down.weight", ffn_down)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
