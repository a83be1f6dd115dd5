#!/usr/bin/env python3
"""Float64 reference values of every pruning metric and compensation mode on three tiny fixtures.

Usage:  python3 scripts/make_metric_fixtures.py [--out Tests/Fixtures]

Writes Tests/Fixtures/<name>/metrics.json for <name> in qwen2_tied (3 layers, q/k/v biases, tied
embeddings), llama_gqa (2 layers, GQA) and llama_linear_bias (2 layers, attention and MLP biases: the
down bias is part of the compensation). Generated with torch 2.13.0+cpu, transformers 5.24.0 (other
versions print a warning; the numbers should agree to ~1e-12). Deterministic: re-running reproduces the
files byte for byte (float64 on one thread, deterministic algorithms, no random numbers but SplitMix64).

Everything here is computed from the definitions in docs/method.md, independently of the Swift code, on
the fixture's own checkpoint (model.safetensors, read with from_pretrained and converted to float64) and
its tokens.bin, with transformers' decoder-layer modules (attention, MLP, norms) run in float64 through
the patches of scripts/make_fixtures.py. The decoder loop is written out here so that layers can be
skipped (the *current model* of method.md) and every layer's input h_l, residual after attention u, MLP
output and output h_{l+1} seen; with all layers it is checked against the fixture's reference loss.

Setting, the same for every run (`common_args` in the file): the 32 tokens of tokens.bin cut into
W = 4 windows of T = 8; calibration windows floor(i*W/N) for i < N = 3, i.e. [0, 1, 2]; the validation
window of --compensate-at auto is [3] (max(1, N/8) = 1 taken from the windows left); --protect-first 0
--protect-last 0, so that these 2- and 3-layer models have candidates. 𝓛 = the mean next-token NLL over
positions 1..T-1 of the windows. t runs over all N*T tokens.

Metrics (lower = removed first), per kept layer l of the current model:
  gradmap  sum_{W in theta_l} sum|dL/dW| / sum_{W in theta_l} numel(W)          (theta_l: the 7 matrices)
  gradmap --gradient-norm l2   sqrt(sum_{W in theta_l} sum (dL/dW)^2) / sum numel(W)
  taylor   sum_{W in theta_l} sum |W * dL/dW|
  gate     -sum_t <dL/dh_{l+1,t}, f_l(h_l)_t>,  f_l(h_l) = h_{l+1} - h_l
  fisher   sum_t <dL/dh_{l+1,t}, f_l(h_l)_t>^2
  bi       1 - mean_t cos(h_{l,t}, h_{l+1,t}); one-shot (original model) or --iterative (current model)
  angular  block of n = K layers from l: mean over windows of arccos(cos(h_l, h_{l+n}))/pi at the window's
           last token (h_L = the last layer's output, before the final norm); removes [l*, l*+n)
  sleb     𝓛 of the current model with l also removed (removable layers only)
  random   SplitMix64 with state seed + 0x5eed (mod 2^64), one draw (next() >> 11) / 2^53 per kept
           layer in ascending order at each decision (protected layers draw too), the state carried over
           decisions (the rule of Pruner.swift, stated in method.md since issue 13; it used to say
           only "uniform in [0,1) from SplitMix64(seed)").
Schedule: one-shot metrics (bi, angular) score the original model once; the others rescore the current
model for each of the K decisions; the lowest-scored removable kept layer goes (ties: lower index).
--verify-top M: the M lowest (score, index) candidates are each removed in turn and 𝓛 measured; the
lowest (loss, index) goes, its score in the report being that loss.

Compensation (method.md, stage 2), on the model with `--layers` removed (unscored, so it does not depend on
a metric): sigma_j = |mu'_j - mu_j| / |mu_j| from the mean outputs of kept layer j in the pruned (mu') and
original (mu) models over the calibration tokens; at layer j: r = y - u - b, z = MLP output without the
down bias b, A = sum r z^T, B = sum z z^T, lambda = alpha tr(B)/H, P = (A + lambda I)(B + lambda I)^-1
(alpha raised x10 from at least 1e-6 while B + lambda I is not positive definite); reconstruction errors
before (P = I) and after, |h' - y|^2 summed / |y|^2 summed, computed directly from the tokens; fold
D <- P D. `shift`: j* = argmax sigma (ties: lower index); LAYER: that layer; `auto`: candidates = the 3
largest sigma (ties: lower index) and the first kept layer after each run of removed layers, alpha in
{0.1, 1, 10}, each (layer, alpha) folded and every validation window's loss measured; best = the lowest
mean (ties: first in (layer ascending, alpha ascending) order); tied = the pairs whose paired 95 % interval
of (pair - best) over the windows has its lower end <= 0 (one window: equal means only); pick = the tied
pair with the largest alpha (ties: lower mean, then first); folded if its mean is below the pruned model's
by more than a relative 1e-6 and (two or more windows) the paired interval of (pick - pruned) lies below 0.
The interval: mean +- t sd / sqrt(n) of the per-window differences, sd with divisor n - 1,
t = scipy.stats.t.ppf(0.975, n - 1) (Student's quantile). The auto runs with "--calib-windows 2 --validation-windows 2" use
calibration windows [0, 2] and validation windows [1, 3].

Each decision made here carries its margin (the relative gap to the runner-up); the script refuses a
setting whose decisions a float32 engine could flip (margin below 1e-3).

File format (metrics.json): {"generator", "versions", "fixture", "layers", "hidden", "seq_len",
"windows", "calibration_windows", "validation_windows", "common_args", "loss_original",
 "score": [{"name", "metric", "args", "scores"}],                      # `gradmap-dist score` runs
 "prune": [{"name", "metric", "args", "removed", "scores" (per decision), "decision_scores",
            "verified" (per decision, [[layer, loss]]), "calib_loss": {"original", "pruned"},
            "margins" (null: one candidate)}],                          # `gradmap-dist prune --no-compensate`
 "compensation": [{"name", "mode", "args", "removed", "shifts" ([[layer, sigma]]), "chosen_layer",
                   "alpha", "lambda", "recon_error_before", "recon_error_after", "p" (row-major H*H, the
                   chosen candidate's), "calib_loss": {"original", "pruned", "compensated"},
                   "baseline_validation_loss", "candidates": [{"layer", "alpha", "lambda",
                   "validation_loss", "recon_error_before", "recon_error_after"}], "margin"}]}
Scores are null where the Swift tool prints null (removed layers, sleb's non-candidates, angular blocks
that do not fit). `args` are every CLI flag after `gradmap-dist score|prune --model DIR --tokens
DIR/tokens.bin` (`common_args` with the run's own flags replacing theirs), but `--out DIR --json`.
"""

