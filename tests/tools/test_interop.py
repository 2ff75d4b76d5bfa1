#!/usr/bin/python3
"""bliss train <-> PyTorch (docs/cli.md "Interoperability", tools/pt_convert.py), with real torch:

  1. a 2-epoch run (milestone at epoch 1) converted with `pt_convert.py to-pt --lightning` and
     read back with torch.load has Lightning's epoch / global_step, a MultiStepLR state_dict
     equal to the one torch itself produces after the same scheduler steps, and Adam state
     that a torch 1.13 Adam loads, with per-parameter float `step` tensors;
  2. `bliss train --init` from the weights converted to a .pt state_dict and back (no
     optimizer state, no metadata) takes a first step with exactly the loss the resumed run
     takes (same weights, same fixed batch), unlike a run from scratch; its Adam starts at 0;
  3. --init with a missing, an unexpected or a mis-shaped weight fails naming it;
  4. --resume refuses a change of a model-shaping key naming it, and warns about others.
Exit 77 (meson: skipped) without python3-torch. argv: pt_convert.py. Env: BLISS, BLISS_CONFIGS."""
import collections
import os
import subprocess
import sys
import tempfile

try:
    import torch
except ImportError:
    print("SKIP: python3-torch is not installed")
    sys.exit(77)

PT_CONVERT = sys.argv[1]
sys.path.insert(0, os.path.dirname(PT_CONVERT))
import pt_convert  # noqa: E402

BLISS = os.environ["BLISS"]
QUICK = os.path.join(os.environ["BLISS_CONFIGS"], "quick.cfg")
SETS = ["--set", "train.max_epochs=2", "--set", "train.scheduler.milestones=[1]",
        "--set", "train.fixed_batch=true", "--threads", "1"]
passed = 0


def check(cond, what):
    global passed
    if not cond:
        print(f"FAILED: {what}")
        sys.exit(1)
    passed += 1


def bliss(*args, ok=True):
    r = subprocess.run([BLISS, *args], capture_output=True, text=True)
    if ok and r.returncode != 0:
        print(r.stdout, r.stderr)
        check(False, f"bliss {' '.join(args)} exited {r.returncode}")
    return r


def convert(*args):
    r = subprocess.run([sys.executable, PT_CONVERT, *args], capture_output=True, text=True)
    check(r.returncode == 0, f"pt_convert {' '.join(args)}: {r.stderr}")


def curve_losses(path):
    with open(path) as f:
        rows = [line.strip().split(",") for line in f][1:]
    return {int(r[0]): r[1] for r in rows}  # step -> train_loss text (exact digits)


os.chdir(tempfile.mkdtemp(prefix="bliss_interop_"))
bliss("train", "-c", QUICK, *SETS, "-o", "run")

# ---- 1. Lightning export ----
tensors, meta = pt_convert.read_safetensors("run/last.safetensors")
check(meta["train.epoch"] == "2" and meta["train.step"] == "6", "bliss train's own counters")
check(meta["epoch"] == "1" and meta["global_step"] == "6", f"Lightning counters {meta.get('epoch')}")
convert("to-pt", "run/last.safetensors", "last.ckpt", "--lightning")
ck = torch.load("last.ckpt")
check(ck["epoch"] == 1 and ck["global_step"] == 6, "epoch / global_step in the .ckpt")
# what torch's MultiStepLR holds after the first epoch's scheduler step
names = [k for k in ck["state_dict"] if not pt_convert.is_buffer(k)]
params = [torch.nn.Parameter(ck["state_dict"][k].clone()) for k in names]
opt = torch.optim.Adam(params, lr=1e-3)
sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[1], gamma=0.1)
sched.step()
want = sched.state_dict()
got = ck["lr_schedulers"][0]
check(set(got) == set(want), f"scheduler keys {sorted(got)} vs {sorted(want)}")
for k in want:
    ok = abs(got[k][0] - want[k][0]) < 1e-15 if k == "_last_lr" else got[k] == want[k]
    check(ok, f"lr_schedulers[0][{k!r}] = {got[k]!r}, torch has {want[k]!r}")
