#!/usr/bin/python3
"""Generate the PyTorch reference values for the encoder tests (run once, output committed).

    /usr/bin/python3 tests/data/gen_encoder_refs.py [--check-listing tests/data/state_dict_38.txt]

Builds an independent torch mirror of the BLISS encoder (docs/behaviour.md §4.2-4.6) with tiny channel
widths, initialises it from torch's generator (BatchNorm affine and running statistics
perturbed so that they matter), draws a normalised input batch and a true tile catalog, and
computes in float64:
  * x_cat of the marginal net and of the white/black conditionals (checkerboard, features
    detached for the conditionals),
  * per-tile NLLs (docs/behaviour.md §3.5) and the loss of docs/behaviour.md §4.9 (crop 1 tile, mean),
  * the gradient of the loss w.r.t. every parameter,
  * the BatchNorm running statistics after the training-mode pass (the checkerboard net's
    layers are updated twice), and the marginal x_cat in eval mode afterwards.
Weights and inputs are rounded to float32 first so that the float32 C build sees exactly the
same numbers. Everything is written to tests/data/encoder_ref_tiny.safetensors (F32 tensors,
read by tests/models/test_reference.c).

The file layout:
  param.<state_dict name>      initial weights/buffers (num_batches_tracked as F32 0-dim)
  grad.<param name>            d loss / d param
  after.<buffer name>          buffers after the training-mode forward
  input.x                      (B, 5, 6, H, W) normalised images
  truth.n_sources (B, ht, wt), truth.locs (B, ht, wt, 1, 2), truth.source_type (.., 1, 1),
  truth.star_fluxes / truth.galaxy_fluxes (.., 1, 5), truth.galaxy_params (.., 1, 6)
  out.x_marginal / out.x_white / out.x_black (B, ht, wt, P), out.nll_marginal / out.nll_white /
  out.nll_black / out.loss_tiles (B, ht, wt), out.loss (), out.x_marginal_eval (B, ht, wt, P)
  metadata: widths, tile_slen, tiles_to_crop, P.
"""
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from pt_convert import write_safetensors  # noqa: E402

FLT_MIN = 1.1754943508222875e-38
FLT_EPS = 1.1920928955078125e-07


# ---------------------------------------------------------------- the module structure (§4.2-4.6)
class ConvBlock(nn.Module):
    def __init__(self, cin, cout, k=3, s=1, p=1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, s, p, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3, momentum=0.03)

    def forward(self, x):
        return F.silu(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    def __init__(self, c1, c2, shortcut=True, e=0.5):
        super().__init__()
        ch = int(c2 * e)
        self.cv1 = ConvBlock(c1, ch, 1, 1, 0)
        self.cv2 = ConvBlock(ch, c2, 3, 1, 1)
        self.add = shortcut and c1 == c2

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3(nn.Module):
    def __init__(self, c1, c2, n=1, shortcut=True, e=0.5):
        super().__init__()
        ch = int(c2 * e)
        self.cv1 = ConvBlock(c1, ch, 1, 1, 0)
        self.cv2 = ConvBlock(c1, ch, 1, 1, 0)
        self.cv3 = ConvBlock(2 * ch, c2, 1, 1, 0)
        self.m = nn.Sequential(*[Bottleneck(ch, ch, shortcut, e=1.0) for _ in range(n)])

    def forward(self, x):
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), dim=1))


