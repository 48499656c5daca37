"""The reconstructive framework's two networks, its losses, and the trained model used at inference.

Networks (layer layout re-derived from DRAEM, Zavrtanik et al. ICCV 2021, and its published
model_unet.py, read for facts only):

- Reconstructive network R: an encoder-decoder without skip connections. Encoder: five blocks of
  two (3x3 conv, BatchNorm, ReLU) with widths w, 2w, 4w, 8w, 8w, a 2x2 max pool between blocks
  (total stride 16). Decoder: four stages of (bilinear x2 upsampling with align_corners=True,
  3x3 conv, BN, ReLU) followed by two (conv, BN, ReLU), narrowing 8w -> 4w -> 2w -> w -> w, then a
  3x3 conv to 3 channels with no output activation. DRAEM: w = 128.
- Discriminative network S: a U-Net. Encoder: six blocks of two (conv, BN, ReLU) with widths
  v, 2v, 4v, 8v, 8v, 8v and a max pool between blocks (total stride 32). Decoder: five stages of
  (upsample x2, conv, BN, ReLU), concatenation with the encoder block of the same scale, two
  (conv, BN, ReLU); widths 8v, 4v, 2v, v, v; then a 3x3 conv to 2 channels (normal, anomalous).
  DRAEM: v = 64, input 6 channels (an image and its reconstruction).

One option sets both widths: ``base_width`` is R's w and S's v is w // 2 (DRAEM's 128 : 64), so
base_width 128 is DRAEM's size and base_width 8 a tiny configuration for CPU tests. Image height
and width must be multiples of 32 (S pools five times) and at least 64.

Weight initialisation (DRAEM's train_DRAEM.py, ``weights_init``): conv weights ~ N(0, 0.02),
BatchNorm weights ~ N(1, 0.02) and biases 0; conv biases keep PyTorch's default initialisation.

Losses (DRAEM's loss.py): L2 is the mean squared error; the SSIM loss is 1 - mean SSIM with an
11x11 Gaussian window (sigma 1.5), zero padding of 5, constants C1 = (0.01 L)^2, C2 = (0.03 L)^2 and
dynamic range L = 1 for images in [0, 1]; the focal loss (Lin et al. 2017) acts on the softmax of S
with gamma 2, class weights 1, and DRAEM's label smoothing: the one-hot target is clamped to
[1e-5, 1 - 1e-5] and 1e-5 is added to p_t before the log.

Inference (DRAEM's test_DRAEM.py): the anomaly map is the anomalous channel of softmax(S(I, R(I)));
the image score is the maximum of that map after a 21x21 mean filter (``avg_pool2d``, stride 1,
zero padding counted in the mean). DRAEM's 21 is for 256x256 inputs; other sizes scale it with the
shorter image side (rounded to an odd number), so the filter covers the same fraction of the image.
The pixel map itself is not smoothed, as in DRAEM's evaluation of pixel metrics.

Run folder file ``model.pt``: ``{"format": 1, "architecture": ArchitectureConfig dict, "state_dict":
R and S}``, loadable with ``torch.load(weights_only=True)``; :func:`load` is the method's loader for
``synthgen-eval`` (registered on import; it needs neither Lightning nor the training code).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from synthgen.generator.errors import SynthgenError
from synthgen.generator.safe_load import load_state_dict_checked

from ..base import MODEL_FILE, read_model_file, register_loader, write_model_file
from ..losses import FOCAL_GAMMA, FOCAL_SMOOTH, two_class_focal_loss
from ..score_maps import score_kernel

#: DRAEM: ReconstructiveSubNetwork(base_width=128), DiscriminativeSubNetwork(base_channels=64).
DRAEM_BASE_WIDTH = 128
#: S pools five times: inputs must be multiples of this.
SIZE_MULTIPLE = 32
#: At 32 px S's deepest map is 1x1, and BatchNorm cannot normalise a 1x1 map of a single sample.
MIN_SIZE = 64
#: DRAEM loss.py: create_window(11) with sigma 1.5.
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5

METHOD = "reconstruction"
MODEL_FORMAT = 1


@dataclass(frozen=True)
class ArchitectureConfig:
    """What is needed to rebuild the networks (stored in model.pt)."""

    base_width: int = DRAEM_BASE_WIDTH
    image_size: tuple[int, int] = (256, 256)  # (H, W)

    @property
    def discriminative_width(self) -> int:
        return max(1, self.base_width // 2)

    def to_dict(self) -> dict:
        return {**asdict(self), "image_size": list(self.image_size)}

    @classmethod
    def from_dict(cls, d: dict) -> "ArchitectureConfig":
        return cls(base_width=int(d["base_width"]), image_size=tuple(int(v) for v in d["image_size"]))


def check_architecture(config: ArchitectureConfig) -> None:
    """One-line errors for sizes the networks cannot take."""
    if config.base_width < 2:
        raise SynthgenError(f"--base-width: must be at least 2, got {config.base_width}")
    h, w = config.image_size
    if h < MIN_SIZE or w < MIN_SIZE or h % SIZE_MULTIPLE or w % SIZE_MULTIPLE:
        raise SynthgenError(
            f"--image-size: {h}x{w} must be multiples of {SIZE_MULTIPLE} (the discriminative network pools 5 times), "
            f"at least {MIN_SIZE}"
        )


# ------------------------------------------------------------------------------------------ layers


def conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def double_conv(c_in: int, c_mid: int, c_out: int) -> nn.Sequential:
    """Two (3x3 conv, BN, ReLU): c_in -> c_mid -> c_out."""
    return nn.Sequential(*conv_bn_relu(c_in, c_mid), *conv_bn_relu(c_mid, c_out))


def up_conv(c_in: int, c_out: int) -> nn.Sequential:
    """Bilinear x2 upsampling (align_corners=True, as DRAEM) then (conv, BN, ReLU)."""
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True), *conv_bn_relu(c_in, c_out))


class ReconstructiveNetwork(nn.Module):
    """R: image (B, 3, H, W) -> reconstruction (B, 3, H, W), no skip connections."""

    def __init__(self, base_width: int = DRAEM_BASE_WIDTH):
        super().__init__()
        w = base_width
        widths = (w, 2 * w, 4 * w, 8 * w, 8 * w)
        ins = (3, *widths[:-1])
        self.encoder = nn.ModuleList(double_conv(i, o, o) for i, o in zip(ins, widths))
        # (upsampling conv width, block output width) per decoder stage
        stages = ((8 * w, 4 * w), (4 * w, 2 * w), (2 * w, w), (w, w))
        c_in = 8 * w
        self.decoder = nn.ModuleList()
        for up_width, out_width in stages:
            self.decoder.append(nn.Sequential(up_conv(c_in, up_width), double_conv(up_width, up_width, out_width)))
            c_in = out_width
        self.output = nn.Conv2d(w, 3, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.encoder):
            x = block(F.max_pool2d(x, 2) if i else x)
        for stage in self.decoder:
            x = stage(x)
        return self.output(x)


class DiscriminativeNetwork(nn.Module):
    """S: (B, 6, H, W) image and reconstruction -> logits (B, 2, H, W) (normal, anomalous)."""

    def __init__(self, base_width: int = DRAEM_BASE_WIDTH // 2, in_channels: int = 6):
        super().__init__()
        v = base_width
        widths = (v, 2 * v, 4 * v, 8 * v, 8 * v, 8 * v)
        ins = (in_channels, *widths[:-1])
        self.encoder = nn.ModuleList(double_conv(i, o, o) for i, o in zip(ins, widths))
        self.up = nn.ModuleList()
        self.fuse = nn.ModuleList()
        c_in = widths[-1]
        # Decoder stage k upsamples to the scale of encoder block 5 - k and fuses with it.
        for out_width, skip_width in zip((8 * v, 4 * v, 2 * v, v, v), reversed(widths[:-1])):
            self.up.append(up_conv(c_in, out_width))
            self.fuse.append(double_conv(out_width + skip_width, out_width, out_width))
            c_in = out_width
        self.output = nn.Conv2d(v, 2, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.encoder):
            x = block(F.max_pool2d(x, 2) if i else x)
            skips.append(x)
        for up, fuse, skip in zip(self.up, self.fuse, reversed(skips[:-1])):
            x = fuse(torch.cat((up(x), skip), dim=1))
        return self.output(x)


def draem_init_(module: nn.Module) -> None:
    """DRAEM's weights_init on every conv and BatchNorm layer of ``module`` (global torch RNG)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class ReconstructionNetworks(nn.Module):
    """R and S together; ``forward`` gives the reconstruction and S's logits."""

    def __init__(self, config: ArchitectureConfig):
        super().__init__()
        self.config = config
        self.reconstructive = ReconstructiveNetwork(config.base_width)
        self.discriminative = DiscriminativeNetwork(config.discriminative_width)

    @classmethod
    def initialised(cls, config: ArchitectureConfig, seed: int) -> "ReconstructionNetworks":
        """Build and DRAEM-initialise the networks from ``seed`` alone (the global RNG is left untouched)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            nets = cls(config)
            draem_init_(nets)
        return nets

    @staticmethod
    def discriminator_input(images: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
        """S's input I (+) R(I), the channel-wise concatenation of the framework's Eq. 3."""
        return torch.cat((images, reconstructions), dim=1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        reconstructions = self.reconstructive(images)
        logits = self.discriminative(self.discriminator_input(images, reconstructions))
        return reconstructions, logits


# ------------------------------------------------------------------------------------------ losses


def _gaussian_window(size: int, sigma: float, channels: int, like: torch.Tensor) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    window = (g[:, None] * g[None, :]).to(device=like.device, dtype=like.dtype)
    return window.expand(channels, 1, size, size).contiguous()


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Mean SSIM of two (B, C, H, W) batches in [0, 1] (Gaussian window, zero padding, as DRAEM)."""
    c = a.shape[1]
    kernel = _gaussian_window(window, sigma, c, a)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, kernel, padding=window // 2, groups=c)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2  # (0.01 L)^2, (0.03 L)^2 with dynamic range L = 1
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return ssim_map.mean()