import argparse
import json
import math
import os
import statistics
import struct
import sys

import scipy.stats
import torch
import torch.nn.functional as F

import transformers
from transformers import AutoModelForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures  # noqa: E402  (the float64 patches and the expected versions)

SEQ, CALIB = 8, 3
MIN_MARGIN = 1e-3
COMMON_ARGS = ["--seq-len", str(SEQ), "--calib-windows", str(CALIB), "--protect-first", "0",
               "--protect-last", "0", "--matmul", "f32"]
AUTO_ALPHAS = [1e-1, 1.0, 10.0]
MINIMUM_GAIN = 1e-6
TWO_VALIDATION = ["--calib-windows", "2", "--validation-windows", "2"]
MASK64 = (1 << 64) - 1

# Per fixture: K for the prune runs, the random seeds, --verify-top runs, and the compensation runs
# (layers removed with --layers, then each mode).
FIXTURES = {
    "qwen2_tied": dict(
        remove=2, seeds=[0, 18446744073709551615], random_protect_first=1,
        # bi's scores fall with depth here, so bi removes the last layer first and --iterative rescoring
        # changes nothing; with --verify-top 2 the loss removes layer 1 first, and the iterative rescoring of
        # layer 2 (now fed by layer 0) differs from the one-shot score.
        verify=[("gradmap_verify2", "gradmap", 2, False), ("fisher_verify3", "fisher", 3, False),
                ("bi_verify2", "bi", 2, False), ("bi_iterative_verify2", "bi", 2, True)],
        # Not ([1], "auto"): its candidate layer 0 is unchanged by the removal (sigma 0, P = I exactly), so
        # its validation loss ties the uncompensated baseline and rounding alone decides.
        compensation=[([1], "shift"), ([0], "shift"), ([0], "1"), ([0], "auto"), ([0], "auto", 2)],
    ),
    "llama_gqa": dict(
        remove=1, seeds=[0, 42], verify=[("taylor_verify2", "taylor", 2, False)],
        compensation=[([0], "shift"), ([0], "auto"), ([0], "auto", 2)],
    ),
    # q/k/v/o and gate/up/down biases: the down bias enters the compensation's target (r = y - u - b).
    "llama_linear_bias": dict(
        remove=1, seeds=[7], verify=[("gate_verify2", "gate", 2, False)],
        # Its one-window auto run is left out: two of its solutions are within 2e-4 of each other there.
        compensation=[([0], "shift"), ([0], "auto", 2)],
    ),
}


