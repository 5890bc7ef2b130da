"""Trains small tokenizers in the formats of the Llama family's real ones (test/fixtures/tokenizers/<name>/).

Runs where the `tokenizers` package is installed (no torch needed). The vocabularies are small (about 1,000
tokens, trained on the built-in text below) but every file has the layout of the model family's own
tokenizer.json, so the code paths are the real ones:

- llama2-style:  SentencePiece-style BPE with byte fallback, as Llama 2 and Mistral ship it: <unk>, <s>, </s> at
                 ids 0-2, the 256 <0xXX> byte tokens at 3-258, normalizer Prepend("▁") + Replace(" ", "▁"),
                 no pre-tokenizer, decoder Replace/ByteFallback/Fuse/Strip, "<s> $A" post-processor. Its merges
                 are every split of every token ranked by the token's id (its SentencePiece score is -id), as
                 Hugging Face converts SentencePiece models, so it merges as SentencePiece and llama.cpp do.
- llama3-style:  byte-level BPE with Llama 3's split regex; <|begin_of_text|>, <|end_of_text|>, <|eot_id|>,
                 <|start_header_id|>, <|end_header_id|> after the vocabulary; "<|begin_of_text|> $A"; a Llama-3
                 chat template.
- qwen2-style:   NFC, byte-level BPE with Qwen2's split regex; <|endoftext|>, <|im_start|>, <|im_end|>; no BOS;
                 the ChatML template.

Usage: python3 tools/reference/train_tokenizers.py --out test/fixtures/tokenizers
"""
import argparse
import json
import os

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                r"\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
               r"\s*[\r\n]+|\s+(?!\S)|\s+")

LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
LLAMA2_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% else %}{{ ' ' + message['content'] + eos_token }}{% endif %}{% endfor %}"
)

TEXT = """
The quick brown fox jumps over the lazy dog. A transformer reads tokens and writes the next one.
Peregrine runs language models from TypeScript on GPUs and CPUs; it loads checkpoints, tokenizes text,
and generates answers one token at a time. Hello, world! How are you today? I am fine, thank you.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 2024 3.14159 1,000,000 and 12:30 on 2026-11-23.
def main(argv):\n    for i in range(10):\n        print(i * 2)\n    return 0
const x = { a: 1, b: [2, 3] }; if (x.a === 1) { console.log("yes"); }
Les modèles de langue écrivent du texte. Der schnelle braune Fuchs springt über den faulen Hund.
El rápido zorro marrón salta sobre el perro perezoso. Быстрая коричневая лиса прыгает через ленивую собаку.
日本語のテキストも少し含めます。东京和北京都是大城市。한국어 문장도 있습니다.
Emoji too: 🙂 🚀 ✨ 👍🏽 and symbols € £ ¥ © ® ™ — “quotes” ‘single’ … ellipsis.
    Indented line with   multiple   spaces\tand\ttabs.\n\nNew paragraph after a blank line.
"""


def corpus():
    lines = [l for l in TEXT.split("\n") if l.strip()]
    # repeated with variations so that merges have counts to rank by
    out = []
    for i in range(40):
        for j, l in enumerate(lines):
            out.append(l if (i + j) % 3 else l.lower())
    return out


def write_dir(path, tok_json, config, special_map):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "tokenizer.json"), "w") as f:
        json.dump(tok_json, f, ensure_ascii=False, indent=1)
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, ensure_ascii=False, indent=1)
    with open(os.path.join(path, "special_tokens_map.json"), "w") as f:
        json.dump(special_map, f, ensure_ascii=False, indent=1)


def added(id_, content, special=True):
    return {"id": id_, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": not special, "special": special}


def llama2_style(out):
    # merges learned on words split at "▁" (kept as a prefix), then laid out as Llama 2's file is
    t = Tokenizer(models.BPE(unk_token="<unk>"))
    t.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    t.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True)
    t.train_from_iterator(corpus(), trainers.BpeTrainer(vocab_size=760, show_progress=False, special_tokens=[]))
    learned = json.loads(t.to_str())["model"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = 3 + b
    for tok, _ in sorted(learned["vocab"].items(), key=lambda kv: kv[1]):
        if tok not in vocab:
            vocab[tok] = len(vocab)
    # merges as SentencePiece (and so llama.cpp) applies them: any two tokens whose concatenation is a token merge,
    # the better-scoring (lower-id) result first: every split of every token, ranked by the token's id
    merges = []
    for tok, tid in sorted(vocab.items(), key=lambda kv: kv[1]):
        if tid < 259:
            continue
        for i in range(1, len(tok)):
            if tok[:i] in vocab and tok[i:] in vocab:
                merges.append((tid, vocab[tok[:i]], vocab[tok[i:]], f"{tok[:i]} {tok[i:]}"))
    merges = [m[3] for m in sorted(merges)]
    j = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [added(0, "<unk>"), added(1, "<s>"), added(2, "</s>")],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
        "pre_tokenizer": None,
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                    {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }
    Tokenizer.from_str(json.dumps(j))  # the library accepts it
    config = {"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
              "pad_token": None, "clean_up_tokenization_spaces": False, "legacy": False, "model_max_length": 4096,
              "tokenizer_class": "LlamaTokenizerFast", "chat_template": LLAMA2_TEMPLATE}
    write_dir(os.path.join(out, "llama2-style"), j, config, {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"})


def byte_level(out, name, split, normalizer, specials, bos, config_extra, special_map):
    t = Tokenizer(models.BPE())
    if normalizer:
        t.normalizer = normalizer
    t.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(split), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    t.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    t.train_from_iterator(corpus(), trainers.BpeTrainer(vocab_size=900, show_progress=False, special_tokens=[],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    t.add_special_tokens(specials)
    if bos:
        t.post_processor = processors.Sequence([
            processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
            processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, t.token_to_id(bos))])])
    else:
        t.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    j = json.loads(t.to_str())
    write_dir(os.path.join(out, name), j, config_extra, special_map)
    return t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    llama2_style(args.out)
    byte_level(args.out, "llama3-style", LLAMA3_SPLIT, None,
               ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
               "<|begin_of_text|>",
               {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "clean_up_tokenization_spaces": False,
                "model_max_length": 131072, "tokenizer_class": "PreTrainedTokenizerFast", "chat_template": LLAMA3_TEMPLATE},
               {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"})
    byte_level(args.out, "qwen2-style", QWEN2_SPLIT, normalizers.NFC(), ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], None,
               {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "errors": "replace",
                "clean_up_tokenization_spaces": False, "model_max_length": 32768, "tokenizer_class": "Qwen2Tokenizer",
                "chat_template": CHATML_TEMPLATE},
               {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"})
    for name in ("llama2-style", "llama3-style", "qwen2-style"):
        t = Tokenizer.from_file(os.path.join(args.out, name, "tokenizer.json"))
        print(name, t.get_vocab_size(), t.encode("Hello, world! 日本語 🙂  x").tokens)


if __name__ == "__main__":
    main()
