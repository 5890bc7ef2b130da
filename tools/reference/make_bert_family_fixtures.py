"""Builds the BERT-family fixtures: small tokenizers in the families' own formats, tiny random checkpoints
of every head, and what Hugging Face transformers computes for them (test/fixtures).

Runs where torch, transformers and tokenizers are installed (no GPU needed: everything runs on the CPU in
fp32, over weights rounded to their storage dtype). Usage, from the repository root:

    python3 tools/reference/make_bert_family_fixtures.py --out test/fixtures

(the checkpoints and references are the same byte for byte on every run over the same tokenizer files and libraries;
the GPU machine's torch and transformers gave references differing in their last digits and files that were not
byte-identical, so the committed hf_dtype_error fields were added from such a run to the references as they were;
--retrain-tokenizers trains those again, which gives other vocabularies)

Tokenizers (test/fixtures/tokenizers/<name>/, about 200-300 tokens trained on train_tokenizers' text):

- wordpiece-style: BERT's layout (BertNormalizer lowercasing, BertPreTokenizer, WordPiece with ##, "[CLS] $A [SEP]"),
                   [PAD] [UNK] [CLS] [SEP] [MASK] at ids 0-4.
- roberta-style:   byte-level BPE as RoBERTa ships it: <s> <pad> </s> <unk> at 0-3, <mask> (lstrip) last,
                   RobertaProcessing "<s> $A </s>".
- xlmr-style:      SentencePiece Unigram as XLM-RoBERTa ships it (Metaspace, "<s> $A </s>"), <s> <pad> </s> <unk>
                   at 0-3 and <mask> last; NFKC stands in for the real file's precompiled charsmap.

Checkpoints (config.json, model.safetensors, tokenizer symlinks, reference.json):

- bert-mlm:          BertForMaskedLM, fp16, head tied to the word embeddings.
- bert-pretraining:  BertForPreTraining, bf16, untied decoder (tie_word_embeddings false), gelu_new, NSP head unused.
- bert-lmhead:       BertLMHeadModel with is_decoder (causal attention), fp16.
- bert-ner:          BertForTokenClassification, fp16, five named labels.
- roberta-mlm:       RobertaForMaskedLM, fp16 (positions from padding_idx + 1).
- roberta-cls:       RobertaForSequenceClassification, fp16, named labels (the dense/tanh/out_proj head).
- xlmr:              XLMRobertaModel, fp16.
- distilbert-mlm:    DistilBertForMaskedLM, fp16.
- distilbert-cls:    DistilBertForSequenceClassification, fp16 (pre_classifier with ReLU).
Hidden 32, four heads, two layers (one for the single-head checkpoints, to keep the fixtures small).
- st-mini:           a sentence-transformers directory over a BertModel: modules.json (Transformer, Pooling,
                     Normalize), 1_Pooling/config.json (mean), sentence_bert_config.json; the reference holds
                     cls, mean and max pooling so tests can switch the Pooling config.

reference.json: inputs (text and ids, of mixed lengths, run as one padded batch), the last hidden states (but for
the classifiers, whose logits show them), the mean pooled vectors (st-mini: cls and max too), and per head: classification logits, token-classification logits, or masked-LM
logits (full rows at the rows listed in "lm_rows", and the top 5 of each mask as the fill-mask pipeline
scores them); hf_dtype_error: how far Hugging Face's own fp16 and bf16 runs land from those fp32 outputs.
"""
import argparse
import copy
import json
import os
import sys

import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (BertConfig, BertForMaskedLM, BertForPreTraining, BertForTokenClassification, BertLMHeadModel,
                          BertModel, DistilBertConfig, DistilBertForMaskedLM, DistilBertForSequenceClassification,
                          RobertaConfig, RobertaForMaskedLM, RobertaForSequenceClassification, XLMRobertaConfig,
                          XLMRobertaModel)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import link_tokenizer, load_fp32, r as round_floats, randomize_by, round_to, save, write_json  # noqa: E402
from train_tokenizers import added, corpus, write_dir  # noqa: E402

TEXTS = ["The quick brown fox.", "Hello, world!", "a", "A transformer reads tokens and writes the next one."]
MASKED = ["The quick {m} fox jumps over the {m}.", "Hello, {m}!", "{m}", "A transformer reads {m}."]


