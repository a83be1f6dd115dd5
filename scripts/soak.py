#!/usr/bin/env python3
"""Soak: mixed gradmap-dist jobs back to back under mpirun (prune, eval and score; 1-4 ranks with stage splits
and replicas), about a third of them killed at a random point (SIGKILL of one rank, or SIGTERM/SIGINT of
mpirun), a few with bad input, some specs repeated with identical inputs. After each job and at the end:

  (a) no stray process: nothing the job started (mpirun and its descendants, tracked by pid and start time,
      so other people's gradmap-dist processes on the machine are never looked at) outlives it;
  (b) no `.partial` folder anywhere under the work folder (a SIGKILLed sole writer may leave one: the next
      prune to the same --out, planned right after it, must remove it);
  (c) identical inputs give identical outputs: stdout JSON without timings, every checkpoint file's sha256
      (pruning_report.json: its fields without timings, ranks and command);
  (d) every failure says why: a killed job exits non-zero with a line naming the signal or the rank; a
      bad-input job exits 2 with one message naming the flag or file; any other job exits 0.

    python3 scripts/soak.py [--jobs 30] [--seed 1] [--binary PATH] [--model GGUF|DIR] [--out FILE.json]

One line per job, then `soak: N passed, M failed`; exit 1 on any failed check. Results and the plan go to
--out (docs/reliability.md is written from it).
"""
import argparse
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORES = os.cpu_count() or 1

# name: (command, ranks, stages or None for the default, extra arguments). Gradient metrics: gradmap, taylor,
# fisher; bi with --verify-top 3; sleb (the costliest: 2 windows); one with the default compensation.
SPECS = {
    "prune-bi-np1": ("prune", 1, None, ["--metric", "bi"]),
    "prune-gradmap-np2-s2": ("prune", 2, 2, ["--metric", "gradmap", "--no-compensate"]),
    "prune-taylor-np4-s2": ("prune", 4, 2, ["--metric", "taylor", "--no-compensate"]),
    "prune-sleb-np2-s1": ("prune", 2, 1, ["--metric", "sleb", "--calib-windows", "2", "--no-compensate"]),
    "prune-bi-verify3-np3": ("prune", 3, None, ["--metric", "bi", "--verify-top", "3", "--no-compensate"]),
    "prune-fisher-np4-s4": ("prune", 4, 4, ["--metric", "fisher", "--no-compensate"]),
    "eval-np1": ("eval", 1, None, []),
    "eval-np4-s2": ("eval", 4, 2, []),
    "score-gradmap-np2-s2": ("score", 2, 2, ["--metric", "gradmap"]),
    "score-bi-np3-s3": ("score", 3, 3, ["--metric", "bi"]),
    "score-taylor-np1": ("score", 1, None, ["--metric", "taylor"]),
}
# Specs cheap enough to repeat for the identical-output check, and to kill.
REPEATABLE = ["prune-bi-np1", "prune-gradmap-np2-s2", "prune-taylor-np4-s2", "eval-np4-s2", "score-gradmap-np2-s2",
              "score-taylor-np1", "prune-fisher-np4-s4", "eval-np1"]
KILLABLE = ["prune-gradmap-np2-s2", "prune-taylor-np4-s2", "prune-bi-verify3-np3", "prune-fisher-np4-s4",
            "prune-bi-np1", "eval-np4-s2", "score-gradmap-np2-s2", "score-bi-np3-s3"]
# name: (command, ranks, extra arguments, what the one message must name).
BAD = {
    "bad-flag-metric": ("prune", 2, ["--metric", "nosuch"], "--metric"),
    "bad-flag-seq-len": ("eval", 1, ["--seq-len", "1"], "--seq-len"),
    "bad-truncated-tokens": ("score", 2, ["--tokens", "{truncated}"], "{truncated}"),
}
KILLS = ["SIGKILL rank", "SIGTERM mpirun", "SIGINT mpirun"]
GUESS = {"prune": 20.0, "eval": 5.0, "score": 3.0}  # seconds, until a run of the spec is measured
TIMING_KEYS = {"seconds", "total_seconds", "ranks", "command"}