og = ck["optimizer_states"][0]
check(set(og["param_groups"][0]) == set(opt.state_dict()["param_groups"][0]), "Adam param_group keys as torch 1.13")
check(abs(og["param_groups"][0]["lr"] - 1e-4) < 1e-15, "the optimizer's lr is the scheduled one")
check(len(og["state"]) > 0, "Adam state present")
for i, st in og["state"].items():
    check(torch.is_tensor(st["step"]) and st["step"].dtype == torch.float32 and st["step"].dim() == 0
          and float(st["step"]) == 6.0, f"state[{i}]['step'] = {st['step']!r}")
    check(st["exp_avg"].shape == params[i].shape, f"state[{i}] moment shape")
    check(torch.equal(st["exp_avg"], tensors[f"optimizer.state.{names[i]}.exp_avg"]), f"state[{i}] exp_avg")
# parameters that never had a gradient (step 0 in the file) have no torch state
for i, n in enumerate(names):
    check((i in og["state"]) == (int(tensors[f"optimizer.state.{n}.step"]) > 0), f"state of {n}")
opt.load_state_dict(og)
sched2 = torch.optim.lr_scheduler.MultiStepLR(torch.optim.Adam(params, lr=1e-3), milestones=[5])
sched2.load_state_dict(got)
check(sched2.last_epoch == 1 and abs(sched2.get_last_lr()[0] - 1e-4) < 1e-15, "torch loads the scheduler")

# ---- 2. --init from converted weights == resuming the weights ----
convert("to-pt", "run/last.safetensors", "weights.pt")
convert("to-safetensors", "weights.pt", "weights.safetensors")
wt, wmeta = pt_convert.read_safetensors("weights.safetensors")
check(not any(k.startswith("optimizer.") for k in wt) and "train.step" not in wmeta, "weights only")
bliss("train", "-c", QUICK, *SETS, "--set", "train.max_epochs=3", "--resume", "run/last.safetensors", "-o", "run")
resumed = curve_losses("run/curve.csv")[7]
r = bliss("train", "-c", QUICK, *SETS, "--max-steps", "1", "--init", "weights.safetensors", "-o", "init")
check("initialised from weights.safetensors" in r.stdout, "--init says so")
init = curve_losses("init/curve.csv")
check(list(init) == [1], "the --init run starts at step 1")
check(init[1] == resumed, f"first-step loss {init[1]} after --init, {resumed} when resuming")
bliss("train", "-c", QUICK, *SETS, "--max-steps", "1", "-o", "scratch")
check(curve_losses("scratch/curve.csv")[1] != resumed, "a run from scratch has another first loss")
_, im = pt_convert.read_safetensors("init/last.safetensors")
check(im["adam.step"] == "1" and im["train.step"] == "1", "fresh Adam: one step after --init")

# ---- 3. --init with wrong weights ----
for what, edit in [("missing", lambda d: d.pop(names[0])),
                   ("unexpected", lambda d: d.__setitem__("extra.weight", torch.zeros(3))),
                   ("shape", lambda d: d.__setitem__(names[1], torch.zeros(2, 2)))]:
    d = collections.OrderedDict(wt)
    edit(d)
    pt_convert.write_safetensors("bad.safetensors", d, {"format": "bliss-c-checkpoint"})
    r = bliss("train", "-c", QUICK, *SETS, "--max-steps", "1", "--init", "bad.safetensors", "-o", "bad", ok=False)
    name = {"missing": names[0], "unexpected": "extra.weight", "shape": names[1]}[what]
    check(r.returncode == 1 and f"{what}: {name}" in r.stderr, f"--init with a {what} weight: {r.stderr}")
r = bliss("train", "-c", QUICK, "--init", "weights.safetensors", "--resume", "run/last.safetensors", ok=False)
check(r.returncode == 2, "--init with --resume is a usage error")

# ---- 4. --resume compares the configs ----
r = bliss("train", "-c", QUICK, *SETS, "--set", "encoder.arch.catalog_width=8", "--resume",
          "run/last.safetensors", "-o", "run", ok=False)
check(r.returncode == 1 and "encoder.arch.catalog_width = 16" in r.stderr and "shapes the model" in r.stderr,
      f"a changed architecture is refused naming the key: {r.stderr}")
r = bliss("train", "-c", QUICK, *SETS, "--set", "train.max_epochs=3", "--set", "train.print_every=2",
          "--resume", "run/last.safetensors", "-o", "run")
check("warning: train.print_every differs" in r.stderr and "resuming from" in r.stdout,
      f"a harmless change is a warning: {r.stderr}")
print(f"{passed} passed, 0 failed")
