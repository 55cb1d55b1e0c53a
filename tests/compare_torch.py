#!/usr/bin/python3
"""PyTorch's speed on the model libmae benchmarks (make bench), for docs/PERFORMANCE.md.

The ViT-B/16 MAE (224x224, 512x8 decoder, mask 0.75, norm_pix_loss) is written here from the
paper's definitions as models_mae.py computes it (as tests/gen_reference.py does): conv patch embedding,
random masking by argsort of uniform noise, pre-norm blocks with exact GELU, decoder with mask
tokens and unshuffle, per-patch MSE on the removed patches. Random weights: only speed matters.

Each measurement runs in its own process with PyTorch set up as well as it can be here:
OMP_WAIT_POLICY=PASSIVE, OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset, glibc malloc told to keep
freed memory (no mmap/munmap churn per call), torch.set_num_threads(n), inference under
torch.inference_mode(). Prints a markdown table: images/s and latency (medians), training step,
peak RSS of a forward-only process.

    /usr/bin/python3 tests/compare_torch.py [--quick] [--threads 2]
"""
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def build_model(torch):
    nn, F = torch.nn, torch.nn.functional

    class Block(nn.Module):
        def __init__(self, dim, heads, hidden):
            super().__init__()
            self.heads = heads
            self.norm1 = nn.LayerNorm(dim, eps=1e-6)
            self.qkv = nn.Linear(dim, 3 * dim)
            self.proj = nn.Linear(dim, dim)
            self.norm2 = nn.LayerNorm(dim, eps=1e-6)
            self.fc1 = nn.Linear(dim, hidden)
            self.fc2 = nn.Linear(hidden, dim)

        def forward(self, x):
            B, N, C = x.shape
            hd = C // self.heads
            qkv = self.qkv(self.norm1(x)).reshape(B, N, 3, self.heads, hd).permute(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
            attn = ((q @ k.transpose(-2, -1)) * hd ** -0.5).softmax(dim=-1)
            x = x + self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))
            return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))

    class MAE(nn.Module):
        def __init__(self, img=224, p=16, D=768, depth=12, H=12, Dd=512, ddepth=8, dH=16):
            super().__init__()
            self.p, self.L = p, (img // p) ** 2
            self.patch_embed = nn.Conv2d(3, D, p, p)
            self.cls_token = nn.Parameter(torch.zeros(1, 1, D).normal_(std=0.02))
            self.pos_embed = nn.Parameter(torch.randn(1, self.L + 1, D) * 0.02, requires_grad=False)
            self.blocks = nn.ModuleList([Block(D, H, 4 * D) for _ in range(depth)])
            self.norm = nn.LayerNorm(D, eps=1e-6)
            self.decoder_embed = nn.Linear(D, Dd)
            self.mask_token = nn.Parameter(torch.zeros(1, 1, Dd).normal_(std=0.02))
            self.decoder_pos_embed = nn.Parameter(torch.randn(1, self.L + 1, Dd) * 0.02, requires_grad=False)
            self.decoder_blocks = nn.ModuleList([Block(Dd, dH, 4 * Dd) for _ in range(ddepth)])
            self.decoder_norm = nn.LayerNorm(Dd, eps=1e-6)
            self.decoder_pred = nn.Linear(Dd, p * p * 3)

        def patchify(self, imgs):
            N, C, Hh, W = imgs.shape
            h, w, p = Hh // self.p, W // self.p, self.p
            x = imgs.reshape(N, C, h, p, w, p)
            return torch.einsum('nchpwq->nhwpqc', x).reshape(N, h * w, p * p * C)

        def forward(self, imgs, mask_ratio=0.75):
            x = self.patch_embed(imgs).flatten(2).transpose(1, 2) + self.pos_embed[:, 1:, :]
            N, L, D = x.shape
            keep = int(L * (1 - mask_ratio))
            noise = torch.rand(N, L)
            ids_shuffle = torch.argsort(noise, dim=1)
            ids_restore = torch.argsort(ids_shuffle, dim=1)
            x = torch.gather(x, 1, ids_shuffle[:, :keep].unsqueeze(-1).repeat(1, 1, D))
            mask = torch.ones(N, L)
            mask[:, :keep] = 0
            mask = torch.gather(mask, 1, ids_restore)
            cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(N, -1, -1)
            x = torch.cat((cls, x), dim=1)
            for b in self.blocks:
                x = b(x)
            x = self.decoder_embed(self.norm(x))
            mt = self.mask_token.repeat(N, L + 1 - x.shape[1], 1)
            x_ = torch.cat([x[:, 1:, :], mt], dim=1)
            x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).repeat(1, 1, x.shape[2]))
            x = torch.cat([x[:, :1, :], x_], dim=1) + self.decoder_pos_embed
            for b in self.decoder_blocks:
                x = b(x)
            pred = self.decoder_pred(self.decoder_norm(x))[:, 1:, :]
            target = self.patchify(imgs)
            mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1e-6) ** 0.5
            loss = ((pred - target) ** 2).mean(dim=-1)
            return (loss * mask).sum() / mask.sum(), pred, mask

    return MAE()