def make_plan(rng, n):
    """Jobs as dicts: normal (every spec once, then repeats), kills (a third) and bad input, shuffled; the
    SIGKILL of a sole writer is followed by a normal prune to its --out."""
    bad = min(3, n // 10 + 1)
    kills = round(n / 3)
    normal = n - bad - kills
    names = (list(SPECS) + [rng.choice(REPEATABLE) for _ in range(n)])[:normal]
    jobs = [{"spec": s} for s in names]
    jobs += [{"spec": b, "bad": True} for b in list(BAD)[:bad]]
    stale = None
    for k in range(kills):
        how = KILLS[k % len(KILLS)]
        if k == 0 and "prune-bi-np1" in names:
            # Nobody is left to remove the folder: it stays until the next prune to the same --out.
            stale = {"spec": "prune-bi-np1", "kill": "SIGKILL rank", "at": "writing"}
            jobs.append(stale)
            continue
        spec = rng.choice([s for s in KILLABLE if how != "SIGKILL rank" or SPECS[s][1] > 1])
        at = rng.choice(["writing", "random"]) if SPECS[spec][0] == "prune" else "random"
        jobs.append({"spec": spec, "kill": how, "at": at})
    rng.shuffle(jobs)
    if stale:
        jobs.remove(stale)
        follow = next(j for j in jobs if j["spec"] == "prune-bi-np1" and "kill" not in j)
        jobs.remove(follow)
        i = rng.randrange(len(jobs) + 1)
        follow["recovers"] = True
        jobs[i:i] = [stale, follow]
    for i, j in enumerate(jobs):
        j["index"] = i + 1
    return jobs


# ---- processes: mpirun and everything under it, by pid and start time (pids are reused)
def proc_stat(pid):
    """(ppid, start time in ticks, state, command name) of a live pid, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    name = s[s.index("(") + 1:s.rindex(")")]
    fields = s[s.rindex(")") + 2:].split()
    return int(fields[1]), int(fields[19]), fields[0], name


class Tree:
    """The job's processes: mpirun and its descendants seen so far."""

    def __init__(self, pid):
        st = proc_stat(pid)
        self.known = {pid: (st[1] if st else 0, st[3] if st else "mpirun", None)}  # pid: (start, name, parent)

    def scan(self):
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) not in self.known:
                st = proc_stat(int(entry))
                if st and st[0] in self.known:
                    self.known[int(entry)] = (st[1], st[3], st[0])

    def alive(self):
        """Tracked processes still there (same start time, not a zombie)."""
        out = []
        for pid, (start, _, _) in self.known.items():
            st = proc_stat(pid)
            if st and st[1] == start and st[2] != "Z":
                out.append((pid, st[3]))
        return out

    def ranks(self, root):
        """{rank: pid} of mpirun's children that are ranks (OMPI_COMM_WORLD_RANK in their environment)."""
        out = {}
        for pid, (start, _, parent) in self.known.items():
            # By environment, not by name: a child seen between fork and exec is still called mpirun, and
            # gradmap-dist re-executes itself through /proc/self/exe (to set OPENBLAS_CORETYPE), after which
            # its name is "exe".
            st = proc_stat(pid)
            if parent == root and st and st[1] == start:
                try:
                    env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
                except OSError:
                    continue
                for v in env:
                    if v.startswith(b"OMPI_COMM_WORLD_RANK="):
                        out[int(v.split(b"=")[1])] = pid
        return out


def partials(folder):
    found = []
    for dirpath, dirnames, _ in os.walk(folder):
        found += [os.path.join(dirpath, d) for d in dirnames if d.endswith(".partial")]
    return found


