"""LogicAL measurements (issue 4): mask fidelity per strategy on the demo, and CPU/GPU throughput.

    python benchmarks/bench_logical.py [--renderer both] [--size 128] [--epochs 5] [--steps 450] [--samples 16]
                                       [--device cpu] [--threads 2] [--throughput-only] [--no-repaint-cap]

``--renderer`` takes one renderer or a comma-separated list (full, inpaint, real; both = full,inpaint);
inpaint and real share one demo generator, so their figures compare the renderers alone.

1. Mask fidelity, per renderer side by side (``--renderer both``). The demo's first 24 training scenes
   with their exact object regions and stand-in edge maps (tests/logical_demo.py); a tiny
   edge-to-image generator trained on them for ``--epochs`` (full renderer) and the demo preset's
   inpainting generator trained ``--steps`` steps (inpaint renderer);
   every LogicAL strategy rendered ``--samples`` times through the pipeline's render path. Reported:
   mean IoU of the SSIM mask with the edited region (the chosen object for semantic strategies, the
   three shapes for arbitrary ones) over the samples kept, redraws and fallbacks (samples whose every
   attempt was rejected, e.g. by the inpaint renderer's visibility test, stored as normals; a
   strategy with nothing kept shows nan), and why attempts were rejected (the strategies' reasons,
   counted as the build's manifest counts them). The edited region is an upper bound of
   what can change: parts of it without edges (blank background inside an arbitrary shape) render the
   same before and after, so IoU < 1 even for a perfect generator. The oracle column estimates what a
   perfect renderer could reach: the same edit rendered with real pixels, then the same SSIM mask.
   Replace: the other image's pixels (under the edit's augmentation) pasted into the whole region;
   merge: only where the other image has an object (the demo's region map says where); semantic
   remove: the scene rendered without the item (the demo knows its scenes). Arbitrary remove has no
   oracle: what a shape looks like without its edges (the tray's rim, the tag's border) is not
   defined by the scene (pasting the item-free scene gave 0.16, below what the renderer reaches).
   A sweep of the SSIM threshold on the same generator shows how the choice of 0.5
   (generator/strategies/ssim_mask.py) compares. Sharpness (``sharp``): the high-frequency energy
   inside the edit region as a share of the photo's in the same pixels (logical_mask_iou.py's
   high_frequency_ratio); ``id sharp``: the same inside the inpaint renderer's hole (the region
   dilated by HOLE_DILATION) of an identity render, where the photo is the right answer. The real
   renderer adds a row for whole-part swaps (semantic-replace with ``part_swap`` 1). Repaint: the
   network's repainted share of the image and of the object per kept sample, binned with their
   IoU (``--no-repaint-cap`` turns the caps off, to see what they would refuse).
2. Throughput at 256x256: one training step of the tiny, small and full (pix2pixHD) configurations,
   generator inference images/s (each configuration, float32 on CPU, bf16 on CUDA), and LogicAL
   samples/s through draw + render with the trained tiny generator.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from logical_mask_iou import high_frequency_ratio  # noqa: E402
from logical_demo import demo_backgrounds, demo_context, demo_images, demo_maps, iou, train_demo_generator  # noqa: E402

from synthgen.generator.models.e2i import E2IModel, GeneratorConfig, GlobalGenerator, generate_tensor  # noqa: E402
from synthgen.generator.models.inpaint import HOLE_DILATION, InpaintModel, dilate, inpaint_tensor, load_inpainter  # noqa: E402
from synthgen.generator.models.real_pixels import RealPixelModel, render_seam_band  # noqa: E402
from synthgen.generator.render import render_specs  # noqa: E402
from synthgen.generator.plan import SampleSpec  # noqa: E402
from synthgen.generator.training.e2i import E2ITrainingModule, TrainConfig, small_config, tiny_config  # noqa: E402
from synthgen.generator.training.inpaint import NETWORKS as INPAINT_NETWORKS, train_inpainter  # noqa: E402
from synthgen.generator.strategies import get_strategy  # noqa: E402
from synthgen.generator.strategies.logical import (  # noqa: E402
    MASK_MARGIN, augment_edges, augment_photo, part_swap_region, rasterize_shapes, semantic_region)
from synthgen.generator.strategies.ssim_mask import SSIM_THRESHOLD, ssim_map, ssim_masks  # noqa: E402

STRATEGIES = ("semantic-remove", "semantic-replace", "semantic-merge",
              "arbitrary-remove", "arbitrary-replace", "arbitrary-merge", "logical")


#: the repaint caps off (--no-repaint-cap)
NO_CAP = {"max_repaint_image": 1.0, "max_repaint_object": 100.0}
PART_SWAP_ROW = "semantic-replace+part-swap"


def mask_fidelity(model, images, regions, maps, samples: int, backgrounds: np.ndarray, cap: bool = True) -> None:
    rows = [*STRATEGIES, PART_SWAP_ROW] if isinstance(model, RealPixelModel) else list(STRATEGIES)
    options = {name: {} if cap else dict(NO_CAP) for name in STRATEGIES}
    size = images.shape[1:3]
    print(f"\nmask IoU with the edited region ({samples} samples per strategy, {size[0]}x{size[1]}"
          f"{'' if cap else ', repaint caps off'})")
    print("precision: share of the mask inside the edited region; recall: share of the region in the mask;")
    print("outside: share of the mask outside the region (re-rendered but unedited pixels, or SSIM's window)")
    print("identity (inpaint, real renderers): share of the region with SSIM < 0.5 when it is re-rendered from its own,")
    print("  unedited edges: what the renderer's error alone marks (the rest of the recall is the edit's)")
    print("oracle: IoU of the same edits rendered with real pixels (see above)")
    print("sharp: high-frequency energy inside the edit region / the photo's; id sharp: the same inside the")
    print("  inpaint hole of an identity render (1 = the photo's detail)")
    print(f"{'strategy':<27} {'IoU':>6} {'precision':>9} {'recall':>6} {'outside':>7} {'identity':>8} {'oracle':>6} "
          f"{'IoU/orc':>7} {'sharp':>6} {'id sharp':>8} {'mask area':>10} {'redraws':>8} {'fallbacks':>9}")
    rejected: dict[str, Counter] = {}
    repaints = []  # (repaint share of the image, of the object, IoU) of every kept sample
    for row in rows:
        name, row_options = row, options
        if row == PART_SWAP_ROW:
            name = "semantic-replace"
            row_options = {**options, name: {**options[name], "part_swap": 1.0}}
        ctx = demo_context(images, maps, model, options=row_options)
        index = {source.id: k for k, source in enumerate(ctx.sources)}
        specs = [SampleSpec(i, i % len(images), i // len(images), name, 1000 + i) for i in range(samples)]
        out = render_specs(specs, ctx, max_attempts=8)
        scores, precisions, recalls, identity, areas, oracle, sharp, id_sharp = [], [], [], [], [], [], [], []
        for spec, s in zip(specs, out):
            if s.exhausted:
                continue
            p = s.params
            if p.get("part_swap"):
                region = part_swap_region(regions[spec.source_index], regions[index[p["candidate_source"]]], p)
            elif p["region_mode"] == "semantic":
                region = semantic_region(regions[spec.source_index], p["region"])
            else:
                region = rasterize_shapes(p["region"], size)
            mask = s.mask > 0
            scores.append(iou(mask, region))
            precisions.append((mask & region).sum() / max(mask.sum(), 1))
            recalls.append((mask & region).sum() / max(region.sum(), 1))
            areas.append(p["mask_area"])
            image = images[spec.source_index]
            sharp.append(high_frequency_ratio(s.image, image, region))
            if "repaint_area" in p:
                repaints.append((p["repaint_area"], p["repaint_area"] / max(p["object_area"], 1e-9), scores[-1]))
            if p.get("part_swap"):
                other = index[p["candidate_source"]]
                oracle.append(oracle_iou(image, region, np.where(region[..., None], images[other], image)))
            elif p["edit"] == "remove" and p["region_mode"] == "semantic":
                oracle.append(oracle_iou(image, region, np.where(region[..., None], backgrounds[spec.source_index], image)))
            elif p["edit"] != "remove":
                other = index[p["candidate_source"]]
                pasted = augment_photo(images[other], p["augmentation"])
                where = region if p["edit"] == "replace" else \
                    region & (augment_edges((regions[other] > 0).astype(np.uint8) * 255, p["augmentation"]) >= 128)
                oracle.append(oracle_iou(image, region, np.where(where[..., None], pasted, image)))
            if isinstance(model, (InpaintModel, RealPixelModel)):
                marked, hf = identity_render(model, image, maps[spec.source_index], region)
                identity.append(marked)
                id_sharp.append(hf)
        rejected[row] = sum((Counter(s.rejections) for s in out), Counter())
        mean = lambda values: float(np.nanmean(values)) if values else float("nan")  # noqa: E731 (nan: no sample kept)
        print(f"{row:<27} {mean(scores):>6.3f} {mean(precisions):>9.3f} {mean(recalls):>6.3f} "
              f"{1 - mean(precisions):>7.3f} {mean(identity):>8.3f} {mean(oracle):>6.3f} {mean(scores) / mean(oracle):>7.3f} "
              f"{mean(sharp):>6.3f} {mean(id_sharp):>8.3f} {mean(areas):>10.4f} "
              f"{sum(s.redraws for s in out):>8d} {sum(s.exhausted for s in out):>9d}")
    print("why attempts were rejected (every redraw, and each fallback's last attempt):")
    for name, reasons in rejected.items():
        if reasons:
            print(f"  {name:<26} " + "; ".join(f"{reason} {n}" for reason, n in reasons.most_common()))
    if repaints:
        table = np.array(repaints)
        print("repaint of the kept samples (all strategies): share of the image | of the object -> samples, mean IoU")
        for column, edges in ((0, (0, 0.05, 0.1, 0.25, 0.5, 1.01)), (1, (0, 0.25, 0.5, 1, 2, np.inf))):
            cells = []
            for low, high in zip(edges[:-1], edges[1:]):
                inside = (table[:, column] >= low) & (table[:, column] < high)
                cells.append(f"[{low:g}, {high:g}): {inside.sum()}, {table[inside, 2].mean() if inside.any() else float('nan'):.3f}")
            print(f"  {'image' if column == 0 else 'object'}: " + "; ".join(cells))


def oracle_iou(image: np.ndarray, region: np.ndarray, oracle: np.ndarray) -> float:
    """IoU with ``region`` of the mask the inpaint renderer's rule gives an oracle rendering (real
    pixels, see the module docstring) of the edit."""
    as_tensor = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255  # noqa: E731
    mask, _ = ssim_masks(as_tensor(image), as_tensor(oracle), SSIM_THRESHOLD)
    mask = (mask * dilate(torch.from_numpy(region)[None].float(), MASK_MARGIN))[0].numpy() > 0
    return iou(mask, region)


def identity_render(model, image: np.ndarray, maps: dict, region: np.ndarray) -> tuple[float, float]:
    """(share of ``region`` with SSIM(real, sample) < 0.5, high-frequency ratio inside the region
    dilated by HOLE_DILATION) when the renderer re-renders the region from the image's own
    first-scale edges (no edit): the inpaint renderer's hole, or the real renderer's seam band."""
    real = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    edges = torch.from_numpy(maps["edges"][0])[None, None].float() / 255
    footprint = torch.from_numpy(region)[None].float()
    if isinstance(model, RealPixelModel):
        composite, _ = render_seam_band(model, real, edges, footprint)
    else:
        composite, _ = inpaint_tensor(model, real, edges, footprint)
    rendered = (composite[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    hole = dilate(footprint, HOLE_DILATION)[0].numpy() > 0
    return float((ssim_map(real, composite)[0].numpy() < SSIM_THRESHOLD)[region].mean()), high_frequency_ratio(rendered, image, hole)


def threshold_sweep(model, images, regions, maps, samples: int, thresholds=(0.3, 0.4, 0.5, 0.6, 0.7)) -> None:
    """Mean IoU of the mask SSIM < t with the edited region, for several t, on the same renders
    (draw + one render per sample, no redraws; samples the strategy would reject are left out)."""
    ctx = demo_context(images, maps, model)
    size = images.shape[1:3]
    print(f"\nSSIM threshold sweep: mean IoU over accepted samples ({samples} drawn per strategy)")
    print(f"{'strategy':<20} " + " ".join(f"t={t:<4}" for t in thresholds))
    for name in STRATEGIES:
        strategy = get_strategy(name)
        recipes = [strategy.draw(np.random.default_rng(3000 + i), ctx, i % len(images)) for i in range(samples)]
        batch = torch.stack([ctx.normal_image(i % len(images)) for i in range(samples)])
        accepted = strategy.render(batch, recipes, ctx).accepted.tolist()
        ssim = rendered_ssim(model, batch, recipes)
        row = []
        for t in thresholds:
            scores = []
            for i, (r, ok) in enumerate(zip(recipes, accepted)):
                if ok:
                    p = r.params
                    region = semantic_region(regions[i % len(images)], p["region"]) if p["region_mode"] == "semantic" \
                        else rasterize_shapes(p["region"], size)
                    scores.append(iou(ssim[i] < t, region))
            row.append(f"{np.mean(scores):.3f} " if scores else "  -    ")
        print(f"{name:<20} " + " ".join(row))


def rendered_ssim(model, images: torch.Tensor, recipes) -> np.ndarray:
    """The SSIM map the strategies threshold: inpaint renderer, real photo vs the sample where the
    mask may lie (the region widened by MASK_MARGIN, 1 elsewhere); full renderer, the renders of the
    normal and the edited edges."""
    anomaly = torch.from_numpy(np.stack([r.arrays["anomaly_edge"] for r in recipes]))[:, None].float() / 255
    normal = torch.from_numpy(np.stack([r.arrays["normal_edge"] for r in recipes]))[:, None].float() / 255
    if isinstance(model, InpaintModel):
        regions = torch.from_numpy(np.stack([r.arrays["region"] for r in recipes])).float()
        composite, _ = inpaint_tensor(model, images, anomaly, regions)
        allowed = dilate(regions, MASK_MARGIN)
        return torch.where(allowed > 0, ssim_map(images, composite), torch.ones_like(allowed)).numpy()
    return ssim_map(generate_tensor(model, normal), generate_tensor(model, anomaly)).numpy()


def train_demo_inpainter(out_dir: Path, images: np.ndarray, maps: list[dict], steps: int, seed: int = 0) -> InpaintModel:
    """The demo preset's inpainting generator (generator/training/inpaint.py) trained ``steps`` steps."""
    import dataclasses

    config = dataclasses.replace(INPAINT_NETWORKS["demo"], steps=steps)
    path = train_inpainter(images, lambda i: maps[i], out_dir, config=config, seed=seed, progress=False)
    return load_inpainter(path, image_size=images.shape[1:3])