def wordpiece_style(out):
    t = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    t.normalizer = normalizers.BertNormalizer(lowercase=True)
    t.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    t.train_from_iterator(corpus(), trainers.WordPieceTrainer(vocab_size=300, special_tokens=specials, show_progress=False))
    t.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                     special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    t.decoder = decoders.WordPiece(prefix="##")
    decoder = {str(i): {k: v for k, v in added(i, s).items() if k != "id"} for i, s in enumerate(specials)}
    config = {"added_tokens_decoder": decoder,
              "clean_up_tokenization_spaces": True, "cls_token": "[CLS]", "do_lower_case": True, "mask_token": "[MASK]",
              "model_max_length": 512, "pad_token": "[PAD]", "sep_token": "[SEP]", "strip_accents": None,
              "tokenize_chinese_chars": True, "tokenizer_class": "BertTokenizer", "unk_token": "[UNK]"}
    write_dir(os.path.join(out, "wordpiece-style"), json.loads(t.to_str()), config,
              {"cls_token": "[CLS]", "mask_token": "[MASK]", "pad_token": "[PAD]", "sep_token": "[SEP]", "unk_token": "[UNK]"})


def roberta_style(out):
    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    t.train_from_iterator(corpus(), trainers.BpeTrainer(vocab_size=300, show_progress=False, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    t.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True)])
    t.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True, add_prefix_space=False)
    config = {"bos_token": "<s>", "cls_token": "<s>", "eos_token": "</s>", "mask_token": "<mask>", "pad_token": "<pad>",
              "sep_token": "</s>", "unk_token": "<unk>", "add_prefix_space": False, "errors": "replace", "model_max_length": 512,
              "tokenizer_class": "RobertaTokenizer", "clean_up_tokenization_spaces": False}
    write_dir(os.path.join(out, "roberta-style"), json.loads(t.to_str()), config,
              {k: config[k] for k in ("bos_token", "cls_token", "eos_token", "mask_token", "pad_token", "sep_token", "unk_token")})


def xlmr_style(out):
    t = Tokenizer(models.Unigram())
    t.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    t.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    t.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    t.train_from_iterator(corpus(), trainers.UnigramTrainer(vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                                            unk_token="<unk>", show_progress=False))
    t.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True)])
    t.post_processor = processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
                                                     special_tokens=[("<s>", 0), ("</s>", 2)])
    config = {"bos_token": "<s>", "cls_token": "<s>", "eos_token": "</s>", "mask_token": "<mask>", "pad_token": "<pad>",
              "sep_token": "</s>", "unk_token": "<unk>", "model_max_length": 512, "tokenizer_class": "XLMRobertaTokenizer",
              "clean_up_tokenization_spaces": False}
    write_dir(os.path.join(out, "xlmr-style"), json.loads(t.to_str()), config,
              {k: config[k] for k in ("bos_token", "cls_token", "eos_token", "mask_token", "pad_token", "sep_token", "unk_token")})


def r(x):
    """Floats with 5 significant digits (1e-5 relative), enough for the tests' 1e-4 at half the bytes of 8."""
    return round_floats(x, 5)


def randomize(model, seed):
    """Every family's names: norm gains near 1 (LayerNorm, layer_norm, sa_layer_norm), embeddings of 0.5."""
    randomize_by(model, seed, lambda name: "norm" in name.lower() and name.endswith("weight"), lambda name: "embeddings" in name)


def encode_all(tok, texts):
    return [{"text": t, "ids": tok.encode(t).ids} for t in texts]


def reference(model, inputs, pad_id, types, lm_rows=None, mask_id=None, states=True, pooling=False):
    """What the model computes for `inputs` as one padded batch: the mean of the last hidden states, and with `states` the
    states themselves, with `pooling` the cls and max vectors too, and its head's outputs."""
    lengths = [len(x["ids"]) for x in inputs]
    T = max(lengths)
    ids = torch.full((len(inputs), T), pad_id, dtype=torch.long)
    mask = torch.zeros(len(inputs), T, dtype=torch.long)
    for i, x in enumerate(inputs):
        ids[i, : lengths[i]] = torch.tensor(x["ids"])
        mask[i, : lengths[i]] = 1
    kwargs = {"token_type_ids": torch.zeros_like(ids)} if types else {}
    with torch.no_grad():
        o = model(input_ids=ids, attention_mask=mask, output_hidden_states=True, **kwargs)
    hidden = o.hidden_states[-1]
    m = mask.unsqueeze(-1).to(hidden.dtype)
    out = {"inputs": inputs, "mean": r((hidden * m).sum(1) / m.sum(1))}
    if pooling:
        out["cls"] = r(hidden[:, 0])
        # sentence-transformers' max pooling: padding set to -1e9 first
        out["max"] = r(torch.where(m > 0, hidden, torch.tensor(-1e9)).max(1).values)
    if states:
        out["hidden"] = [r(hidden[i, : lengths[i]]) for i in range(len(inputs))]
    logits = getattr(o, "logits", None)
    if logits is None:
        logits = getattr(o, "prediction_logits", None)
    kind = type(model).__name__
    if kind.endswith("SequenceClassification"):
        out["logits"] = r(logits)
    elif kind.endswith("TokenClassification"):
        out["token_logits"] = [r(logits[i, : lengths[i]]) for i in range(len(inputs))]
    elif logits is not None:
        rows = lm_rows or []
        out["lm_rows"] = [{"input": i, "position": p, "logits": r(logits[i, p])} for i, p in rows]
        if mask_id is not None:
            fills = []
            for i, x in enumerate(inputs):
                for p, tid in enumerate(x["ids"]):
                    if tid == mask_id:
                        probs = logits[i, p].double().softmax(-1)
                        top = probs.topk(5)
                        fills.append({"input": i, "position": p, "ids": top.indices.tolist(), "scores": r(top.values)})
            out["fill_mask"] = fills
    return out


