#!/usr/bin/env python3
"""Offline probe: would a context-aware draft (EAGLE's design: one decoder layer over the target
model's hidden states and the tokens chosen, run autoregressively) propose better than the
default model's Medusa heads, on the same self-distilled data and the same held-out prompts?

It reads the distillation cache that `neuron-decode train-heads` writes
($NEURON_DECODE_HOME/medusa-data/<key>/{states.safetensors,sequences.json}: chunks of 256
prompts, taken in the order they were written, which is prompt order), trains the draft on
the training prompts (all but every 10th, as train-heads splits them) and measures the chain
acceptance on the held-out ones: at every answer position, with the draft's context built
from the true hidden states so far, the draft proposes up to --depth tokens, each step fed
its own output and its own token, and a proposal counts to depth d when its first d tokens
all equal the model's greedy answer. Chain tau is one plus the mean depth accepted: the tau of
a chain-only tree, without answer lookup. With --heads it measures a Medusa heads file
(format version 3) the same way on the same positions, per prompt kind.

Not run in CI (it needs torch). Usage, after `neuron-decode train-heads` has distilled the
built-in prompts into the cache (NEURON_MOCK_MATMUL=bf16 for the bf16 mock's answers):

    python3 -m venv venv && venv/bin/pip install -r scripts/experiments/requirements.txt
    venv/bin/python scripts/experiments/context_draft_probe.py \
        --model $NEURON_DECODE_HOME/models/<model dir> \
        --prompts parallel-decode/data/medusa_train_prompts.jsonl \
        --heads parallel-decode/data/smollm2-135m-instruct.medusa_heads.safetensors \
        --residual --train-steps 3 --batch 4 --lr 2e-3 --cls-weight 0.5 --epochs 2 \
        --out results.json

To train further from a saved draft: `--init DRAFT.pt --save NEXT.pt --lr 1e-3 --epochs 1`. To
write a draft for `neuron-decode --strategy feature-draft` (the feature-draft format of
parallel-decode's `loading::feature_draft`): `--init DRAFT.pt --epochs 0 --export FILE`. To
measure on other prompts than the held-out ones, for example the benchmark's (distilled with
`neuron-decode train-heads --evaluate-only --prompts bench/prompts.jsonl --out HEADS`):
`--eval-cache CHUNK_DIR --eval-prompts bench/prompts.jsonl`.

See README.md beside it for what it found.
"""
import argparse
import json
import math
import os
import random
import struct
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        base = 8 + n
    out = {}
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = {"F32": np.float32, "F16": np.float16, "I32": np.int32}[info["dtype"]]
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(mm[base + a: base + b], dtype=dt).reshape(info["shape"])
    return out


def read_metadata(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)).get("__metadata__", {})


def heads_chain(path, held, states, E, kinds, depth):
    """Chain acceptance of Medusa heads (heads format version 3) on the held-out sequences:
    head h predicts a[j + h + 1] from state j, the chosen token a[j] and the best candidates
    of the heads before it."""
    w = read_safetensors(path)
    meta = read_metadata(path)
    vocab = torch.tensor(json.loads(meta["vocab"]))
    n_heads = int(meta["heads"])
    lm = E[vocab]
    # Every matrix converted to f32 once, not once per sequence.
    weights = {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in w.items() if k.startswith("medusa.")}
    t = weights.__getitem__
    res = {"open": np.zeros(depth + 1), "grounded": np.zeros(depth + 1)}
    pos = {"open": 0, "grounded": 0}
    with torch.no_grad():
        for prompt, tokens, first in held:
            n = len(tokens) - 1
            if n <= 0:
                continue
            x = torch.from_numpy(np.array(states[first: first + n]))
            tok = torch.tensor(tokens)
            e = E[tok[:n]]
            ok = torch.ones(n, dtype=torch.bool)
            length = torch.zeros(n, dtype=torch.long)
            best = []
            for h in range(min(n_heads, depth)):
                pre = x @ t(f"medusa.{h}.weight").T + e @ t(f"medusa.{h}.next_token.weight").T + t(f"medusa.{h}.bias")
                for i, c in enumerate(best):
                    pre = pre + E[c] @ t(f"medusa.{h}.path.{i}.weight").T
                z = x + F.silu(pre)
                cand = vocab[(z @ lm.T).argmax(-1)]
                best.append(cand)
                tgt = torch.full((n,), -1, dtype=torch.long)
                m = n - h
                if m > 0:
                    tgt[:m] = tok[h + 1: h + 1 + m]
                ok = ok & (cand == tgt)
                length += ok.long()
            kind = kinds[prompt]
            L = length.numpy()
            for d in range(1, depth + 1):
                res[kind][d] += (L >= d).sum()
            pos[kind] += n
    out = {}
    for kind in res:
        p = res[kind][1:] / max(pos[kind], 1)
        out[kind] = {"accept_depth": [round(v, 4) for v in p], "chain_tau": round(1 + p.sum(), 4)}
    tot = sum(pos.values())
    p = (res["open"][1:] + res["grounded"][1:]) / max(tot, 1)
    out["all"] = {"accept_depth": [round(v, 4) for v in p], "chain_tau": round(1 + p.sum(), 4)}
    return out


