"""Hugging Face generate() references for the request API (test/fixtures/<model>/generation.json).

Runs where torch and transformers are installed (the GPU machine), on the CPU in fp32, over the fixture
checkpoints already in test/fixtures (their weights are not touched). From the repository root:

    python3 tools/reference/make_generation_refs.py --fixtures test/fixtures --out /tmp/refs

writes /tmp/refs/<model>/generation.json. Each case holds the prompt, the options in Peregrine's
library names (camelCase), and what transformers generated: `ids` (generated ids, without padding),
and where the case asks for them `sequences` + `scores` (beam search: every returned sequence and its
sequences_scores), `logprobs` (log-softmax of the raw logits at each chosen token) and `top` (the K most
likely raw tokens per step as [id, logprob]).

Presence and frequency penalties (OpenAI semantics, absent from transformers) run as a logits processor
defined here, appended after transformers' own processors: logit - frequency * count - presence * (count > 0)
over the tokens generated so far.
"""
import argparse
import json
import os

import torch
from transformers import GPT2LMHeadModel, LogitsProcessor, LogitsProcessorList


class PresenceFrequency(LogitsProcessor):
    def __init__(self, prompt_len, presence, frequency):
        self.prompt_len, self.presence, self.frequency = prompt_len, presence, frequency

    def __call__(self, input_ids, scores):
        out = scores.clone()
        for row in range(input_ids.shape[0]):
            generated = input_ids[row, self.prompt_len:].tolist()
            for tok in set(generated):
                c = generated.count(tok)
                out[row, tok] = (out[row, tok] - torch.tensor(self.frequency * c, dtype=torch.float32)) - torch.tensor(self.presence, dtype=torch.float32)
        return out


def load(path):
    try:
        model = GPT2LMHeadModel.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
    except TypeError:
        model = GPT2LMHeadModel.from_pretrained(path, torch_dtype=torch.float32, attn_implementation="eager")
    return model.eval()


HF_NAMES = {
    "maxNewTokens": "max_new_tokens", "minNewTokens": "min_new_tokens", "numBeams": "num_beams", "lengthPenalty": "length_penalty",
    "earlyStopping": "early_stopping", "numReturnSequences": "num_return_sequences", "repetitionPenalty": "repetition_penalty",
    "badWordsIds": "bad_words_ids", "eosTokenId": "eos_token_id",
}


def run(model, prompt, options, top=0):
    kwargs = {HF_NAMES[k]: v for k, v in options.items() if k in HF_NAMES}
    kwargs.update(do_sample=False, pad_token_id=0, return_dict_in_generate=True, output_scores=True, output_logits=True)
    processors = LogitsProcessorList()
    if "presencePenalty" in options or "frequencyPenalty" in options:
        processors.append(PresenceFrequency(len(prompt), options.get("presencePenalty", 0.0), options.get("frequencyPenalty", 0.0)))
    ids = torch.tensor([prompt])
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), logits_processor=processors, **kwargs)
    P = len(prompt)
    eos = options.get("eosTokenId", [])
    eos = eos if isinstance(eos, list) else [eos]

    def trim(seq):
        seq = seq[P:]
        # generate() pads finished rows (with eos[0] when pad is 0); cut after the first end token
        for i, t in enumerate(seq):
            if t in eos:
                return seq[: i + 1]
        return seq

    case = {"prompt": prompt, "options": options}
    if options.get("numBeams", 1) > 1:
        case["sequences"] = [trim(s.tolist()) for s in out.sequences]
        case["scores"] = [float(x) for x in out.sequences_scores]
        case["ids"] = case["sequences"][0]
    else:
        case["ids"] = trim(out.sequences[0].tolist())
        if options.get("logprobs"):
            lps, tops = [], []
            for step, tok in enumerate(case["ids"]):
                lsm = torch.log_softmax(out.logits[step][0].double(), dim=-1)
                lps.append(float(lsm[tok]))
                if top:
                    v, i = torch.topk(lsm, top)
                    tops.append([[int(a), float(b)] for a, b in zip(i.tolist(), v.tolist())])
            case["logprobs"] = lps
            if top:
                case["top"] = tops
    return case


