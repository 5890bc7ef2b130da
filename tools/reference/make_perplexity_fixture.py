"""Reference perplexities for `peregrine perplexity` and prompt log-probs (test/fixtures/perplexity/reference.json).

For llama-tiny and gpt2-tiny (fp32, eager attention, on the CPU) over test/fixtures/perplexity/text.txt tokenized as
the model's tokenizer does by default: the sliding-window perplexity of Hugging Face's guide "Perplexity of
fixed-length models" for a few (context, stride) pairs, each window's loss with labels times its number of scored
tokens, summed, over all tokens scored (a window's first token is never scored: with stride = context, one token a
window goes unscored, as in the guide), and the log-probs of the first 40
tokens given the ones before them. Usage, from the repository root:

    python3 tools/reference/make_perplexity_fixture.py
"""
import json
import math
import os

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from make_fixtures import load_fp32, write_json

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "test", "fixtures")
MODELS = {
    # (context, stride): None = the model's positions less one, half of it
    "llama-tiny": [(None, None), (96, 40), (33, 33)],
    "gpt2-tiny": [(None, None), (48, 16)],
}
PROMPT_TOKENS = 40


def windows(length, context, stride):
    out, prev_end = [], 0
    for begin in range(0, length, stride):
        end = min(begin + context, length)
        out.append((begin, end, max(prev_end - begin, 1)))
        prev_end = end
        if end == length:
            break
    return out


def main():
    text = open(os.path.join(ROOT, "perplexity", "text.txt"), encoding="utf-8").read()
    out = {"text": "text.txt", "models": {}}
    for name, configs in MODELS.items():
        path = os.path.join(ROOT, name)
        tok = AutoTokenizer.from_pretrained(path)
        model = load_fp32(AutoModelForCausalLM, path)
        ids = tok(text)["input_ids"]
        positions = model.config.max_position_embeddings
        entry = {"tokens": len(ids), "ids": ids, "runs": []}
        with torch.no_grad():
            first = torch.tensor([ids[:PROMPT_TOKENS]])
            lp = torch.log_softmax(model(first).logits[0].double(), -1)
            entry["prompt_logprobs"] = [None] + [lp[t - 1, ids[t]].item() for t in range(1, PROMPT_TOKENS)]
            for context, stride in configs:
                c = context or positions - 1
                s = stride or max(1, c // 2)
                total, scored = 0.0, 0
                for begin, end, frm in windows(len(ids), c, s):
                    x = torch.tensor([ids[begin:end]])
                    labels = x.clone()
                    labels[:, :frm] = -100
                    loss = model(x, labels=labels).loss.double().item()
                    # the same from the log-softmax, target by target
                    lps = torch.log_softmax(model(x).logits[0].double(), -1)
                    nll = -sum(lps[t - 1, ids[begin + t]].item() for t in range(frm, end - begin))
                    assert abs(nll - loss * (end - begin - frm)) < 1e-6 * max(1.0, abs(nll)), (name, begin, nll, loss)
                    total += nll
                    scored += end - begin - frm
                entry["runs"].append({"context": context, "stride": stride, "resolved": [c, s], "nll": total / scored,
                                      "perplexity": math.exp(total / scored), "scored": scored})
        out["models"][name] = entry
    write_json(os.path.join(ROOT, "perplexity", "reference.json"), out)


if __name__ == "__main__":
    main()