def load_data(cache_dirs, chunk=256):
    seqs = []
    states = []
    offset = 0
    for c, d in enumerate(cache_dirs):
        s = json.load(open(os.path.join(d, "sequences.json")))
        st = read_safetensors(os.path.join(d, "states.safetensors"))["states"]
        for q in s["sequences"]:
            seqs.append((q["prompt"] + c * chunk, q["tokens"], q["first_state"] + offset))
        states.append(np.array(st))
        offset += st.shape[0]
    return seqs, np.concatenate(states)


class Rope:
    def __init__(self, dim, theta, max_pos=1024):
        inv = 1.0 / (theta ** (torch.arange(0, dim, 2).float() / dim))
        t = torch.arange(max_pos).float()
        f = torch.outer(t, inv)
        self.cos = torch.cat([f.cos(), f.cos()], -1)
        self.sin = torch.cat([f.sin(), f.sin()], -1)

    def apply(self, x, pos):
        # x [..., T, H, D], pos [T] or broadcastable
        c = self.cos[pos].unsqueeze(-2)
        s = self.sin[pos].unsqueeze(-2)
        h = x.shape[-1] // 2
        rot = torch.cat([-x[..., h:], x[..., :h]], -1)
        return x * c + rot * s


class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.w = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.w


class Draft(nn.Module):
    def __init__(self, hidden=576, heads=9, kv_heads=3, head_dim=64, inter=1536, theta=1e5,
                 residual=False):
        super().__init__()
        self.residual = residual
        self.theta = theta
        self.h, self.kvh, self.d = heads, kv_heads, head_dim
        self.fc = nn.Linear(2 * hidden, hidden, bias=True)
        self.q = nn.Linear(hidden, heads * head_dim, bias=False)
        self.k = nn.Linear(hidden, kv_heads * head_dim, bias=False)
        self.v = nn.Linear(hidden, kv_heads * head_dim, bias=False)
        self.o = nn.Linear(heads * head_dim, hidden, bias=False)
        self.post = RMSNorm(hidden)
        self.gate = nn.Linear(hidden, inter, bias=False)
        self.up = nn.Linear(hidden, inter, bias=False)
        self.down = nn.Linear(inter, hidden, bias=False)
        self.out_norm = RMSNorm(hidden)
        self.rope = Rope(head_dim, theta)
        if residual:
            # Start as the base model's own prediction from the feature (as Medusa heads
            # start): u = f, and the layer adds nothing until trained.
            with torch.no_grad():
                self.fc.weight.zero_()
                self.fc.weight[:, :hidden] = torch.eye(hidden)
                self.fc.bias.zero_()
                self.o.weight.zero_()
                self.down.weight.zero_()

    def fuse(self, feat, emb):
        return self.fc(torch.cat([feat, emb], -1))

    def qkv(self, u, pos):
        shp = u.shape[:-1]
        q = self.rope.apply(self.q(u).view(*shp, self.h, self.d), pos)
        k = self.rope.apply(self.k(u).view(*shp, self.kvh, self.d), pos)
        v = self.v(u).view(*shp, self.kvh, self.d)
        rep = self.h // self.kvh
        return q, k.repeat_interleave(rep, -2), v.repeat_interleave(rep, -2)

    def finish(self, u, att):
        x = u + self.o(att)
        y = self.post(x)
        x = x + self.down(F.silu(self.gate(y)) * self.up(y))
        return x if self.residual else self.out_norm(x)

    def forward(self, feat, emb):
        """Teacher-forced pass over a batch [B, T]: returns outputs and (k, v)."""
        u = self.fuse(feat, emb)
        T = u.shape[1]
        pos = torch.arange(T)
        q, k, v = self.qkv(u, pos)  # [B, T, H, D]
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        att = att.transpose(1, 2).reshape(u.shape[0], T, -1)
        return self.finish(u, att), (k, v)