def cases_for(model, prompts):
    cases = []
    # end tokens the model actually produces: a token from the middle of each prompt's plain beam output
    eos_of = {}
    for p in prompts:
        plain = run(model, p, {"maxNewTokens": 10, "numBeams": 3, "eosTokenId": [model.config.vocab_size - 1]})
        eos_of[tuple(p)] = [plain["ids"][3], plain["ids"][6]]
    for p in prompts:
        e = eos_of[tuple(p)]
        # beam search: lengths, length penalties, early stopping, several returned sequences, several end tokens
        for lp in (1.0, 0.0, 2.0, -0.7):
            for es in (False, True, "never"):
                cases.append(run(model, p, {"maxNewTokens": 12, "numBeams": 4, "numReturnSequences": 3, "lengthPenalty": lp, "earlyStopping": es, "eosTokenId": [e[0]]}))
        cases.append(run(model, p, {"maxNewTokens": 10, "numBeams": 2, "eosTokenId": e}))
        cases.append(run(model, p, {"maxNewTokens": 10, "numBeams": 5, "numReturnSequences": 5, "eosTokenId": [model.config.vocab_size - 1]}))
        # processors on beam search (they act on log-probs there)
        cases.append(run(model, p, {"maxNewTokens": 10, "numBeams": 3, "numReturnSequences": 2, "repetitionPenalty": 1.5, "eosTokenId": [e[0]]}))
        cases.append(run(model, p, {"maxNewTokens": 10, "numBeams": 3, "minNewTokens": 8, "badWordsIds": [[e[1]]], "eosTokenId": [e[0]]}))
        # greedy with processors
        cases.append(run(model, p, {"maxNewTokens": 16, "repetitionPenalty": 1.3, "eosTokenId": [model.config.vocab_size - 1]}))
        cases.append(run(model, p, {"maxNewTokens": 16, "repetitionPenalty": 0.8, "eosTokenId": [model.config.vocab_size - 1]}))
        cases.append(run(model, p, {"maxNewTokens": 16, "minNewTokens": 10, "eosTokenId": e}))
        cases.append(run(model, p, {"maxNewTokens": 16, "eosTokenId": e}))
        greedy = run(model, p, {"maxNewTokens": 16, "eosTokenId": [model.config.vocab_size - 1]})["ids"]
        cases.append(run(model, p, {"maxNewTokens": 16, "badWordsIds": [[greedy[0]], [greedy[2], greedy[3]], [greedy[5], greedy[6], greedy[7]]], "eosTokenId": [model.config.vocab_size - 1]}))
        cases.append(run(model, p, {"maxNewTokens": 16, "presencePenalty": 0.8, "frequencyPenalty": 0.3, "eosTokenId": [model.config.vocab_size - 1]}))
        cases.append(run(model, p, {"maxNewTokens": 16, "presencePenalty": -0.5, "frequencyPenalty": 1.2, "repetitionPenalty": 1.1, "eosTokenId": [model.config.vocab_size - 1]}))
        cases.append(run(model, p, {"maxNewTokens": 16, "logprobs": True, "topLogprobs": 5, "eosTokenId": [model.config.vocab_size - 1]}, top=5))
    return cases


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.manual_seed(0)
    for name in ("gpt2-wide", "gpt2-tiny"):
        path = os.path.join(args.fixtures, name)
        model = load(path)
        with open(os.path.join(path, "reference.json")) as f:
            prompts = [g["ids"] for g in json.load(f)["greedy"]]
        out = {"model": name, "cases": cases_for(model, prompts if name == "gpt2-wide" else prompts[:2])}
        os.makedirs(os.path.join(args.out, name), exist_ok=True)
        with open(os.path.join(args.out, name, "generation.json"), "w") as f:
            json.dump(out, f, separators=(",", ":"))
        print(name, len(out["cases"]), "cases")


if __name__ == "__main__":
    main()