# ---- outputs
def strip_timings(v):
    if isinstance(v, dict):
        return {k: strip_timings(x) for k, x in v.items() if k not in TIMING_KEYS and not k.endswith("_seconds")}
    if isinstance(v, list):
        return [strip_timings(x) for x in v]
    return v


def fingerprint(stdout, out_dir):
    """What identical inputs must reproduce: stdout's JSON and the checkpoint's files, timings aside."""
    lines = [l for l in stdout.splitlines() if l.startswith("{")]
    fp = {"stdout": strip_timings(json.loads(lines[-1])) if lines else None}
    if out_dir and os.path.isdir(out_dir):
        files = {}
        for name in sorted(os.listdir(out_dir)):
            path = os.path.join(out_dir, name)
            if name == "pruning_report.json":
                files[name] = strip_timings(json.load(open(path)))
                continue
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 22), b""):
                    h.update(block)
            files[name] = h.hexdigest()
        fp["files"] = files
    return fp


def first_difference(a, b, where=""):
    if type(a) is not type(b):
        return f"{where or 'value'}: {str(a)[:60]} vs {str(b)[:60]}"
    if isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{where}/{k}: only in one"
            d = first_difference(a[k], b[k], f"{where}/{k}")
            if d:
                return d
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{where}: {len(a)} vs {len(b)} entries"
        for i, (x, y) in enumerate(zip(a, b)):
            d = first_difference(x, y, f"{where}[{i}]")
            if d:
                return d
        return None
    return None if a == b else f"{where}: {str(a)[:60]} vs {str(b)[:60]}"


# ---- one job
def command(a, job, inputs, out_dir):
    if job.get("bad"):
        kind, np_, extra, _ = BAD[job["spec"]]
        stages = None
        extra = [x.format(**inputs) for x in extra]
    else:
        kind, np_, stages, extra = SPECS[job["spec"]]
    args = [kind, "--model", a.model, "--seq-len", str(a.seq_len)]
    tokens = inputs["calib"] if kind != "eval" else inputs["eval"]
    if "--tokens" not in extra:
        args += ["--tokens", tokens]
    if kind == "prune":
        args += ["--calib-windows", "4", "--remove", "2", "--out", out_dir, "--force", "--json"]
    elif kind == "score":
        args += ["--calib-windows", "4"]
    else:
        args += ["--max-windows", "16", "--json"]
    if stages:
        args += ["--stages", str(stages)]
    # A repeated flag takes its last value: a spec's own --calib-windows wins.
    args += extra
    flags = ["-np", str(np_), "--bind-to", "none", "-x", "GRADMAP_BLAS_THREADS"]
    if os.geteuid() == 0:
        flags.append("--allow-run-as-root")
    if np_ > CORES:
        flags += ["--oversubscribe", "--mca", "mpi_yield_when_idle", "1"]
    return ["mpirun"] + flags + [a.binary] + args, kind, np_, stages