def tensors(ref):
    """The outputs of a reference the tests compare, each as the flat list the tests compare it as."""
    flat = lambda x: [v for y in x for v in flat(y)] if isinstance(x, list) else [x]
    out = {k: flat(ref[k]) for k in ("mean", "cls", "max", "logits", "token_logits") if k in ref}
    out.update({f"hidden {i}": flat(h) for i, h in enumerate(ref.get("hidden", []))})
    out.update({f"lm row {k}": row["logits"] for k, row in enumerate(ref.get("lm_rows", []))})
    return out


def dtype_error(model, want, *args, **kwargs):
    """How far Hugging Face's own fp16 and bf16 runs (weights and activations in that dtype, on the CPU) land from its fp32
    outputs, by the tests' measure (max |a - b| / max |b| per compared tensor), the worst over the tensors."""
    out = {}
    for name, dtype in (("f16", torch.float16), ("bf16", torch.bfloat16)):
        got = tensors(reference(copy.deepcopy(model).to(dtype), *args, **kwargs))
        worst = 0.0
        for k, ref in tensors(want).items():
            a, b = torch.tensor(got[k], dtype=torch.float64), torch.tensor(ref, dtype=torch.float64)
            worst = max(worst, float((a - b).abs().max() / b.abs().max()))
        out[name] = float(f"{worst:.3g}")
    return out


def masked_inputs(tok, mask):
    return [{"text": t.format(m=mask), "ids": tok.encode(t.format(m=mask)).ids} for t in MASKED]


def mask_rows(inputs, mask_id):
    """Each mask's row, and the first row of the first input."""
    rows = {(0, 0)}
    for i, x in enumerate(inputs):
        rows.update((i, p) for p, t in enumerate(x["ids"]) if t == mask_id)
    return sorted(rows)


