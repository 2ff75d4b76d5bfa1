#!/usr/bin/python3
"""Convert BLISS/PyTorch checkpoints to and from bliss-c's safetensors checkpoints.

Uses only Debian's python3-torch (and numpy, which it depends on); the safetensors format is
written and read here directly: 8-byte little-endian header length, a JSON header mapping each
tensor name to {dtype, shape, data_offsets} (plus an optional "__metadata__" map of strings),
then the raw little-endian tensor bytes.

Layout of a bliss-c checkpoint (docs/encoder.md):
  <state_dict name>                       model parameters and buffers, PyTorch names;
                                          F32, num_batches_tracked I64 (0-dim)
  optimizer.state.<param name>.exp_avg    Adam first moment (same shape as the parameter)
  optimizer.state.<param name>.exp_avg_sq Adam second moment
  optimizer.state.<param name>.step       I64 0-dim: the parameter's own Adam step count
  __metadata__ strings: format=bliss-c-checkpoint, version, adam.step, adam.lr, adam.beta1,
                        adam.beta2, adam.eps, adam.weight_decay, adam.initial_lr, epoch,
                        global_step, scheduler.milestones (comma list), scheduler.gamma,
                        scheduler.last_epoch, n_out, ... (bliss train writes epoch,
                        global_step and the scheduler keys with Lightning's meaning: epoch is
                        the index of the epoch the checkpoint was taken in, and the
                        epoch-interval scheduler has stepped `epoch` times)

PyTorch's optimizer state is keyed by parameter index; index i is the i-th trainable entry
of the state_dict (state_dict order lists each module's parameters before its buffers, the
same relative order as Module.parameters()). Buffers are the entries ending in running_mean,
running_var and num_batches_tracked. A parameter that never received a gradient has no
PyTorch state; its moments are written as zeros (what bliss-c's Adam holds for it).

Usage:
  pt_convert.py to-safetensors IN.pt OUT.safetensors      (.pt state_dict or Lightning .ckpt)
  pt_convert.py to-pt IN.safetensors OUT.pt [--lightning]  (state_dict, or a Lightning-style
                                                          checkpoint with optimizer state)
  pt_convert.py list FILE                                  (names, shapes, dtypes)
"""
import collections
import json
import os
import struct
import sys

import numpy as np
import torch

BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")

DTYPES = {
    torch.float32: ("F32", np.float32),
    torch.float64: ("F64", np.float64),
    torch.int64: ("I64", np.int64),
    torch.int32: ("I32", np.int32),
    torch.uint8: ("U8", np.uint8),
}
NP_OF = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32, "U8": np.uint8}


def is_buffer(name):
    return name.rsplit(".", 1)[-1] in BUFFER_SUFFIXES


def write_safetensors(path, tensors, metadata=None):
    """tensors: ordered mapping name -> torch.Tensor. Written to a temporary file, renamed."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs, offset = [], 0
    for name, t in tensors.items():
        t = t.detach().cpu().contiguous()
        if t.dtype not in DTYPES:
            raise SystemExit(f"{name}: unsupported dtype {t.dtype}")
        code, npt = DTYPES[t.dtype]
        data = t.numpy().astype(np.dtype(npt).newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": code, "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    hjson = json.dumps(header, separators=(",", ":")).encode()
    hjson += b" " * ((8 - len(hjson) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def read_safetensors(path):
    """Returns (OrderedDict name -> tensor in file order, metadata dict)."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise SystemExit(f"{path}: truncated (no header length)")
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        raise SystemExit(f"{path}: header of {n} bytes runs past the end of the file")
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {}) or {}
    body = raw[8 + n:]
    items = sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0])
    out = collections.OrderedDict()
    for name, h in items:
        a, b = h["data_offsets"]
        if b > len(body):
            raise SystemExit(f"{path}: tensor {name} runs past the end of the file")
        arr = np.frombuffer(body[a:b], dtype=np.dtype(NP_OF[h["dtype"]]).newbyteorder("<"))
        out[name] = torch.from_numpy(arr.astype(NP_OF[h["dtype"]]).reshape(h["shape"]).copy())
    return out, meta


def param_names(state_dict):
    return [k for k in state_dict if not is_buffer(k)]