def child(kind, batch, threads, runs):
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(torch)
    imgs = torch.randn(batch, 3, 224, 224)
    times = []
    if kind == 'forward':
        model.eval()
        with torch.inference_mode():
            model(imgs)
            for _ in range(runs):
                t = time.perf_counter()
                model(imgs)
                times.append(time.perf_counter() - t)
    else:
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1.5e-4, betas=(0.9, 0.95), weight_decay=0.05)
        for i in range(runs + 1):
            t = time.perf_counter()
            loss, _, _ = model(imgs)
            opt.zero_grad(set_to_none=False)
            loss.backward()
            opt.step()
            if i > 0:
                times.append(time.perf_counter() - t)
    nparams = sum(p.numel() for p in model.parameters())
    print(json.dumps({'median': statistics.median(times), 'rss_kib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      'params': nparams, 'torch': torch.__version__, 'blas': torch.__config__.show().count('OpenBLAS') > 0}))


def measure(kind, batch, threads, runs):
    env = dict(os.environ)
    env.pop('OPENBLAS_CORETYPE', None)
    env.pop('OPENBLAS_L2_SIZE', None)
    env.update({'OMP_NUM_THREADS': str(threads), 'OPENBLAS_NUM_THREADS': str(threads),
                'OMP_WAIT_POLICY': 'PASSIVE', 'MALLOC_MMAP_THRESHOLD_': '4294967296',
                'MALLOC_TRIM_THRESHOLD_': '68719476736', 'MALLOC_TOP_PAD_': '268435456'})
    out = subprocess.run([sys.executable, __file__, '--child', kind, str(batch), str(threads), str(runs)],
                         env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    args = sys.argv[1:]
    if args and args[0] == '--child':
        child(args[1], int(args[2]), int(args[3]), int(args[4]))
        return
    quick = '--quick' in args
    maxthreads = int(args[args.index('--threads') + 1]) if '--threads' in args else 2
    runs = 3 if quick else 7
    print('# PyTorch on the ViT-B/16 MAE (tests/compare_torch.py), %s' % time.strftime('%Y-%m-%d %H:%M'))
    print('\n| run | batch | threads | images/s | latency ms | peak RSS MiB |\n|---|---|---|---|---|---|')
    info = None
    for threads in range(1, maxthreads + 1):
        for batch in (1, 8):
            r = measure('forward', batch, threads, runs)
            info = r
            print('| forward, mask 0.75 | %d | %d | %.2f | %.1f | %.0f |' % (
                batch, threads, batch / r['median'], r['median'] * 1e3, r['rss_kib'] / 1024), flush=True)
    if not quick:
        for threads in range(1, maxthreads + 1):
            r = measure('train', 8, threads, 3)
            print('| training step (AdamW) | 8 | %d | %.2f | %.0f | %.0f |' % (
                threads, 8 / r['median'], r['median'] * 1e3, r['rss_kib'] / 1024), flush=True)
    print('\ntorch %s, %d parameters (%.0f MiB of float32)' % (info['torch'], info['params'], info['params'] * 4 / 2 ** 20))


if __name__ == '__main__':
    main()