def ssim_loss(reconstructions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1 - SSIM, in float32 even inside a bf16 autocast region (the variances are differences of squares)."""
    with torch.autocast(device_type=reconstructions.device.type, enabled=False):
        return 1.0 - ssim(reconstructions.float(), targets.float())


def focal_loss(logits: torch.Tensor, masks: torch.Tensor, gamma: float = FOCAL_GAMMA, smooth: float = FOCAL_SMOOTH) -> torch.Tensor:
    """Mean focal loss of S's logits (B, 2, H, W) against masks (B, 1, H, W) in {0, 1}, as DRAEM computes it."""
    probs = torch.softmax(logits.float(), dim=1)
    return two_class_focal_loss(probs[:, 0], probs[:, 1], masks[:, 0].float(), gamma, smooth)


# --------------------------------------------------------------------------------------- inference


class ReconstructionModel(nn.Module):
    """The trained model as ``synthgen-eval`` sees it (trainers.base.AnomalyModel)."""

    def __init__(self, networks: ReconstructionNetworks):
        super().__init__()
        self.networks = networks.eval()
        self.image_size = networks.config.image_size
        self.kernel = score_kernel(self.image_size)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, 3, H, W) in [0, 1] -> (anomaly maps (B, H, W) in [0, 1], image scores (B,))."""
        self.networks.eval()
        _, logits = self.networks(images)
        maps = torch.softmax(logits.float(), dim=1)[:, 1]
        smoothed = F.avg_pool2d(maps[:, None], self.kernel, stride=1, padding=self.kernel // 2)
        return maps, smoothed.flatten(1).amax(1)


# ------------------------------------------------------------------------------------- run folder


def save_model(run_dir: Path, networks: ReconstructionNetworks) -> Path:
    """Write ``run_dir/model.pt`` atomically."""
    blob = {"architecture": networks.config.to_dict(), "state_dict": networks.state_dict()}
    return write_model_file(run_dir, METHOD, MODEL_FORMAT, blob)


@register_loader(METHOD)
def load(run_dir: Path, device: torch.device) -> ReconstructionModel:
    """The trained model of a reconstruction run folder, in eval mode on ``device``."""
    blob = read_model_file(run_dir, METHOD, MODEL_FORMAT)
    networks = ReconstructionNetworks.initialised(ArchitectureConfig.from_dict(blob["architecture"]), seed=0)
    load_state_dict_checked(networks, blob["state_dict"], Path(run_dir) / MODEL_FILE, "model file")
    return ReconstructionModel(networks).to(device)