def pt_to_safetensors(src, dst):
    obj = torch.load(src, map_location="cpu")
    meta = {"format": "bliss-c-checkpoint", "version": "1", "source": os.path.basename(src)}
    if isinstance(obj, dict) and "state_dict" in obj:  # Lightning checkpoint
        sd = obj["state_dict"]
        for key in ("epoch", "global_step"):
            if key in obj:
                meta[key] = int(obj[key])
        opt_states = obj.get("optimizer_states") or []
        scheds = obj.get("lr_schedulers") or []
    else:
        sd, opt_states, scheds = obj, [], []
    tensors = collections.OrderedDict()
    for k, v in sd.items():
        if not torch.is_tensor(v):
            continue
        tensors[k] = v.to(torch.int64) if k.endswith("num_batches_tracked") else v.float()
    names = param_names(sd)
    if opt_states:
        opt = opt_states[0]
        group = opt["param_groups"][0]
        meta["optimizer"] = "adam"
        meta["adam.lr"] = repr(float(group["lr"]))
        meta["adam.beta1"], meta["adam.beta2"] = (repr(float(b)) for b in group["betas"])
        meta["adam.eps"] = repr(float(group["eps"]))
        meta["adam.weight_decay"] = repr(float(group["weight_decay"]))
        if "initial_lr" in group:
            meta["adam.initial_lr"] = repr(float(group["initial_lr"]))
        steps = set()
        for pos, idx in enumerate(group["params"]):
            name = names[pos]
            st = opt["state"].get(idx)
            if st is None:  # never had a gradient (e.g. the checkerboard net when it is off):
                zero = torch.zeros_like(sd[name], dtype=torch.float32)  # Adam moments are 0
                tensors[f"optimizer.state.{name}.exp_avg"] = zero
                tensors[f"optimizer.state.{name}.exp_avg_sq"] = zero.clone()
                continue
            tensors[f"optimizer.state.{name}.exp_avg"] = st["exp_avg"].float()
            tensors[f"optimizer.state.{name}.exp_avg_sq"] = st["exp_avg_sq"].float()
            n = int(float(st["step"]))
            tensors[f"optimizer.state.{name}.step"] = torch.tensor(n, dtype=torch.int64)
            steps.add(n)
        # parameters without torch state: step 0 (bliss-c reads per-parameter counts)
        for pos, idx in enumerate(group["params"]):
            key = f"optimizer.state.{names[pos]}.step"
            if key not in tensors:
                tensors[key] = torch.tensor(0, dtype=torch.int64)
        meta["adam.step"] = max(steps) if steps else 0
    if scheds:
        s = scheds[0]
        if "milestones" in s:
            meta["scheduler.milestones"] = ",".join(str(m) for m in sorted(s["milestones"]))
            meta["scheduler.gamma"] = repr(float(s["gamma"]))
            meta["scheduler.last_epoch"] = int(s["last_epoch"])
    detect = [k for k in sd if k.endswith("marginal_net.net_ml.6.conv.bias")]
    if detect:
        meta["n_out"] = int(sd[detect[0]].shape[0])
    write_safetensors(dst, tensors, meta)
    print(f"{dst}: {len(tensors)} tensors ({len(names)} parameters)")


def safetensors_to_pt(src, dst, lightning):
    tensors, meta = read_safetensors(src)
    sd = collections.OrderedDict((k, v) for k, v in tensors.items() if not k.startswith("optimizer."))
    if not lightning:
        torch.save(sd, dst + ".tmp")
        os.replace(dst + ".tmp", dst)
        print(f"{dst}: state_dict with {len(sd)} entries")
        return
    names = param_names(sd)
    lr = float(meta.get("adam.lr", "1e-3"))
    # Adam's state as torch 1.13 saves it: only parameters that were updated have an entry,
    # with their own step count as a float32 0-dim tensor
    state = {}
    step = int(meta.get("adam.step", "0"))
    for i, name in enumerate(names):
        m = tensors.get(f"optimizer.state.{name}.exp_avg")
        v = tensors.get(f"optimizer.state.{name}.exp_avg_sq")
        k = tensors.get(f"optimizer.state.{name}.step")
        n = int(k.item()) if k is not None else step
        if m is not None and v is not None and n > 0:
            state[i] = {"step": torch.tensor(float(n)), "exp_avg": m, "exp_avg_sq": v}
    group = {"lr": lr, "betas": (float(meta.get("adam.beta1", "0.9")),
                                 float(meta.get("adam.beta2", "0.999"))),
             "eps": float(meta.get("adam.eps", "1e-8")),
             "weight_decay": float(meta.get("adam.weight_decay", "0")),
             "amsgrad": False, "maximize": False, "foreach": None, "capturable": False,
             "differentiable": False, "fused": False,
             "initial_lr": float(meta.get("adam.initial_lr", lr)),
             "params": list(range(len(names)))}
    # Lightning's counters: bliss train writes `epoch` (the index of the epoch the checkpoint
    # was taken in) and `global_step`; older files only train.epoch / train.step
    epoch = int(meta.get("epoch", meta.get("train.epoch", "0")))
    global_step = int(meta.get("global_step", meta.get("train.step", "0")))
    ckpt = {"epoch": epoch, "global_step": global_step,
            "pytorch-lightning_version": "2.0.0", "state_dict": sd,
            "optimizer_states": [{"state": state, "param_groups": [group]}]}
    if "scheduler.milestones" in meta:
        ms = [int(x) for x in meta["scheduler.milestones"].split(",") if x]
        gamma = float(meta["scheduler.gamma"])
        last = int(meta.get("scheduler.last_epoch", epoch))
        # MultiStepLR.state_dict() after `last` scheduler steps (one per finished epoch)
        ckpt["lr_schedulers"] = [{"milestones": collections.Counter(ms), "gamma": gamma,
                                  "base_lrs": [group["initial_lr"]], "last_epoch": last,
                                  "verbose": False, "_step_count": last + 1,
                                  "_get_lr_called_within_step": False, "_last_lr": [lr]}]
    torch.save(ckpt, dst + ".tmp")
    os.replace(dst + ".tmp", dst)
    print(f"{dst}: Lightning-style checkpoint, {len(sd)} state_dict entries, {len(state)} Adam states")


def list_file(path):
    if path.endswith(".safetensors"):
        tensors, meta = read_safetensors(path)
        for k, v in meta.items():
            print(f"# {k} = {v}")
    else:
        obj = torch.load(path, map_location="cpu")
        tensors = obj["state_dict"] if isinstance(obj, dict) and "state_dict" in obj else obj
    for k, v in tensors.items():
        print(k, tuple(v.shape), str(v.dtype).replace("torch.", ""))


def main(argv):
    if len(argv) >= 4 and argv[1] == "to-safetensors":
        pt_to_safetensors(argv[2], argv[3])
    elif len(argv) >= 4 and argv[1] == "to-pt":
        safetensors_to_pt(argv[2], argv[3], "--lightning" in argv[4:])
    elif len(argv) == 3 and argv[1] == "list":
        list_file(argv[2])
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