class Detect(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        return self.conv(x).permute(0, 2, 3, 1)


class FeaturesNet(nn.Module):
    def __init__(self, nb, cpb, w, nf, double_downsample):
        super().__init__()
        self.preprocess3d = nn.Sequential(
            nn.Conv3d(nb, w, (cpb, 5, 5), padding=(0, 2, 2)), nn.BatchNorm3d(w), nn.SiLU())
        self.backbone = nn.Sequential(
            ConvBlock(w, w, 5, p=2),
            nn.Sequential(*[ConvBlock(w, w, 5, p=2) for _ in range(4)]),
            ConvBlock(w, 2 * w, s=2),
            nn.Sequential(*[ConvBlock(2 * w, 2 * w) for _ in range(5)]),
            ConvBlock(2 * w, nf, s=2 if double_downsample else 1))

    def forward(self, x):
        return self.backbone(self.preprocess3d(x).squeeze(2))


class CatalogNet(nn.Module):
    def __init__(self, cin, w, cout):
        super().__init__()
        self.net_ml = nn.ModuleList([
            C3(cin, w, n=6), ConvBlock(w, 2 * w, 3, 2, 1), C3(2 * w, 2 * w, n=3, shortcut=False),
            ConvBlock(2 * w, w, 1, 1, 0), nn.Upsample(scale_factor=2, mode="nearest"),
            C3(cin + 2 * w, w, n=3, shortcut=False), Detect(w, cout)])

    def forward(self, x):
        saved = [x]
        for i, m in enumerate(self.net_ml):
            x = m(x)
            if i in (0, 4):
                saved.append(x)
            if i == 4:
                x = torch.cat(saved, dim=1)
        return x


class ContextNet(nn.Module):
    def __init__(self, nf, cw, w, cout):
        super().__init__()
        self.encode_context = nn.Sequential(ConvBlock(2, cw), ConvBlock(cw, cw), ConvBlock(cw, cw))
        self.merge = ConvBlock(nf + cw, nf)
        self.catalog_net = CatalogNet(nf, w, cout)

    def forward(self, x_features, context):
        c = self.encode_context(context)
        return self.catalog_net(self.merge(torch.cat((x_features, c), dim=1)))


class EncoderNets(nn.Module):
    def __init__(self, nb=5, cpb=6, fw=64, nf=256, cw=256, xw=64, P=38, tile_slen=4):
        super().__init__()
        self.features_net = FeaturesNet(nb, cpb, fw, nf, tile_slen == 4)
        self.marginal_net = CatalogNet(nf, cw, P)
        self.checkerboard_net = ContextNet(nf, xw, cw, P)


# ---------------------------------------------------------------- distributions (docs/behaviour.md §3.2-3.3)
def normal_lp(v, mu, sigma):
    return -((v - mu) ** 2) / (2 * sigma ** 2) - torch.log(sigma) - 0.5 * math.log(2 * math.pi)


def Phi(v, mu, sigma):
    return 0.5 * (1 + torch.erf((v - mu) / (sigma * math.sqrt(2))))


def bern_lp(x, v):
    p = torch.sigmoid(x).clamp(1e-4, 1 - 1e-4)
    return torch.where(v > 0.5, torch.log(p), torch.log(1 - p))


def tdbn_lp(x, v):  # x (..., 4), v (..., 2)
    mu = torch.sigmoid(x[..., 0:2])
    sigma = torch.exp(0.5 * x[..., 2:4].clamp(-6, 3))
    logz = torch.log(Phi(1.0, mu, sigma) - Phi(0.0, mu, sigma))
    return (normal_lp(v, mu, sigma) - logz).sum(-1)


def lognormal_lp(x, y):
    mu, sigma = x[..., 0], torch.exp(0.5 * x[..., 1].clamp(-6, 10))
    ly = torch.log(y)
    return normal_lp(ly, mu, sigma) - ly


def logitnormal_lp(x, y, high):
    mu, sigma = x[..., 0], torch.exp(0.5 * x[..., 1].clamp(-10, 10))
    u = (y / high).clamp(FLT_MIN, 1 - FLT_EPS)
    z = torch.log(u) - torch.log1p(-u)
    return normal_lp(z, mu, sigma) - math.log(high) - (torch.log(u) + torch.log1p(-u))


GALSIM = [("logit", 1.0), ("logit", math.pi), ("logit", 1.0), ("log", None), ("logit", 1.0),
          ("log", None)]


def nll(x, t):
    """docs/behaviour.md §3.5; x (B, ht, wt, 38), t the truth dict after filtering -> (B, ht, wt)"""
    n = t["n_sources"]
    st = t["source_type"][..., 0, 0]
    gal = ((st == 1) & (n > 0)).double()
    star = ((st == 0) & (n > 0)).double()
    L = -bern_lp(x[..., 0], n)
    L = L + n * -tdbn_lp(x[..., 1:5], t["locs"][..., 0, :])
    L = L + n * -bern_lp(x[..., 5], gal)
    for k, (kind, high) in enumerate(GALSIM):
        xi, y = x[..., 6 + 2 * k: 8 + 2 * k], t["galaxy_params"][..., 0, k] + 1e-9
        lp = logitnormal_lp(xi, y, high) if kind == "logit" else lognormal_lp(xi, y)
        L = L + gal * -lp
    for band in range(5):
        xs, xg = x[..., 18 + 2 * band: 20 + 2 * band], x[..., 28 + 2 * band: 30 + 2 * band]
        L = L + star * -lognormal_lp(xs, t["star_fluxes"][..., 0, band] + 1e-9)
        L = L + gal * -lognormal_lp(xg, t["galaxy_fluxes"][..., 0, band] + 1e-9)
    return L


def filter_by_flux(t, min_flux=0.0):
    """docs/behaviour.md §2.6 for S = 1: keep sources with on_flux(r) > min_flux, zero every field elsewhere"""
    n = t["n_sources"]
    st = t["source_type"][..., 0, 0]
    on_flux = torch.where(st == 1, t["galaxy_fluxes"][..., 0, 2], t["star_fluxes"][..., 0, 2])
    keep = (n > 0) & (on_flux * (n > 0) > min_flux)
    out = {"n_sources": keep.double()}
    for k in ("locs", "source_type", "star_fluxes", "galaxy_fluxes", "galaxy_params"):
        out[k] = t[k] * keep[..., None, None]
    return out


def main():
    torch.set_num_threads(1)
    torch.manual_seed(20240611)
    dt = torch.float64
    B, H, W, ts, ttc, P = 2, 32, 32, 4, 1, 38
    widths = dict(nb=5, cpb=6, fw=4, nf=8, cw=8, xw=4, P=P, tile_slen=ts)
    net = EncoderNets(**widths).to(dt)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("bn.weight") or name.endswith("preprocess3d.1.weight"):
                t.copy_(1 + 0.2 * torch.randn_like(t))
            elif name.endswith("bn.bias") or name.endswith("preprocess3d.1.bias"):
                t.copy_(0.2 * torch.randn_like(t))
            elif name.endswith("running_mean"):
                t.copy_(0.1 * torch.randn_like(t))
            elif name.endswith("running_var"):
                t.copy_(1 + 0.5 * torch.rand_like(t))
            if t.is_floating_point():
                t.copy_(t.float().double())
    initial = {k: v.clone() for k, v in net.state_dict().items()}

    ht, wt = H // ts, W // ts
    x = torch.randn(B, 5, 6, H, W, dtype=torch.float32).double()
    g = torch.Generator().manual_seed(7)
    n_sources = (torch.rand(B, ht, wt, generator=g) < 0.5).double()
    truth = {
        "n_sources": n_sources,
        "locs": torch.rand(B, ht, wt, 1, 2, generator=g),
        "source_type": (torch.rand(B, ht, wt, 1, 1, generator=g) < 0.6).double(),
        "star_fluxes": torch.exp(3 * torch.rand(B, ht, wt, 1, 5, generator=g)),
        "galaxy_fluxes": torch.exp(3 * torch.rand(B, ht, wt, 1, 5, generator=g)),
        "galaxy_params": torch.rand(B, ht, wt, 1, 6, generator=g) * torch.tensor(
            [1, math.pi, 1, 3, 1, 3], dtype=dt) * 0.98 + 0.01,
    }
    truth = {k: v.float().double() for k, v in truth.items()}
    target = filter_by_flux(truth)

    net.train()
    f = net.features_net(x)
    x_marg = net.marginal_net(f)
    fd = f.detach()
    cb = ((torch.arange(ht)[:, None] + torch.arange(wt)[None, :]) % 2).to(dt).expand(B, ht, wt)

    def conditional(mask):
        ctx = torch.stack(((target["n_sources"] * mask > 0).to(dt), mask), dim=1)
        return net.checkerboard_net(fd, ctx)

    x_white, x_black = conditional(cb), conditional(1 - cb)
    nll_m, nll_w, nll_b = nll(x_marg, target), nll(x_white, target), nll(x_black, target)
    loss_tiles = (nll_m + (1 - cb) * nll_w + cb * nll_b) / 2
    loss = loss_tiles[:, ttc:ht - ttc, ttc:wt - ttc].mean()
    loss.backward()

    net.eval()
    with torch.no_grad():
        x_marg_eval = net.marginal_net(net.features_net(x))

    out = {}
    for k, v in initial.items():
        out["param." + k] = v.float()
    for k, p in net.named_parameters():
        out["grad." + k] = p.grad.float()
    for k, v in net.state_dict().items():
        if k.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked"):
            out["after." + k] = v.float()
    out["input.x"] = x.float()
    for k, v in truth.items():
        out["truth." + k] = v.float()
    for k, v in (("x_marginal", x_marg), ("x_white", x_white), ("x_black", x_black),
                 ("nll_marginal", nll_m), ("nll_white", nll_w), ("nll_black", nll_b),
                 ("loss_tiles", loss_tiles), ("loss", loss), ("x_marginal_eval", x_marg_eval)):
        out["out." + k] = v.detach().float()
    meta = {"generator": "tests/data/gen_encoder_refs.py", "torch": torch.__version__,
            "tiles_to_crop": ttc, "use_checkerboard": 1, "loss": repr(float(loss))}
    meta.update({k: v for k, v in widths.items()})
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "encoder_ref_tiny.safetensors")
    write_safetensors(path, out, meta)
    n_par = sum(p.numel() for p in net.parameters())
    print(f"{path}: {len(out)} tensors, {n_par} parameters, loss {float(loss):.10g}")

    if "--check-listing" in sys.argv:
        listing = sys.argv[sys.argv.index("--check-listing") + 1]
        full = EncoderNets()
        lines = [f"{k} {tuple(v.shape)} {str(v.dtype).replace('torch.', '')}".replace(",)", ",)")
                 for k, v in full.state_dict().items()]
        ref = [l.strip() for l in open(listing) if l.strip() and not l.startswith("#")]
        ok = lines == ref
        print(f"mirror state_dict vs {listing}: {'identical' if ok else 'DIFFERENT'} "
              f"({len(lines)} entries, {sum(p.numel() for p in full.parameters())} parameters)")
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