def chain_step(model, g, tokens_emb, K, V, chain, s):
    """One more draft step from every position at once: position j's step `s + 1` input fuses
    its step-`s` output `g` with the embedding of the token it proposed (or the true one); it
    attends to the teacher-forced keys up to j and to its own chain's keys (appended to
    `chain`)."""
    B, T = g.shape[:2]
    u = model.fuse(g, tokens_emb)
    pos = (torch.arange(T) + s).unsqueeze(0).expand(B, T)
    q, k, v = model.qkv(u, pos)  # [B, T, H, D]
    chain.append((k, v))
    qh = q.transpose(1, 2)  # [B, H, T, D]
    scale = 1.0 / math.sqrt(model.d)
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    sc_t = (qh @ K.transpose(-1, -2)) * scale  # [B, H, T, T]
    sc_t = sc_t.masked_fill(~causal, float("-inf"))
    ck = torch.stack([c[0] for c in chain], 2).permute(0, 3, 1, 2, 4)  # [B, H, T, S, D]
    cv = torch.stack([c[1] for c in chain], 2).permute(0, 3, 1, 2, 4)
    sc_c = (qh.unsqueeze(-2) * ck).sum(-1) * scale  # [B, H, T, S]
    p = torch.softmax(torch.cat([sc_t, sc_c], -1), -1)
    att = p[..., :T] @ V + (p[..., T:].unsqueeze(-1) * cv).sum(-2)
    att = att.transpose(1, 2).reshape(B, T, -1)
    return model.finish(u, att)


def self_check():
    """The batched chain step (every position's next draft step at once) must equal running
    the layer on one position's sequence written out: teacher inputs up to j, then the chain."""
    torch.manual_seed(1)
    m = Draft()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        B, T, H = 2, 7, 576
        feat, emb = torch.randn(B, T, H), torch.randn(B, T, H)
        out, (K, V) = m(feat, emb)
        e2, e3 = torch.randn(B, T, H), torch.randn(B, T, H)
        chain = []
        g2 = chain_step(m, out, e2, K, V, chain, 1)
        g3 = chain_step(m, g2, e3, K, V, chain, 2)
        for j in range(T):
            seq = torch.cat([m.fuse(feat, emb)[:, : j + 1], m.fuse(out[:, j: j + 1], e2[:, j: j + 1]),
                             m.fuse(g2[:, j: j + 1], e3[:, j: j + 1])], 1)
            L = seq.shape[1]
            q, k, v = (t.transpose(1, 2) for t in m.qkv(seq, torch.arange(L)))
            att = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, L, -1)
            ref = m.finish(seq, att)
            err = max((ref[:, -2] - g2[:, j]).abs().max().item(), (ref[:, -1] - g3[:, j]).abs().max().item())
            if err > 1e-4:
                raise SystemExit(f"self-check failed: chain step at position {j} differs by {err}")
    print("self-check passed: batched chain steps equal the serial computation")