# --------------------------------------------------------------------------- SplitMix64

class SplitMix64:
    def __init__(self, state):
        self.state = state & MASK64

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def unit(self):
        return (self.next() >> 11) / float(1 << 53)


# --------------------------------------------------------------------------- the float64 model

class Model:
    """The fixture's model in float64 with a decoder loop that can skip layers and expose internals."""

    def __init__(self, folder):
        m = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager", dtype=torch.float32)
        self.hf = m.to(torch.float64)
        self.hf.eval()
        for p in self.hf.parameters():
            p.requires_grad_(False)
        self.cfg = self.hf.config
        self.L = self.cfg.num_hidden_layers
        self.H = self.cfg.hidden_size
        with open(os.path.join(folder, "tokens.bin"), "rb") as f:
            raw = f.read()
        self.tokens = torch.tensor(struct.unpack("<%dI" % (len(raw) // 4), raw), dtype=torch.int64)
        self.layers = list(self.hf.model.layers)

    def windows(self, seq):
        w = self.tokens.numel() // seq
        return self.tokens[: w * seq].reshape(w, seq)

    def matrices(self, l):
        """The seven weight matrices of layer l (theta_l), by name."""
        layer = self.layers[l]
        a, m = layer.self_attn, layer.mlp
        return {"q": a.q_proj.weight, "k": a.k_proj.weight, "v": a.v_proj.weight, "o": a.o_proj.weight,
                "gate": m.gate_proj.weight, "up": m.up_proj.weight, "down": m.down_proj.weight}

    def run(self, ids, kept, weight_grads=False, act_grads=False):
        """Forward (and backward with either flag) of the model keeping the layers `kept` over ids [N, T].
        Returns loss and per-layer dicts: inp, u, mlp (MLP output incl. bias), out, and with act_grads
        gout = dL/dh_{l+1}; with weight_grads {l: {name: dL/dW}}."""
        hf = self.hf
        kept = sorted(kept)
        params = [w for l in kept for w in self.matrices(l).values()] if weight_grads else []
        for p in params:
            p.requires_grad_(True)
            p.grad = None
        n, t = ids.shape
        with torch.enable_grad() if (weight_grads or act_grads) else torch.no_grad():
            h = hf.model.embed_tokens(ids)
            pos = torch.arange(t).unsqueeze(0)
            pe = hf.model.rotary_emb(h, pos)
            mask = torch.full((t, t), torch.finfo(torch.float64).min, dtype=torch.float64).triu(1)[None, None]
            if act_grads and not weight_grads:
                h = h.detach().requires_grad_(True)  # a graph to run the backward through
            rec = {}
            for l in kept:
                layer = self.layers[l]
                attn, _ = layer.self_attn(hidden_states=layer.input_layernorm(h), position_embeddings=pe,
                                          attention_mask=mask, position_ids=pos)
                u = h + attn
                mlp = layer.mlp(layer.post_attention_layernorm(u))
                out = u + mlp
                if act_grads:
                    out.retain_grad()
                rec[l] = dict(inp=h, u=u, mlp=mlp, out=out)
                h = out
            logits = hf.lm_head(hf.model.norm(h))
            v = logits.shape[-1]
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, v), ids[:, 1:].reshape(-1))
            if weight_grads or act_grads:
                loss.backward()
        grads = {}
        if weight_grads:
            for l in kept:
                grads[l] = {k: w.grad.detach().clone() for k, w in self.matrices(l).items()}
            for p in params:
                p.grad = None
                p.requires_grad_(False)
        for l, r in rec.items():
            if act_grads:
                r["gout"] = r["out"].grad.detach()
            for k in ("inp", "u", "mlp", "out"):
                r[k] = r[k].detach()
        return loss.item(), rec, grads

    def loss(self, ids, kept):
        return self.run(ids, kept)[0]

    def check_full_model(self, ids, reference_loss):
        """The loop with every layer reproduces the HF model's own forward and the fixture's loss."""
        loss, _, _ = self.run(ids, range(self.L))
        with torch.no_grad():
            logits = self.hf(input_ids=ids).logits
        v = logits.shape[-1]
        hf_loss = F.cross_entropy(logits[:, :-1].reshape(-1, v), ids[:, 1:].reshape(-1)).item()
        assert abs(loss - hf_loss) < 1e-12, (loss, hf_loss)
        assert abs(loss - reference_loss) < 1e-6, (loss, reference_loss)  # reference.json is float32


# --------------------------------------------------------------------------- metrics

def score(model, ids, kept, metric, removable, norm="l1", rng=None):
    """Scores of every original layer (None where the tool prints null) on the model keeping `kept`."""
    L = model.L
    s = [None] * L
    if metric in ("gradmap", "taylor"):
        _, _, grads = model.run(ids, kept, weight_grads=True)
        for l in kept:
            w = model.matrices(l)
            count = sum(x.numel() for x in w.values())
            if metric == "taylor":
                s[l] = sum((w[k] * grads[l][k]).abs().sum().item() for k in w)
            elif norm == "l1":
                s[l] = sum(g.abs().sum().item() for g in grads[l].values()) / count
            else:
                s[l] = math.sqrt(sum((g * g).sum().item() for g in grads[l].values())) / count
    elif metric in ("gate", "fisher"):
        _, rec, _ = model.run(ids, kept, act_grads=True)
        for l in kept:
            r = rec[l]
            d = (r["gout"] * (r["out"] - r["inp"])).sum(-1)  # <dL/dh_{l+1,t}, f_t> per token
            s[l] = -d.sum().item() if metric == "gate" else (d * d).sum().item()
    elif metric == "bi":
        _, rec, _ = model.run(ids, kept)
        for l in kept:
            c = F.cosine_similarity(rec[l]["inp"], rec[l]["out"], dim=-1, eps=0.0)
            s[l] = 1.0 - c.mean().item()
    elif metric == "sleb":
        for c in removable:
            s[c] = model.loss(ids, set(kept) - {c})
    elif metric == "random":
        for c in sorted(kept):
            s[c] = rng.unit()
    else:
        raise ValueError(metric)
    return s


def angular_scores(model, ids, n, protect_first=0, protect_last=0):
    L = model.L
    _, rec, _ = model.run(ids, range(L))
    hs = [rec[b]["inp"][:, -1] for b in range(L)] + [rec[L - 1]["out"][:, -1]]  # h_0..h_L at the last token
    s = [None] * L
    for start in range(protect_first, L - protect_last - n + 1):
        c = F.cosine_similarity(hs[start], hs[start + n], dim=-1, eps=0.0).clamp(-1, 1)
        s[start] = (torch.arccos(c) / math.pi).mean().item()
    return s


def ranked(scores, candidates):
    return sorted((c for c in candidates if scores[c] is not None), key=lambda c: (scores[c], c))


def margin(values):
    """Relative gap between the lowest and the second lowest value (inf with one)."""
    v = sorted(values)
    if len(v) < 2:
        return math.inf
    return (v[1] - v[0]) / max(abs(v[0]), abs(v[1]), 1e-30)


def prune_run(model, ids, metric, k, norm="l1", iterative=False, verify=1, seed=None, protect_first=0):
    """The K decisions of `prune --no-compensate`, as the tool reports them."""
    L = model.L
    kept = set(range(L))
    rng = SplitMix64(seed + 0x5EED) if metric == "random" else None

    def removable():  # --protect-last is 0 in every run
        return sorted(c for c in kept if c >= protect_first)

    out = dict(removed=[], scores=[], decision_scores=[], verified=[], margins=[])

    def record(layer, sc, scores, verified, m):
        out["removed"].append(layer)
        out["decision_scores"].append(sc)
        out["scores"].append(scores)
        out["verified"].append(verified)
        out["margins"].append(m)
        kept.discard(layer)

    if metric == "angular":
        scores = angular_scores(model, ids, k)
        start = ranked(scores, range(L))[0]
        m = margin([scores[c] for c in range(L) if scores[c] is not None])
        for layer in range(start, start + k):
            s = [None if c not in kept else scores[c] for c in range(L)]
            record(layer, scores[start], s, [], m)
        return out
    one_shot = score(model, ids, kept, "bi", removable()) if metric == "bi" and not iterative else None
    for _ in range(k):
        if one_shot is not None:
            scores = [None if c not in kept else one_shot[c] for c in range(L)]
        else:
            scores = score(model, ids, kept, metric, removable(), norm=norm, rng=rng)
        order = ranked(scores, removable())
        if verify > 1 and metric != "sleb":
            top = order[:verify]
            verified = [[c, model.loss(ids, kept - {c})] for c in top]
            best = min(verified, key=lambda x: (x[1], x[0]))
            m = margin([x[1] for x in verified])
            if len(order) > verify:  # which M candidates are verified must not be a near tie either
                m = min(m, margin([scores[order[verify - 1]], scores[order[verify]]]))
            record(best[0], best[1], scores, verified, m)
        else:
            record(order[0], scores[order[0]], scores, [], margin([scores[c] for c in order]))
    return out


# --------------------------------------------------------------------------- compensation

def layer_means(rec, layers):
    return {j: rec[j]["out"].reshape(-1, rec[j]["out"].shape[-1]).mean(0) for j in layers}


def fit(model, orig_rec, pruned_rec, j, alpha):
    """P, lambda, alpha, and the reconstruction errors at kept layer j (method.md stage 2, step 3)."""
    H = model.H
    down = model.layers[j].mlp.down_proj
    b = down.bias if down.bias is not None else torch.zeros(H, dtype=torch.float64)
    y = orig_rec[j]["out"].reshape(-1, H)
    u = pruned_rec[j]["u"].reshape(-1, H)
    z = pruned_rec[j]["mlp"].reshape(-1, H) - b
    r = y - u - b
    A = r.T @ z
    B = z.T @ z
    eye = torch.eye(H, dtype=torch.float64)
    raised = False
    for _ in range(12):
        lam = alpha * (torch.trace(B).item() / H if torch.trace(B).item() > 0 else 1.0)
        _, info = torch.linalg.cholesky_ex(B + lam * eye)
        if info.item() > 0:
            alpha, raised = max(alpha * 10, 1e-6), True
            continue
        P = torch.linalg.solve(B + lam * eye, (A + lam * eye).T).T  # (A + lam I)(B + lam I)^-1, B symmetric
        yy = (y * y).sum().item()
        before = ((u + b + z - y) ** 2).sum().item() / yy
        after = ((u + b + z @ P.T - y) ** 2).sum().item() / yy
        return dict(p=P, lam=lam, alpha=alpha, raised=raised, before=before, after=after)
    raise RuntimeError("not positive definite")


def paired_interval(a, b):
    """The 95 % Student interval of the mean of b - a over windows (method.md, Perplexity protocol)."""
    d = [y - x for x, y in zip(a, b)]
    n = len(d)
    m = sum(d) / n
    sd = math.sqrt(sum((x - m) ** 2 for x in d) / (n - 1))
    t = float(scipy.stats.t.ppf(0.975, n - 1))
    return m - t * sd / math.sqrt(n), m + t * sd / math.sqrt(n)


def auto_choice(base_w, sol_w, means, baseline, alphas):
    """The solution --compensate-at auto folds (None: none) and the margin of every comparison that decided
    it (relative to the baseline loss): best's lead, each interval end against 0, the gain against 1e-6."""
    n = len(base_w)
    best = min(range(len(means)), key=lambda k: (means[k], k))
    margins = [margin(means + [baseline])]
    if n >= 2:
        lows = {k: paired_interval(sol_w[best], sol_w[k])[0] for k in range(len(means))}
        tied = [k for k in range(len(means)) if lows[k] <= 0]
        margins += [abs(lows[k]) / abs(baseline) for k in range(len(means)) if k != best]
    else:
        tied = [k for k in range(len(means)) if means[k] == means[best]]
    pick = max(tied, key=lambda k: (alphas[k], -means[k], -k))
    # The fold's tests, each as (passed, margin): folded when all pass; when one fails, the clearest failure
    # decides it.
    gain = (baseline - means[pick]) / abs(baseline)
    tests = [(gain > MINIMUM_GAIN, abs(gain - MINIMUM_GAIN))]
    if n >= 2:
        hi = paired_interval(base_w, sol_w[pick])[1]
        tests.append((hi < 0, abs(hi) / abs(baseline)))
    failed = [m for ok, m in tests if not ok]
    margins.append(max(failed) if failed else min(m for _, m in tests))
    return (None if failed else pick), min(margins)


def compensation_run(model, ids, val_ids, removed, mode):
    L = model.L
    kept = set(range(L)) - set(removed)
    _, orig_rec, _ = model.run(ids, range(L))
    _, pruned_rec, _ = model.run(ids, kept)
    mu, mu_p = layer_means(orig_rec, kept), layer_means(pruned_rec, kept)
    shifts = [[j, math.sqrt(((mu_p[j] - mu[j]) ** 2).sum().item() / max((mu[j] ** 2).sum().item(), 1e-300))]
              for j in sorted(kept)]
    by_sigma = sorted(shifts, key=lambda x: (-x[1], x[0]))
    out = dict(removed=removed, shifts=shifts)
    if mode == "shift":
        candidates, alphas = [by_sigma[0][0]], [1e-2]
        sig = [x[1] for x in shifts]
        out["margin"] = margin([-x for x in sig])
    elif mode == "auto":
        cand = {x[0] for x in by_sigma[:3]}
        cand |= {r + 1 for r in range(L) if r not in kept and r + 1 < L and r + 1 in kept}
        candidates, alphas = sorted(cand), AUTO_ALPHAS
    else:
        candidates, alphas = [int(mode)], [1e-2]
    fits = [(j, a, fit(model, orig_rec, pruned_rec, j, a)) for j in candidates for a in alphas]
    rows = []
    chosen = 0
    baseline = None
    if mode == "auto":
        def window_losses():
            return [model.loss(val_ids[w:w + 1], kept) for w in range(val_ids.shape[0])]
        base_w = window_losses()
        baseline = sum(base_w) / len(base_w)
        sol_w = []
        for j, _, f in fits:
            down = model.layers[j].mlp.down_proj
            old = down.weight.data.clone()
            down.weight.data = f["p"] @ old
            sol_w.append(window_losses())
            down.weight.data = old
        losses = [sum(w) / len(w) for w in sol_w]
        chosen, out["margin"] = auto_choice(base_w, sol_w, losses, baseline, [f["alpha"] for _, _, f in fits])
    else:
        losses = [None] * len(fits)
    for (j, a, f), v in zip(fits, losses):
        rows.append(dict(layer=j, alpha=f["alpha"], **{"lambda": f["lam"]}, validation_loss=v,
                         recon_error_before=f["before"], recon_error_after=f["after"]))
    out["candidates"] = rows
    out["baseline_validation_loss"] = baseline
    pruned_loss = model.loss(ids, kept)
    calib = dict(original=model.loss(ids, range(L)), pruned=pruned_loss, compensated=None)
    if chosen is None:
        out.update(chosen_layer=None, alpha=None, **{"lambda": None}, recon_error_before=None,
                   recon_error_after=None, p=None)
    else:
        j, _, f = fits[chosen]
        down = model.layers[j].mlp.down_proj
        old = down.weight.data.clone()
        down.weight.data = f["p"] @ old
        calib["compensated"] = model.loss(ids, kept)
        down.weight.data = old
        out.update(chosen_layer=j, alpha=f["alpha"], **{"lambda": f["lam"]}, recon_error_before=f["before"],
                   recon_error_after=f["after"], p=f["p"].flatten().tolist())
    out["calib_loss"] = calib
    return out


# --------------------------------------------------------------------------- one fixture

def dumps(o, level=0):
    """JSON with one key per line and every list of scalars on one line."""
    pad = " " * (level + 1)
    if isinstance(o, dict):
        items = [f"{pad}{json.dumps(k)}: {dumps(v, level + 1)}" for k, v in o.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * level + "}"
    if isinstance(o, float) and math.isinf(o):
        return "null"  # a margin with a single candidate
    if isinstance(o, list) and any(isinstance(x, (dict, list)) for x in o):
        return "[\n" + ",\n".join(pad + dumps(x, level + 1) for x in o) + "\n" + " " * level + "]"
    if isinstance(o, list):
        return "[" + ", ".join(dumps(x, level + 1) for x in o) + "]"
    return json.dumps(o, allow_nan=False)


def flags(*extra):
    """COMMON_ARGS with the flags given in `extra` replacing theirs (every common flag takes a value)."""
    extra = list(extra)
    given = {extra[i] for i in range(len(extra)) if extra[i].startswith("--")}
    out = []
    for i in range(0, len(COMMON_ARGS), 2):
        if COMMON_ARGS[i] not in given:
            out += COMMON_ARGS[i:i + 2]
    return out + extra


def build(name, spec, root):
    folder = os.path.join(root, name)
    with open(os.path.join(folder, "reference.json")) as f:
        ref = json.load(f)
    model = Model(folder)
    with make_fixtures.float64_patches(model.hf):
        model.check_full_model(model.windows(ref["seq_len"]), ref["loss"])
        wins = model.windows(SEQ)
        W = wins.shape[0]
        calib = [i * W // CALIB for i in range(CALIB)]
        rest = [w for w in range(W) if w not in calib]
        nval = max(1, CALIB // 8)
        val = [rest[i * len(rest) // nval] for i in range(nval)]
        ids, val_ids = wins[calib], wins[val]
        L = model.L
        everything = list(range(L))
        doc = dict(generator="scripts/make_metric_fixtures.py",
                   versions={"torch": torch.__version__, "transformers": transformers.__version__},
                   fixture=name, layers=L, hidden=model.H, seq_len=SEQ, windows=W, calibration_windows=calib,
                   validation_windows=val, common_args=COMMON_ARGS,
                   loss_original=model.loss(ids, everything))

        # `score`: one decision's scores on the unpruned model.
        runs = []
        for nm, metric, extra, kw in [
            ("gradmap_l1", "gradmap", [], {}), ("gradmap_l2", "gradmap", ["--gradient-norm", "l2"], {"norm": "l2"}),
            ("taylor", "taylor", [], {}), ("gate", "gate", [], {}), ("fisher", "fisher", [], {}),
            ("bi", "bi", [], {}), ("sleb", "sleb", [], {}),
        ]:
            runs.append(dict(name=nm, metric=metric, args=flags("--metric", metric, *extra),
                             scores=score(model, ids, everything, metric, everything, **kw)))
        for n in range(1, L):
            runs.append(dict(name=f"angular_n{n}", metric="angular", args=flags("--metric", "angular", "--remove", str(n)),
                             scores=angular_scores(model, ids, n)))
        for seed in spec["seeds"]:
            runs.append(dict(name=f"random_seed{seed}", metric="random", args=flags("--metric", "random", "--seed", str(seed)),
                             scores=score(model, ids, everything, "random", everything, rng=SplitMix64(seed + 0x5EED))))
        doc["score"] = runs

        # `prune --no-compensate`: the K decisions.
        k = spec["remove"]
        prunes = []

        def add(nm, metric, extra, k=k, **kw):
            r = prune_run(model, ids, metric, k, **kw)
            kept = set(everything) - set(r["removed"])
            r = dict(name=nm, metric=metric,
                     args=flags("--metric", metric, "--remove", str(k), *extra, "--no-compensate"), **r)
            r["calib_loss"] = dict(original=doc["loss_original"], pruned=model.loss(ids, kept))
            if metric != "random":  # random's decisions are exact; every other must survive float32 rounding
                assert min(r["margins"]) >= MIN_MARGIN, f"{name} {nm}: decision margins {r['margins']} too small"
            prunes.append(r)

        for metric in ("gradmap", "taylor", "gate", "fisher", "bi", "sleb", "angular"):
            add(metric, metric, [])
        add("gradmap_l2", "gradmap", ["--gradient-norm", "l2"], norm="l2")
        add("bi_iterative", "bi", ["--iterative"], iterative=True)
        for seed in spec["seeds"]:
            add(f"random_seed{seed}", "random", ["--seed", str(seed)], seed=seed)
        pf = spec.get("random_protect_first")
        if pf is not None:
            seed = spec["seeds"][0]
            add(f"random_seed{seed}_protect_first{pf}", "random", ["--seed", str(seed), "--protect-first", str(pf)],
                k=L - pf - 1, seed=seed, protect_first=pf)
        for nm, metric, m, iterative in spec["verify"]:
            add(nm, metric, ["--verify-top", str(m)] + (["--iterative"] if iterative else []), verify=m,
                iterative=iterative)
        doc["prune"] = prunes

        # Compensation, on the model with --layers removed.
        comps = []
        for removed, mode, *two in spec["compensation"]:
            # (removed, "auto", 2): two validation windows, so that the choice's intervals have a spread.
            c_ids, v_ids, extra, suffix = ids, val_ids, [], ""
            if two:
                c_ids, v_ids, extra, suffix = wins[[0, 2]], wins[[1, 3]], TWO_VALIDATION, "_validation2"
            c = compensation_run(model, c_ids, v_ids, removed, mode)
            args = flags("--layers", ",".join(map(str, removed)), "--compensate-at", mode, *extra)
            run = dict(name=f"layers{'_'.join(map(str, removed))}_{mode}{suffix}", mode=mode, args=args)
            if two:
                run.update(calibration_windows=[0, 2], validation_windows=[1, 3])
            comps.append(dict(**run, **c))
            assert c.get("margin", math.inf) >= MIN_MARGIN, f"{name} {mode}: margin {c['margin']} too small"
        doc["compensation"] = comps

    path = os.path.join(folder, "metrics.json")
    text = dumps(doc) + "\n"
    with open(path, "w") as f:
        f.write(text)
    print(f"== {name}: {path} ({len(text)} bytes)")
    for r in doc["prune"]:
        print(f"   prune {r['name']:32s} removed {r['removed']}  margins "
              + " ".join(f"{m:.2e}" for m in r["margins"]))
    for c in doc["compensation"]:
        print(f"   compensation {c['name']:16s} j* {c['chosen_layer']}  alpha {c['alpha']}  "
              f"margin {c.get('margin', math.inf):.2e}  shifts {c['shifts']}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                                  "Tests", "Fixtures"))
    args = ap.parse_args()
    got = {"torch": torch.__version__, "transformers": transformers.__version__}
    want = {k: make_fixtures.EXPECTED_VERSIONS[k] for k in got}
    if got != want:
        print(f"warning: versions {got} differ from {want}", file=sys.stderr)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    for name, spec in FIXTURES.items():
        build(name, spec, os.path.normpath(args.out))


if __name__ == "__main__":
    main()
