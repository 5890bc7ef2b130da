"""Builds tiny random encoder-decoder checkpoints and what Hugging Face generate() makes of them (test/fixtures).

Runs where torch, transformers and tokenizers are installed (no GPU needed: everything runs on the CPU in fp32).
Usage, from the repository root:

    python3 tools/reference/make_seq2seq_fixtures.py --out test/fixtures

Tokenizers (test/fixtures/tokenizers/<name>/): BART reads roberta-style and mBART xlmr-style (both made by
make_bert_family_fixtures.py); this script trains two more SentencePiece-Unigram tokenizer.json files in the
layouts of the real ones (NFKC stands in for the precompiled charsmap, and T5's 100 <extra_id_*> sentinels are
left out to keep the vocabulary small):

- marian-style: </s> <unk> at ids 0-1, <pad> last, "$A </s>" (opus-mt's layout).
- t5-style:     <pad> </s> <unk> at ids 0-2, "$A </s>".

Checkpoints (fp32 safetensors, d_model 32, 2 encoder and 2 decoder layers; tokenizer files symlinked):

- bart-tiny:     BartForConditionalGeneration (post-LN, learned positions offset by 2, layernorm_embedding, gelu),
                 tied head with final_logits_bias; bart-tiny-bin holds the same weights as pytorch_model.bin.
- mbart-tiny:    MBartForConditionalGeneration (pre-LN with final layer norms, scale_embedding), decoder starts at
                 </s>, a language code forced as the first token.
- marian-tiny:   MarianMTModel (sinusoidal positions, scale_embedding, swish), decoder starts at <pad>.
- t5-tiny:       T5ForConditionalGeneration v1.0 (relu, tied head scaled by d_model^-0.5), relative position buckets.
- t5v11-tiny:    T5 v1.1 (gated-gelu, untied head, d_kv 16 so heads * d_kv = 64 != d_model).

reference.json: per source text its ids, the encoder's last hidden state, and runs of generate() with the
kwargs given (greedy, beam search with scores, penalties, no_repeat_ngram_size, forced tokens), each with the
generated ids (decoder start token left out) and, for greedy runs, the raw logits of the first steps.
"""
import argparse
import json
import os
import sys

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (BartConfig, BartForConditionalGeneration, GenerationConfig, MarianConfig, MarianMTModel,
                          MBartConfig, MBartForConditionalGeneration, T5Config, T5ForConditionalGeneration)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import link_tokenizer, load_fp32, r, randomize_by, write_json  # noqa: E402
from train_tokenizers import corpus, write_dir  # noqa: E402

TEXTS = ["The quick brown fox jumps over the lazy dog.", "Hello, world!", "translate English to German: How are you today?"]
LOGIT_STEPS = 3


def unigram_style(out, name, specials, pad_last, config):
    t = Tokenizer(models.Unigram())
    t.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(" {2,}", " ")])
    t.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    t.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    t.train_from_iterator(corpus(), trainers.UnigramTrainer(vocab_size=250, special_tokens=specials, unk_token="<unk>", show_progress=False))
    if pad_last:
        t.add_special_tokens(["<pad>"])
    eos = t.token_to_id("</s>")
    t.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A $B </s>", special_tokens=[("</s>", eos)])
    write_dir(os.path.join(out, name), json.loads(t.to_str()), config, {k: config[k] for k in ("eos_token", "unk_token", "pad_token")})


def randomize(model, seed):
    randomize_by(model, seed, lambda n: "norm" in n and n.endswith("weight"), lambda n: "shared" in n or "embed" in n or "lm_head" in n)
    with torch.no_grad():
        bias = getattr(model, "final_logits_bias", None)
        if bias is not None:
            bias.copy_(0.1 * torch.randn(bias.shape, generator=torch.Generator().manual_seed(seed + 100)))


def runs_for(name, gen):
    """generate() kwargs for each run: every fixture gets greedy and beam search; some get the other options."""
    base = {"max_new_tokens": 12}
    runs = [
        ("greedy", {**base, "num_beams": 1, "do_sample": False}),
        ("beam", {**base, "num_beams": 4, "num_return_sequences": 2, "do_sample": False}),
    ]
    if name == "bart-tiny":
        runs += [("ngram", {**base, "no_repeat_ngram_size": 2}),
                 ("beam-ngram", {**base, "num_beams": 3, "no_repeat_ngram_size": 2, "length_penalty": 1.5}),
                 ("repetition", {**base, "repetition_penalty": 1.5, "min_new_tokens": 5})]
    if name == "mbart-tiny":
        runs += [("forced-eos", {"max_new_tokens": 6, "forced_eos_token_id": 2}),
                 ("beam-forced", {"max_new_tokens": 6, "num_beams": 3, "forced_eos_token_id": 2, "early_stopping": True})]
    if name == "t5v11-tiny":
        runs += [("beam-lp", {**base, "num_beams": 5, "num_return_sequences": 3, "length_penalty": 0.6})]
    return runs