def train_step_seconds(config: TrainConfig, batch: int, size: int, device: str, steps: int = 2) -> float:
    """Median seconds of E2ITrainingModule.training_step (TPS warp, G and D forward/backward/step),
    called without a Lightning Trainer: its optimizer, backward and logging hooks are replaced by plain
    equivalents, so the time is the step's own compute."""
    module = E2ITrainingModule(config.to_dict(), seed=0, epochs=1).to(device)
    g_opt, d_opt = module.configure_optimizers()
    module.optimizers = lambda: (g_opt, d_opt)
    module.manual_backward = lambda loss: loss.backward()
    module.log_dict = lambda *a, **k: None
    data = {"edge": (torch.rand(batch, 1, size, size, device=device) > 0.9).float(),
            "image": torch.rand(batch, 3, size, size, device=device)}
    times = []
    for step in range(steps + 1):  # the first step warms up
        start = time.perf_counter()
        module.training_step(data, step)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:]))


def inference_images_per_second(generator: torch.nn.Module, batch: int, size: int, device: str, repeats: int = 2) -> float:
    generator = generator.to(device).eval()
    edges = torch.rand(batch, 1, size, size, device=device)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    times = []
    with torch.inference_mode(), torch.autocast(device, dtype=dtype, enabled=device == "cuda"):
        for _ in range(repeats + 1):
            start = time.perf_counter()
            generator(edges)
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    return batch / float(np.median(times[1:]))


