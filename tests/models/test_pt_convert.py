#!/usr/bin/python3
"""tools/pt_convert.py against real PyTorch objects (run by meson: suite 'models').

A tiny torch mirror of the encoder (tests/data/gen_encoder_refs.py) trains 2 Adam steps; its
Lightning-style checkpoint {state_dict, optimizer_states, lr_schedulers, epoch, global_step}
is converted to safetensors and back. Checks: every state_dict entry survives bit-exactly
(num_batches_tracked as int64), Adam moments are mapped to the right parameter names, and a
network + optimizer restored from the converted file take the same next step as the
original. Prints 'N passed, 0 failed'."""
import collections
import os
import sys
import tempfile

try:
    import torch
except ImportError:
    # meson counts exit status 77 as "skipped" and shows it in the summary: the test is
    # reported, not silently dropped, on machines without Debian's python3-torch
    print("SKIP: python3-torch is not installed (scripts/setup --torch installs it)")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
sys.path.insert(0, os.path.join(HERE, "..", "data"))
import pt_convert  # noqa: E402
import gen_encoder_refs as ref  # noqa: E402

passed = 0


def check(cond, what):
    global passed
    if not cond:
        print(f"FAILED: {what}")
        print(f"{passed} passed, 1 failed")
        sys.exit(1)
    passed += 1


def tiny():
    torch.manual_seed(0)
    return ref.EncoderNets(nb=5, cpb=6, fw=4, nf=8, cw=8, xw=4, P=38, tile_slen=4)


def step(net, opt, x):
    opt.zero_grad()
    f = net.features_net(x)
    loss = net.marginal_net(f).square().mean()
    loss.backward()
    opt.step()
    return float(loss)


def main():
    torch.set_num_threads(1)
    torch.manual_seed(1)
    x = torch.randn(2, 5, 6, 16, 16)
    net = tiny()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[32], gamma=0.1)
    step(net, opt, x)
    step(net, opt, x)
    sched.step()
    ckpt = {"epoch": 1, "global_step": 2, "state_dict": net.state_dict(),
            "optimizer_states": [opt.state_dict()], "lr_schedulers": [sched.state_dict()]}
    with tempfile.TemporaryDirectory() as d:
        src, st, back = (os.path.join(d, n) for n in ("a.ckpt", "a.safetensors", "b.ckpt"))
        torch.save(ckpt, src)
        pt_convert.pt_to_safetensors(src, st)
        tensors, meta = pt_convert.read_safetensors(st)
        sd = net.state_dict()
        check(list(k for k in tensors if not k.startswith("optimizer.")) == list(sd),
              "state_dict names and order")
        for k, v in sd.items():
            check(tensors[k].dtype == v.dtype and torch.equal(tensors[k], v), f"{k} bit-exact")
        names = [k for k, _ in net.named_parameters()]
        check(names == pt_convert.param_names(sd), "parameter order = named_parameters()")
        state = opt.state_dict()["state"]
        n_state = 0
        for i, name in enumerate(names):
            m, v = tensors[f"optimizer.state.{name}.exp_avg"], tensors[f"optimizer.state.{name}.exp_avg_sq"]
            if i in state:  # the checkerboard net gets no gradient here: no torch state, zeros
                n_state += 1
                check(torch.equal(m, state[i]["exp_avg"]) and torch.equal(v, state[i]["exp_avg_sq"]),
                      f"Adam moments of {name}")
            else:
                check(name.startswith("checkerboard_net.") and not m.any() and not v.any(),
                      f"zero moments of {name}")
        check(n_state == sum(1 for n in names if not n.startswith("checkerboard_net.")),
              "one torch state per trained parameter")
        check(meta["adam.step"] == "2" and meta["epoch"] == "1" and meta["scheduler.milestones"] == "32",
              f"metadata {meta}")

        pt_convert.safetensors_to_pt(st, back, lightning=True)
        restored = torch.load(back)
        net2 = tiny()
        net2.load_state_dict(restored["state_dict"])
        opt2 = torch.optim.Adam(net2.parameters(), lr=1e-3)
        opt2.load_state_dict(restored["optimizer_states"][0])
        sched2 = torch.optim.lr_scheduler.MultiStepLR(opt2, milestones=[32], gamma=0.1)
        sched2.load_state_dict(restored["lr_schedulers"][0])
        check(sched2.last_epoch == sched.last_epoch, "scheduler epoch")
        la, lb = step(net, opt, x), step(net2, opt2, x)
        check(la == lb, f"next loss {la} vs {lb}")
        for (k, a), b in zip(net.state_dict().items(), net2.state_dict().values()):
            check(torch.equal(a, b), f"{k} after the next step")
    print(f"{passed} passed, 0 failed")


if __name__ == "__main__":
    main()