def build(out, name, cls, cfg, seed, dtype, tokenizer, inputs, pad_id, types, **ref_args):
    model = cls(cfg)
    randomize(model, seed)
    round_to(model, dtype)
    path = os.path.join(out, name)
    save(model, path, dtype)
    gen = os.path.join(path, "generation_config.json")
    if os.path.exists(gen):
        os.remove(gen)
    link_tokenizer(path, tokenizer, os.path.join(out, "tokenizers"))
    model = load_fp32(cls, path)
    ref = reference(model, inputs, pad_id, types, **ref_args)
    ref["hf_dtype_error"] = dtype_error(model, ref, inputs, pad_id, types, **ref_args)
    write_json(os.path.join(path, "reference.json"), ref)
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True, help="the fixtures directory (tokenizers/ is written inside it)")
    ap.add_argument("--retrain-tokenizers", action="store_true", help="train the tokenizers again even where they exist")
    args = ap.parse_args()
    out = args.out
    tok_dir = os.path.join(out, "tokenizers")
    # the tokenizers library's WordPiece and Unigram trainers order equal counts by hash, so a new training run
    # gives another vocabulary: the committed tokenizers are kept unless --retrain-tokenizers
    for name, train in (("wordpiece-style", wordpiece_style), ("roberta-style", roberta_style), ("xlmr-style", xlmr_style)):
        if args.retrain_tokenizers or not os.path.exists(os.path.join(tok_dir, name, "tokenizer.json")):
            train(tok_dir)
    wp = Tokenizer.from_file(os.path.join(tok_dir, "wordpiece-style", "tokenizer.json"))
    rb = Tokenizer.from_file(os.path.join(tok_dir, "roberta-style", "tokenizer.json"))
    xl = Tokenizer.from_file(os.path.join(tok_dir, "xlmr-style", "tokenizer.json"))
    torch.manual_seed(0)

    bert = dict(vocab_size=wp.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=40,
                max_position_embeddings=48)
    wp_mask = wp.token_to_id("[MASK]")
    inputs = masked_inputs(wp, "[MASK]")
    build(out, "bert-mlm", BertForMaskedLM, BertConfig(**bert), 20, torch.float16, "wordpiece-style", inputs, 0, True,
          lm_rows=mask_rows(inputs, wp_mask), mask_id=wp_mask)
    one = {**bert, "num_hidden_layers": 1}
    build(out, "bert-pretraining", BertForPreTraining, BertConfig(**one, tie_word_embeddings=False, hidden_act="gelu_new"), 21,
          torch.bfloat16, "wordpiece-style", inputs, 0, True, lm_rows=mask_rows(inputs, wp_mask), mask_id=wp_mask)
    plain = encode_all(wp, TEXTS)
    build(out, "bert-lmhead", BertLMHeadModel, BertConfig(**one, is_decoder=True), 22, torch.float16,
          "wordpiece-style", plain, 0, True, lm_rows=[(i, p) for i, x in enumerate(plain) for p in range(len(x["ids"]))][::9])
    ner = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    build(out, "bert-ner", BertForTokenClassification,
          BertConfig(**one, id2label=dict(enumerate(ner)), label2id={l: i for i, l in enumerate(ner)}), 23, torch.float16,
          "wordpiece-style", plain, 0, True, states=False)

    roberta = dict(vocab_size=rb.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=40,
                   max_position_embeddings=50, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2)
    rb_mask = rb.token_to_id("<mask>")
    inputs = masked_inputs(rb, "<mask>")
    build(out, "roberta-mlm", RobertaForMaskedLM, RobertaConfig(**roberta), 24, torch.float16, "roberta-style", inputs, 1, True,
          lm_rows=mask_rows(inputs, rb_mask), mask_id=rb_mask)
    sentiment = ["negative", "neutral", "positive"]
    build(out, "roberta-cls", RobertaForSequenceClassification,
          RobertaConfig(**{**roberta, "num_hidden_layers": 1}, id2label=dict(enumerate(sentiment)), label2id={l: i for i, l in enumerate(sentiment)}), 25,
          torch.float16, "roberta-style", encode_all(rb, TEXTS), 1, True, states=False)
    build(out, "xlmr", XLMRobertaModel, XLMRobertaConfig(**{**roberta, "vocab_size": xl.get_vocab_size()}), 26, torch.float16,
          "xlmr-style", encode_all(xl, TEXTS), 1, True)

    distil = dict(vocab_size=wp.get_vocab_size(), dim=32, n_layers=2, n_heads=4, hidden_dim=40, max_position_embeddings=48)
    inputs = masked_inputs(wp, "[MASK]")
    build(out, "distilbert-mlm", DistilBertForMaskedLM, DistilBertConfig(**distil), 27, torch.float16, "wordpiece-style", inputs, 0,
          False, lm_rows=mask_rows(inputs, wp_mask), mask_id=wp_mask)
    build(out, "distilbert-cls", DistilBertForSequenceClassification, DistilBertConfig(**{**distil, "n_layers": 1}, num_labels=2), 28, torch.float16,
          "wordpiece-style", plain, 0, False, states=False)

    path = build(out, "st-mini", BertModel, BertConfig(**bert), 29, torch.float16, "wordpiece-style", plain, 0, True, pooling=True)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
               {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]
    with open(os.path.join(path, "modules.json"), "w") as f:
        json.dump(modules, f, indent=2)
    os.makedirs(os.path.join(path, "1_Pooling"), exist_ok=True)
    os.makedirs(os.path.join(path, "2_Normalize"), exist_ok=True)
    pooling = {"word_embedding_dimension": 32, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
               "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False, "pooling_mode_weightedmean_tokens": False,
               "pooling_mode_lasttoken": False, "include_prompt": True}
    with open(os.path.join(path, "1_Pooling", "config.json"), "w") as f:
        json.dump(pooling, f, indent=2)
    with open(os.path.join(path, "sentence_bert_config.json"), "w") as f:
        json.dump({"max_seq_length": 40, "do_lower_case": False}, f, indent=2)
    ref = json.load(open(os.path.join(path, "reference.json")))
    ref["mean_normalized"] = r(torch.nn.functional.normalize(torch.tensor(ref["mean"]), dim=-1))
    write_json(os.path.join(path, "reference.json"), ref)

    for name in ("wordpiece-style", "roberta-style", "xlmr-style"):
        t = Tokenizer.from_file(os.path.join(tok_dir, name, "tokenizer.json"))
        print(name, t.get_vocab_size(), t.encode("Hello, world! The fox <mask> [MASK]").tokens)


if __name__ == "__main__":
    main()