def reference(model, tok, name):
    out = {"kind": "seq2seq", "sources": []}
    for text in TEXTS:
        ids = tok.encode(text).ids
        x = torch.tensor([ids])
        src = {"text": text, "ids": ids, "runs": []}
        with torch.no_grad():
            src["encoder_hidden"] = r(model.get_encoder()(input_ids=x).last_hidden_state[0])
            for run, kwargs in runs_for(name, model.generation_config):
                o = model.generate(input_ids=x, return_dict_in_generate=True, output_logits=True, output_scores=True, **kwargs)
                seqs = o.sequences[:, 1:].tolist()
                entry = {"name": run, "kwargs": kwargs, "sequences": seqs}
                if kwargs.get("num_beams", 1) > 1:
                    entry["scores"] = r(o.sequences_scores)
                else:
                    entry["logits"] = [r(step[0]) for step in o.logits[:LOGIT_STEPS]]
                src["runs"].append(entry)
        out["sources"].append(src)
    return out


def build(out, name, cls, cfg, gen, tokenizer, seed, bin_copy=False):
    torch.manual_seed(seed)
    model = cls(cfg).eval()
    randomize(model, seed)
    model.generation_config = GenerationConfig(**gen)
    path = os.path.join(out, name)
    os.makedirs(path, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    link_tokenizer(path, tokenizer, os.path.join(out, "tokenizers"))
    if bin_copy:
        # torch.save of the whole state dict, as older hub checkpoints are: tied tensors share one storage
        bpath = path + "-bin"
        os.makedirs(bpath, exist_ok=True)
        torch.save(model.state_dict(), os.path.join(bpath, "pytorch_model.bin"))
        for f in ("config.json", "generation_config.json"):
            with open(os.path.join(path, f)) as src, open(os.path.join(bpath, f), "w") as dst:
                dst.write(src.read())
        link_tokenizer(bpath, tokenizer, os.path.join(out, "tokenizers"))
    tok = Tokenizer.from_file(os.path.join(out, "tokenizers", tokenizer, "tokenizer.json"))
    write_json(os.path.join(path, "reference.json"), reference(load_fp32(cls, path), tok, name))
    print(name, sorted(os.listdir(path)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True, help="the fixtures directory (holding tokenizers/)")
    ap.add_argument("--retrain-tokenizers", action="store_true")
    args = ap.parse_args()
    out = args.out
    tok_dir = os.path.join(out, "tokenizers")
    common_cfg = {"model_max_length": 512, "clean_up_tokenization_spaces": False}
    styles = {
        "marian-style": (["</s>", "<unk>"], True, {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>", "tokenizer_class": "MarianTokenizer", **common_cfg}),
        "t5-style": (["<pad>", "</s>", "<unk>"], False, {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>", "tokenizer_class": "T5Tokenizer", **common_cfg}),
    }
    for style, (specials, pad_last, config) in styles.items():
        if args.retrain_tokenizers or not os.path.exists(os.path.join(tok_dir, style, "tokenizer.json")):
            unigram_style(tok_dir, style, specials, pad_last, config)
    vocab = {s: Tokenizer.from_file(os.path.join(tok_dir, s, "tokenizer.json")).get_vocab_size() for s in ("roberta-style", "xlmr-style", "marian-style", "t5-style")}

    small = dict(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
                 encoder_ffn_dim=64, decoder_ffn_dim=48, max_position_embeddings=64, dropout=0.0, attention_dropout=0.0,
                 activation_dropout=0.0)
    build(out, "bart-tiny", BartForConditionalGeneration, BartConfig(
        vocab_size=vocab["roberta-style"], activation_function="gelu", pad_token_id=1, bos_token_id=0, eos_token_id=2,
        decoder_start_token_id=2, forced_eos_token_id=None, **small),
        {"decoder_start_token_id": 2, "eos_token_id": 2, "pad_token_id": 1, "bos_token_id": 0}, "roberta-style", 40, bin_copy=True)
    build(out, "mbart-tiny", MBartForConditionalGeneration, MBartConfig(
        vocab_size=vocab["xlmr-style"], activation_function="gelu", scale_embedding=True, pad_token_id=1, bos_token_id=0,
        eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=None, **small),
        {"decoder_start_token_id": 2, "eos_token_id": 2, "pad_token_id": 1, "bos_token_id": 0, "forced_bos_token_id": 7},
        "xlmr-style", 41)
    mv = vocab["marian-style"]
    build(out, "marian-tiny", MarianMTModel, MarianConfig(
        vocab_size=mv, decoder_vocab_size=mv, activation_function="swish", scale_embedding=True, pad_token_id=mv - 1,
        eos_token_id=0, decoder_start_token_id=mv - 1, forced_eos_token_id=None, share_encoder_decoder_embeddings=True, **small),
        {"decoder_start_token_id": mv - 1, "eos_token_id": 0, "pad_token_id": mv - 1, "bad_words_ids": [[mv - 1]]},
        "marian-style", 42)
    t5 = dict(vocab_size=vocab["t5-style"], d_model=32, num_layers=2, num_decoder_layers=2, num_heads=4, relative_attention_num_buckets=8,
              relative_attention_max_distance=20, dropout_rate=0.0, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    t5gen = {"decoder_start_token_id": 0, "eos_token_id": 1, "pad_token_id": 0}
    build(out, "t5-tiny", T5ForConditionalGeneration, T5Config(d_kv=8, d_ff=64, feed_forward_proj="relu", tie_word_embeddings=True, **t5),
          t5gen, "t5-style", 43)
    build(out, "t5v11-tiny", T5ForConditionalGeneration, T5Config(d_kv=16, d_ff=48, feed_forward_proj="gated-gelu", tie_word_embeddings=False, **t5),
          t5gen, "t5-style", 44)


if __name__ == "__main__":
    main()