def strategy_samples_per_second(model, size: int, n: int) -> float:
    images, regions = demo_images(8, size)
    ctx = demo_context(images, demo_maps(images, regions), model)
    specs = [SampleSpec(i, i % 8, i // 8, "logical", 2000 + i) for i in range(n)]
    render_specs(specs[:2], ctx, max_attempts=8)  # warm-up
    start = time.perf_counter()
    render_specs(specs, ctx, max_attempts=8)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128, help="image side of the mask-fidelity run")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs of the tiny demo generator")
    parser.add_argument("--samples", type=int, default=16, help="samples per strategy")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--renderer", default="both",
                        help="which LogicAL renderer(s) to measure: full, inpaint, real, a comma-separated list, "
                             "or both (= full,inpaint); several are measured side by side in one run")
    parser.add_argument("--no-repaint-cap", action="store_true", help="turn the repaint caps off (see above)")
    parser.add_argument("--generator", type=Path,
                        help="an inpainting generator file trained on the same demo images and size (e.g. the one an "
                             "earlier run printed) instead of training one")
    parser.add_argument("--steps", type=int, default=INPAINT_NETWORKS["demo"].steps,
                        help="training steps of the inpainting demo generator (default: the demo preset's)")
    parser.add_argument("--throughput-only", action="store_true", help="skip the mask-fidelity part (1.)")
    parser.add_argument("--no-sweep", action="store_true", help="skip the SSIM threshold sweep")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"device {args.device}, {torch.get_num_threads()} threads")

    renderers = ["full", "inpaint"] if args.renderer == "both" else args.renderer.split(",")
    if not set(renderers) <= {"full", "inpaint", "real"}:
        parser.error(f"--renderer: full, inpaint, real or both, got {args.renderer}")
    images, regions = demo_images(24, args.size)
    maps = demo_maps(images, regions)
    models = {}
    if "full" in renderers:
        start = time.perf_counter()
        models["full"] = train_demo_generator(Path(tempfile.mkdtemp()), images, maps, epochs=args.epochs)
        print(f"full renderer, tiny generator: {args.epochs} epochs on 24 pairs at {args.size}: {time.perf_counter() - start:.1f} s")
    if {"inpaint", "real"} & set(renderers):
        start = time.perf_counter()
        if args.generator:
            inpainter = load_inpainter(args.generator, image_size=images.shape[1:3])
        else:
            inpainter = train_demo_inpainter(Path(tempfile.mkdtemp()), images, maps, steps=args.steps)
            print(f"inpaint generator, demo preset: {args.steps} steps on 24 images at {args.size}: "
                  f"{time.perf_counter() - start:.1f} s")
        print(f"inpaint generator: {inpainter.path} (sha256 {inpainter.sha256[:12]})")
        if "inpaint" in renderers:
            models["inpaint"] = inpainter
        if "real" in renderers:
            models["real"] = RealPixelModel(inpainter)
    if not args.throughput_only:
        for name, model in models.items():
            print(f"\n=== renderer {name}")
            mask_fidelity(model, images, regions, maps, args.samples, demo_backgrounds(24, args.size), cap=not args.no_repaint_cap)
            if name != "real" and not args.no_sweep:  # the sweep re-renders with the inpaint and full renderers' own rules
                threshold_sweep(model, images, regions, maps, args.samples)
    if "full" not in renderers or len(renderers) > 1:
        for name, model in models.items():
            print(f"logical strategy (draw + render, {name} renderer's demo generator, {args.size}x{args.size}): "
                  f"{strategy_samples_per_second(model, args.size, 16):.2f} samples/s")
    if "full" not in renderers:
        return
    model = models["full"]

    print("\nthroughput at 256x256")
    print(f"train step, tiny config, batch 8: {train_step_seconds(tiny_config(), 8, 256, args.device):.2f} s")
    print(f"train step, small config, batch 4: {train_step_seconds(small_config(), 4, 256, args.device, steps=2):.2f} s")
    print(f"train step, full config, batch 1: {train_step_seconds(TrainConfig(), 1, 256, args.device, steps=1):.2f} s")
    batch = 64 if args.device == "cuda" else 2
    full = GlobalGenerator(GeneratorConfig())
    print(f"inference, full config: {inference_images_per_second(full, batch, 256, args.device):.2f} images/s")
    small = GlobalGenerator(small_config().generator)
    print(f"inference, small config: {inference_images_per_second(small, 4 * batch, 256, args.device):.2f} images/s")
    print(f"inference, tiny config: {inference_images_per_second(model.generator, 8, 256, args.device):.1f} images/s")
    print(f"logical strategy (draw + render, tiny generator): {strategy_samples_per_second(model, 256, 16):.2f} samples/s")


if __name__ == "__main__":
    main()