def run_job(a, job, inputs, work, rng, durations):
    out_dir = job.get("out") or os.path.join(work, f"job{job['index']:02d}")
    job["out"] = out_dir
    cmd, kind, np_, stages = command(a, job, inputs, out_dir)
    job.update(kind=kind, ranks=np_, stages=stages, command=" ".join(cmd))
    env = dict(os.environ, GRADMAP_BLAS_THREADS=str(max(1, CORES // np_)))
    for k in [k for k in env if k.startswith(("OMPI_", "PMIX_"))]:
        del env[k]
    expected = durations.get(job["spec"], GUESS[kind])
    kill_at = rng.uniform(0.15, 0.9) * expected if job.get("kill") else None
    t0 = time.time()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         start_new_session=True)
    tree = Tree(p.pid)
    job["pgid"] = p.pid  # its own session and process group
    # Drain the pipes on threads so a chatty job never blocks on a full pipe while the soak polls.
    got = {}
    readers = [threading.Thread(target=lambda k=k, s=s: got.__setitem__(k, s.read())) for k, s in
               (("stdout", p.stdout), ("stderr", p.stderr))]
    for t in readers:
        t.start()
    partial = os.path.join(os.path.dirname(out_dir), "." + os.path.basename(out_dir) + ".partial")
    writing_seen = None
    while p.poll() is None:
        tree.scan()
        now = time.time() - t0
        if job.get("kill") and "killed" not in job:
            fire = False
            if job["at"] == "writing":
                # Writing the ~0.5 GB takes 1-3 s: kill within 0.3 s of the folder appearing (at once for
                # a sole writer, so its shard is half-written when it dies).
                if writing_seen is None and os.path.isdir(partial):
                    sole = job["ranks"] == 1 and job["kill"] == "SIGKILL rank"
                    writing_seen = now + (0.0 if sole else rng.uniform(0.0, 0.3))
                fire = writing_seen is not None and now >= writing_seen
            else:
                fire = now >= kill_at
            if fire:
                kill(job, p, tree, rng, now)
        if now > a.timeout:
            job.setdefault("failures", []).append(f"still running after {a.timeout:.0f} s: killed")
            os.killpg(p.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    p.wait()
    for t in readers:
        t.join()
    job["rc"] = p.returncode
    job["seconds"] = round(time.time() - t0, 2)
    job["stderr_tail"] = got.get("stderr", "").strip().splitlines()[-12:]
    return p.pid, tree, got.get("stdout", ""), got.get("stderr", "")


def kill(job, p, tree, rng, now):
    """Delivers the job's kill: SIGKILL to one rank (a child of mpirun), or SIGTERM/SIGINT to mpirun."""
    if job["kill"] == "SIGKILL rank":
        ranks = tree.ranks(p.pid)
        if not ranks:
            return  # not started yet: try again at the next poll
        r = rng.choice(sorted(ranks))
        try:
            os.kill(ranks[r], signal.SIGKILL)
        except ProcessLookupError:
            return
        job["killed"] = {"signal": "SIGKILL", "rank": r, "pid": ranks[r], "at": round(now, 2)}
    else:
        sig = signal.SIGTERM if job["kill"].startswith("SIGTERM") else signal.SIGINT
        os.kill(p.pid, sig)
        job["killed"] = {"signal": sig.name, "target": "mpirun", "at": round(now, 2)}


# ---- checks
def check_why(job, stdout, stderr):
    """(d): the exit code and a line saying why."""
    rc, lines = job["rc"], stderr.splitlines()
    if job.get("bad"):
        needle = BAD[job["spec"]][3].format(**job["inputs"])
        ours = {re.sub(r"^(rank \d+|gradmap-dist): ", "", l) for l in lines
                if re.match(r"^(rank \d+|gradmap-dist): ", l) and "stopped by SIG" not in l}
        if rc != 2:
            return [f"bad input: exit {rc}, expected 2"]
        if len(ours) != 1 or needle not in next(iter(ours)):
            return [f"bad input: expected one message naming {needle}, got {sorted(ours)}"]
        job["why"] = next(iter(ours))
        return []
    k = job.get("killed")
    if k is None:
        if job.get("kill"):
            job["note"] = "finished before the kill"
        if rc != 0:
            return [f"exit {rc} without a kill: {lines[-1] if lines else 'no message'}"]
        if not any(l.startswith("{") for l in stdout.splitlines()):
            return ["exit 0 but no JSON on stdout"]
        return []
    if rc == 0:
        # The signal came after the last rank had finished its work: mpirun may still exit 0.
        job["note"] = "the kill came after the work was done; exit 0"
        return []
    if k["signal"] == "SIGKILL":
        pattern = rf"rank {k['rank']} .*signal 9|rank {k['rank']}: "
    else:
        pattern = r"stopped by SIG(TERM|INT)|exited on signal"
    why = [l for l in lines if re.search(pattern, l)]
    if not why:
        return [f"killed ({k['signal']}), exit {rc}, but no line names the cause"]
    job["why"] = why[0].strip()
    return []


def check_strays(job, root, tree):
    """(a): wait a little for the tree to go, then name (and end) what stays."""
    tree.scan()
    deadline = time.time() + 5
    while tree.alive() and time.time() < deadline:
        time.sleep(0.1)
    left = tree.alive()
    for pid, _ in left:
        try:
            os.kill(pid, signal.SIGKILL)  # ours: tracked by pid and start time
        except ProcessLookupError:
            pass
    return [f"stray processes: {', '.join(f'{n} ({pid})' for pid, n in left)}"] if left else []


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--binary", default=os.path.join(ROOT, ".build", "release", "gradmap-dist"))
    ap.add_argument("--model", default=os.path.join(ROOT, ".cache", "assets", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--calib-text", default=os.path.join(ROOT, ".cache", "assets", "wiki", "calib.txt"))
    ap.add_argument("--eval-text", default=os.path.join(ROOT, ".cache", "assets", "wiki", "eval.txt"))
    ap.add_argument("--tokens", help="token file for every job instead of tokenising the texts (e.g. a fixture's)")
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--timeout", type=float, default=300, help="seconds before a job counts as hung")
    ap.add_argument("--work", default=os.path.join(ROOT, ".cache", "soak-work"), help="emptied first")
    ap.add_argument("--out", default=os.path.join(ROOT, ".cache", "soak.json"))
    a = ap.parse_args()
    for path, what in [(a.binary, "--binary (swift build -c release --product gradmap-dist)"), (a.model, "--model")]:
        if not os.path.exists(path):
            sys.exit(f"soak: {path}: not found ({what})")
    if shutil.which("mpirun") is None:
        sys.exit("soak: mpirun not found (apt package openmpi-bin)")
    a.binary, a.model = os.path.abspath(a.binary), os.path.abspath(a.model)
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    inputs = prepare_inputs(a)
    rng = random.Random(a.seed)
    jobs = make_plan(rng, a.jobs)
    by_spec = {}       # spec: (job index, fingerprint) of its first clean run
    durations = {}     # spec: seconds of a clean run, to place random kills
    stale = None       # a .partial a SIGKILLed sole writer left, for the next job to remove
    start = time.time()
    for job in jobs:
        job["inputs"] = inputs
        if job.get("recovers") and stale:
            job["out"] = stale["out"]
        root, tree, stdout, stderr = run_job(a, job, inputs, a.work, rng, durations)
        fails = job.setdefault("failures", [])
        fails += check_why(job, stdout, stderr)
        fails += check_strays(job, root, tree)
        left = partials(a.work)
        if job.get("killed", {}).get("signal") == "SIGKILL" and job["ranks"] == 1 and left:
            stale = {"out": job["out"], "partials": left}
            job["note"] = f"left {', '.join(os.path.basename(x) for x in left)} (nobody alive to remove it)"
        elif left:
            fails.append(f"partial folders left: {', '.join(left)}")
        if job.get("recovers") and stale:
            job["note"] = f"removed the stale {os.path.basename(stale['partials'][0])}"
            stale = None
        if not job.get("bad") and "killed" not in job and job["rc"] == 0:
            durations.setdefault(job["spec"], job["seconds"])
            fp = fingerprint(stdout, job["out"] if job["kind"] == "prune" else None)
            if job["spec"] in by_spec:
                first, ref = by_spec[job["spec"]]
                d = first_difference(ref, fp)
                job["same_as"] = first
                if d:
                    fails.append(f"differs from job {first}: {d}")
            else:
                by_spec[job["spec"]] = (job["index"], fp)
            job["files"] = sorted((fp.get("files") or {}).keys())
        shutil.rmtree(job["out"], ignore_errors=True)  # 0.5 GB each: keep only the fingerprint
        job["passed"] = not fails
        print(line(job, len(jobs)), flush=True)
    wall = time.time() - start
    end_fails = [f"partial folders left at the end: {x}" for x in partials(a.work)]
    end_fails += [f"stray gradmap-dist/mpirun processes in the soak's own process groups: {x}" for x in own_groups(jobs)]
    result = summary(a, jobs, wall, end_fails)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
    for x in end_fails:
        print(f"end: {x}")
    passed = sum(j["passed"] for j in jobs)
    print(f"soak: {passed} passed, {len(jobs) - passed} failed")
    sys.exit(0 if passed == len(jobs) and not end_fails else 1)


def prepare_inputs(a):
    """Token files in the work folder: the first 100 kB of the calibration text, 30 kB of the evaluation
    text, and a truncated copy (not a whole number of uint32 ids) for the bad-input job."""
    inputs = {}
    for key, text, size in [("calib", a.calib_text, 100_000), ("eval", a.eval_text, 30_000)]:
        path = os.path.join(a.work, key + ".bin")
        if a.tokens:
            shutil.copyfile(a.tokens, path)
        else:
            head = os.path.join(a.work, key + ".txt")
            with open(text, "rb") as f, open(head, "wb") as g:
                g.write(f.read(size).decode("utf-8", "ignore").encode())
            subprocess.run([a.binary, "tokenize", "--model", a.model, "--text", head, "--out", path], check=True,
                           capture_output=True)
        inputs[key] = path
    inputs["truncated"] = os.path.join(a.work, "truncated.bin")
    with open(inputs["calib"], "rb") as f, open(inputs["truncated"], "wb") as g:
        g.write(f.read(4 * 1000 + 2))
    return inputs


def own_groups(jobs):
    """Processes still in the process group of any job's mpirun (each job ran in its own session)."""
    groups = {j["pgid"] for j in jobs if "pgid" in j}
    left = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) in groups:
                    left.append(f"{proc_stat(int(entry))[3]} ({entry})")
            except (OSError, TypeError):
                pass
    return left


def line(job, n):
    kill_text = ""
    if job.get("killed"):
        k = job["killed"]
        kill_text = f"  {k['signal']} {'rank ' + str(k['rank']) if 'rank' in k else 'mpirun'} at {k['at']:.1f} s ({job['at']})"
    elif job.get("kill"):
        kill_text = f"  {job['kill']} planned ({job['at']})"
    split = f"np={job['ranks']}" + (f" S={job['stages']}" if job.get("stages") else "")
    extra = f"  same as job {job['same_as']}" if "same_as" in job else ""
    extra += f"  [{job['note']}]" if job.get("note") else ""
    extra += f"  why: {job['why'][:90]}" if job.get("why") else ""
    status = "ok" if job["passed"] else "FAIL: " + "; ".join(job["failures"])
    return f"job {job['index']:2d}/{n} {job['spec']:<22} {split:<9} rc={job['rc']:<4} {job['seconds']:6.1f} s{kill_text}{extra}  {status}"


def summary(a, jobs, wall, end_fails):
    cpu = ""
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
                   if l.startswith("Model name"))
    except (OSError, StopIteration):
        pass
    count = lambda key: {k: sum(1 for j in jobs if key(j) == k) for k in sorted({key(j) for j in jobs if key(j)})}
    for j in jobs:
        j.pop("inputs", None)
    return {
        "command": " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]), "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": cpu, "cores": CORES, "binary": a.binary, "model": a.model, "seq_len": a.seq_len, "seed": a.seed,
        "wall_seconds": round(wall, 1), "jobs": len(jobs), "passed": sum(j["passed"] for j in jobs),
        "by_kind": count(lambda j: "bad input" if j.get("bad") else j["kind"]),
        "by_ranks": count(lambda j: f"np={j['ranks']}"),
        "kills_planned": count(lambda j: j.get("kill")),
        "kills_delivered": count(lambda j: j.get("killed") and f"{j['killed']['signal']} {'rank' if 'rank' in j['killed'] else 'mpirun'}"),
        "compared_pairs": sum(1 for j in jobs if "same_as" in j),
        "end_failures": end_fails, "job_list": jobs,
    }


if __name__ == "__main__":
    main()