def make_batch(seqs, states):
    """Pads a batch of sequences at the end: hidden states, tokens and a mask of real ones.
    (Padding comes after every real position, so the causal mask alone keeps it out of the
    real positions' attention.)"""
    T = max(len(t) for _, t, _ in seqs)
    B = len(seqs)
    H = states.shape[1]
    feat = torch.zeros(B, T, H)
    tok = torch.zeros(B, T, dtype=torch.long)
    mask = torch.zeros(B, T, dtype=torch.bool)
    for b, (_, t, first) in enumerate(seqs):
        n = len(t)
        feat[b, :n] = torch.from_numpy(states[first: first + n])
        tok[b, :n] = torch.tensor(t)
        mask[b, :n] = True
    return feat, tok, mask


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", default=os.environ.get("NEURON_DECODE_HOME", os.path.expanduser("~/.cache/neuron-decode")))
    ap.add_argument("--cache", nargs="*", help="chunk directories in prompt order (default: all under medusa-data by time written)")
    ap.add_argument("--skip", nargs="*", default=[], help="chunk directory names to leave out")
    ap.add_argument("--self-check", action="store_true", help="check the batched chain step and exit")
    ap.add_argument("--model", help="model directory (model.safetensors)")
    ap.add_argument("--prompts", help="the prompt set (JSON lines with kind)")
    ap.add_argument("--heads", help="a Medusa heads file (version 3) to measure on the same held-out data")
    ap.add_argument("--epochs", type=float, default=2)
    ap.add_argument("--batch", type=int, default=16, help="sequences per step")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--cls-weight", type=float, default=0.1)
    ap.add_argument("--reg-weight", type=float, default=1.0, help="weight of the feature regression")
    ap.add_argument("--noise", type=float, default=0.1)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--depth", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-train", type=int, default=0, help="use at most this many training sequences (0: all)")
    ap.add_argument("--max-eval", type=int, default=0)
    ap.add_argument("--train-steps", type=int, default=1, help="draft steps unrolled in training")
    ap.add_argument("--step-weight", type=float, default=1.0, help="weight of each unrolled step's loss")
    ap.add_argument("--residual", action="store_true", help="output = fused input + layer, started as the identity")
    ap.add_argument("--init", help="start from a draft's state dict written by --save (to train it further)")
    ap.add_argument("--save", help="write the trained draft's state dict here")
    ap.add_argument("--out", help="write the results (with these options) as JSON here")
    ap.add_argument("--export", help="write the (trained or --init) draft as a feature-draft file (the format "
                    "of parallel-decode's loading::feature_draft) for neuron-decode; needs --residual")
    ap.add_argument("--export-dtype", choices=["f16", "f32"], default="f16")
    ap.add_argument("--eval-cache", nargs="*", help="measure on every sequence of these chunk directories "
                    "(for example the benchmark prompts', distilled by `train-heads --evaluate-only`) instead "
                    "of the held-out prompts; needs --eval-prompts")
    ap.add_argument("--eval-prompts", help="the prompt file of --eval-cache (JSON lines with kind)")
    args = ap.parse_args()
    if args.self_check:
        self_check()
        return
    if not args.model or not args.prompts:
        ap.error("--model and --prompts are required")
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    torch.set_num_threads(args.threads)

    if args.cache:
        dirs = args.cache
    else:
        root = os.path.join(args.home, "medusa-data")
        dirs = [os.path.join(root, d) for d in os.listdir(root) if d not in args.skip]
        dirs = [d for d in dirs if os.path.exists(os.path.join(d, "sequences.json"))]
        dirs.sort(key=lambda d: os.path.getmtime(os.path.join(d, "sequences.json")))
    seqs, states = load_data(dirs)
    kinds = [json.loads(l)["kind"] for l in open(args.prompts) if l.strip()]
    print(f"{len(seqs)} sequences, {states.shape[0]} states from {len(dirs)} chunks", flush=True)
    train = [s for s in seqs if s[0] % 10 != 0]
    held = [s for s in seqs if s[0] % 10 == 0]
    if args.max_train:
        train = train[: args.max_train]
    if args.eval_cache:
        if not args.eval_prompts:
            ap.error("--eval-cache needs --eval-prompts")
        held, eval_states = load_data(args.eval_cache)
        # One array of states: the evaluated sequences' offsets moved past the training ones.
        held = [(p, t, first + states.shape[0]) for p, t, first in held]
        states = np.concatenate([states, eval_states])
        kinds = [json.loads(l)["kind"] for l in open(args.eval_prompts) if l.strip()]
    if args.max_eval:
        held = held[: args.max_eval]

    w = read_safetensors(os.path.join(args.model, "model.safetensors"))
    E = torch.from_numpy(np.array(w["model.embed_tokens.weight"]))
    counts = np.zeros(E.shape[0], dtype=np.int64)
    for _, t, _ in train:
        np.add.at(counts, np.array(t), 1)
    vocab = np.sort(np.argsort(-counts, kind="stable")[: args.vocab])
    covered = counts[vocab].sum() / counts.sum()
    print(f"vocabulary of {len(vocab)} tokens covers {covered:.4f} of training answer tokens", flush=True)
    index = torch.full((E.shape[0],), -100, dtype=torch.long)
    index[torch.from_numpy(vocab)] = torch.arange(len(vocab))
    lm = E[torch.from_numpy(vocab)].contiguous()  # [V, H]
    vocab_t = torch.from_numpy(vocab)

    record = {"options": vars(args), "sequences": len(seqs), "training_sequences": len(train),
              "held_out_sequences": len(held), "vocab_coverage": round(float(covered), 4)}
    if args.heads:
        record["medusa_heads"] = heads_chain(args.heads, held, states, E, kinds, args.depth)
        print("medusa heads:", json.dumps(record["medusa_heads"]), flush=True)
    if args.epochs == 0 and not args.init:
        # Nothing to train and no draft to measure.
        write_record(args.out, record)
        return
    model = Draft(residual=args.residual)
    if args.init:
        model.load_state_dict(torch.load(args.init))
    params = [p for p in model.parameters()]
    print(f"draft parameters: {sum(p.numel() for p in params):,}", flush=True)
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    train.sort(key=lambda s: len(s[1]))
    batches = [train[i: i + args.batch] for i in range(0, len(train), args.batch)]
    steps = int(len(batches) * args.epochs)
    warm = max(1, steps // 50)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / max(steps, 1)))))
    t0 = time.time()
    step = 0
    while step < steps:
        random.shuffle(batches)
        for batch in batches:
            if step >= steps:
                break
            feat, tok, mask = make_batch(batch, states)
            emb = E[tok]
            noisy = feat + (torch.rand_like(feat) - 0.5) * 2 * args.noise
            out, (K, V) = model(noisy, emb)
            # position j predicts a[j+1] and regresses f[j+1]
            valid = mask[:, 1:]
            g = out[:, :-1][valid]
            tgt_feat = feat[:, 1:][valid]
            tgt_tok = index[tok[:, 1:][valid]]
            reg = F.smooth_l1_loss(g, tgt_feat)
            logits = g @ lm.T
            cls = F.cross_entropy(logits, tgt_tok, ignore_index=-100)
            loss = args.reg_weight * reg + args.cls_weight * cls
            # unrolled steps: step s from j takes the true a[j+s-1] and predicts a[j+s]
            chain, g_all = [], out
            for s_ in range(1, args.train_steps):
                if tok.shape[1] <= s_ + 1:
                    break
                fed = torch.zeros_like(tok)
                fed[:, : -s_] = tok[:, s_:]
                g_all = chain_step(model, g_all, E[fed], K, V, chain, s_)
                valid_s = mask[:, s_ + 1:]
                ls = F.cross_entropy(g_all[:, : -s_ - 1][valid_s] @ lm.T,
                                     index[tok[:, s_ + 1:][valid_s]], ignore_index=-100)
                loss = loss + args.cls_weight * args.step_weight * ls
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % 50 == 0 or step == steps:
                with torch.no_grad():
                    acc = (logits.argmax(-1) == tgt_tok).float().mean().item()
                print(f"step {step}/{steps} reg {reg.item():.4f} cls {cls.item():.3f} top1 {acc:.3f} "
                      f"({time.time() - t0:.0f} s)", flush=True)
    record["training_seconds"] = round(time.time() - t0)
    if args.save:
        torch.save(model.state_dict(), args.save)
    if args.export:
        export(model, vocab, counts, args.export, args.export_dtype, args.model)
        print(f"wrote {args.export}", flush=True)

    record["draft"] = draft_chain(model, held, states, E, kinds, lm, vocab_t, args.depth)
    print("draft:", json.dumps(record["draft"]), flush=True)
    write_record(args.out, record)


def draft_chain(model, held, states, E, kinds, lm, vocab_t, depth):
    """Chain acceptance of the draft on `held`: at every position, with the draft's context
    teacher-forced up to it, the draft proposes `depth` tokens, each step fed its own output
    and token."""
    model.eval()
    results = {"open": np.zeros(depth + 1), "grounded": np.zeros(depth + 1)}
    positions = {"open": 0, "grounded": 0}
    step1 = {"open": np.zeros(3), "grounded": np.zeros(3)}
    with torch.no_grad():
        for i in range(0, len(held), 8):
            batch = held[i: i + 8]
            feat, tok, mask = make_batch(batch, states)
            out, (K, V) = model(feat, E[tok])  # K [B, H, T, D]
            B, T = tok.shape
            g = out  # step-1 outputs at every j
            logits = g @ lm.T
            top3 = logits.topk(3, -1).indices  # [B, T, 3]
            d_tok = vocab_t[top3[..., 0]]
            accepted_so_far = torch.ones(B, T, dtype=torch.bool)
            length = torch.zeros(B, T, dtype=torch.long)
            chain = []
            for s in range(1, depth + 1):
                # target token for step s from position j is a[j+s]
                tgt = torch.full((B, T), -1, dtype=torch.long)
                tgt[:, : T - s] = tok[:, s:].masked_fill(~mask[:, s:], -1)
                ok = (d_tok == tgt) & accepted_so_far
                length += ok.long()
                accepted_so_far = ok
                if s == 1:
                    hit = (vocab_t[top3] == tgt.unsqueeze(-1))
                    first_hits = [hit[..., :k].any(-1) for k in (1, 2, 3)]
                if s == depth:
                    break
                # next step: fuse own output with own token
                g = chain_step(model, g, E[d_tok], K, V, chain, s)
                d_tok = vocab_t[(g @ lm.T).argmax(-1)]
            for b, (prompt, t, _) in enumerate(batch):
                kind = kinds[prompt]
                n = len(t) - 1  # positions with at least one target
                L = length[b, :n].numpy()
                for dd in range(1, depth + 1):
                    results[kind][dd] += (L >= dd).sum()
                positions[kind] += n
                for k in range(3):
                    step1[kind][k] += first_hits[k][b, :n].sum().item()
    report = {}
    for kind in ("open", "grounded"):
        n = max(positions[kind], 1)
        p = results[kind][1:] / n
        report[kind] = {"positions": positions[kind], "accept_depth": [round(x, 4) for x in p],
                        "chain_tau": round(1 + p.sum(), 4), "step1_top": [round(x / n, 4) for x in step1[kind]]}
    n = sum(positions.values())
    p = (results["open"][1:] + results["grounded"][1:]) / n
    report["all"] = {"positions": n, "accept_depth": [round(x, 4) for x in p], "chain_tau": round(1 + p.sum(), 4)}
    return report


def export(model, vocab, counts, path, dtype, model_dir):
    """Writes the draft in the feature-draft format (parallel-decode/src/loading/feature_draft.rs):
    tensors `draft.<name>` in Hugging Face [out, in] layout, the shape and the vocabulary in the
    metadata, with the vocabulary also ranked by `counts` (its frequency in the training
    answers, the most frequent first), so that the proposer can score deeper guesses over the
    most frequent tokens only."""
    if not model.residual:
        raise SystemExit("--export needs a draft trained with --residual (the format has no output norm)")
    np_dtype, st_dtype = {"f16": (np.float16, "F16"), "f32": (np.float32, "F32")}[dtype]
    names = {"fc.weight": model.fc.weight, "fc.bias": model.fc.bias, "q.weight": model.q.weight,
             "k.weight": model.k.weight, "v.weight": model.v.weight, "o.weight": model.o.weight,
             "post.weight": model.post.w, "gate.weight": model.gate.weight, "up.weight": model.up.weight,
             "down.weight": model.down.weight}
    header, blobs, offset = {}, [], 0
    for name, tensor in names.items():
        data = tensor.detach().numpy().astype(np_dtype).tobytes()
        header["draft." + name] = {"dtype": st_dtype, "shape": list(tensor.shape),
                                   "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = {
        "format": "feature-draft", "version": "1", "hidden": str(model.fc.weight.shape[0]),
        "heads": str(model.h), "kv_heads": str(model.kvh), "head_dim": str(model.d),
        "intermediate": str(model.gate.weight.shape[0]), "rope_theta": str(model.theta),
        "rms_eps": str(model.post.eps), "vocab": json.dumps([int(t) for t in vocab]),
        "vocab_by_frequency": json.dumps([int(t) for t in sorted(vocab, key=lambda t: (-counts[t], t))]),
        "base_model": os.path.basename(os.path.normpath(model_dir)),
    }
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def write_record(path, record):
    if path:
        with open(path, "w") as f:
            json.dump(record, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
