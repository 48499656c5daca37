"""The LogicAL anomaly localization network: reconstruction sub-network, DiffNeck, localization sub-network.

LogicAL (Sec. 3.2) "follows the network structure of OmniAL [Zhao, CVPR 2023] that consists of
reconstruction and localization sub-networks equipped with dilated channel and spatial attention (DCSA)
blocks and DiffNeck module", and adds edge reconstruction: the reconstruction sub-network outputs the
normal image, its JND map and its edge map, and "the localization sub-network calculate[s] the
reconstruction error with the assistance of edge maps".

Neither OmniAL nor LogicAL has public code, and OmniAL's paper is not available to this project, so the
layer-level design below is re-derived from what is published, and every choice says where it comes
from:

- The two sub-networks are DRAEM's (Zavrtanik et al., ICCV 2021; JNLD and OmniAL, by LogicAL's author,
  build on DRAEM's reconstructive + discriminative pair, and LogicAL's Table 4 puts them side by side).
  From DRAEM's official ``model_unet.py`` (read for facts): the reconstruction sub-network is an
  encoder-decoder *without* skip connections (so an anomaly cannot be copied through to the output),
  5 encoder stages of widths w, 2w, 4w, 8w, 8w with 4 max-poolings, w = 128; the localization
  (discriminative) sub-network is a U-Net with skip connections, 6 encoder stages of widths w, 2w, 4w,
  8w, 8w, 8w with 5 max-poolings, w = 64, and a 2-channel output. Upsampling is bilinear x2
  (align_corners=True) followed by a 3x3 convolution, BatchNorm and ReLU; every output is a plain 3x3
  convolution.
- DCSA ("dilated channel and spatial attention"): each stage is a 3x3 convolution (DRAEM's first
  convolution of a stage) followed by a DCSA block in place of DRAEM's second convolution, so the cost
  per stage stays that of DRAEM. The block: parallel 3x3 convolutions with dilations 1, 2, 4 that split
  the output channels between them (receptive fields 3, 5, 9 at the cost of one 3x3 convolution), then
  squeeze-and-excitation channel attention (Hu et al., CVPR 2018, reduction 16) and CBAM spatial
  attention (Woo et al., ECCV 2018: 7x7 convolution over the channel mean and max), in CBAM's order,
  with a residual connection. The dilation rates are this project's choice; OmniAL's are not known.
- DiffNeck ("explor[es the] difference between reconstructed and original data", LogicAL Fig. 4): a
  shared embedding (3x3 convolution + DCSA) of the input and of the reconstructed image; the neck
  output fuses the input's features, the absolute feature difference, the absolute pixel difference,
  the reconstructed JND map and the reconstructed edge map with a 3x3 convolution. This is where the
  edge map "assists" the reconstruction error: the localization sub-network sees where the normal
  image is expected to have edges next to where input and reconstruction differ. At test time only the
  network's own reconstructions exist, so the neck uses the reconstructed JND and edge maps, never the
  targets.
- Heads of the reconstruction sub-network: image (3 channels) and JND map (1 channel) are linear 3x3
  convolutions like DRAEM's output; the edge head gives logits whose sigmoid is the edge probability
  (the annotator-robust loss of RCF/PiDiNet is a cross-entropy on a probability).
- Initialisation as DRAEM's ``weights_init``: convolution weights N(0, 0.02), BatchNorm weights
  N(1, 0.02) and biases 0; convolution biases 0 (DRAEM keeps PyTorch's default there) so that the whole
  initialisation comes from one explicit seed.

Input height and width must be multiples of 32 (5 max-poolings); the paper's 256x256 and 256x320 are.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from synthgen.generator.errors import SynthgenError


@dataclass(frozen=True)
class NetConfig:
    """Widths of the network. ``full`` is the paper-scale network (DRAEM's widths), ``tiny`` a CPU test size."""

    recon_width: int = 128  # DRAEM reconstructive sub-network base width
    loc_width: int = 64  # DRAEM discriminative sub-network base width
    dilations: tuple[int, ...] = (1, 2, 4)  # DCSA branches (this project's choice, see module docstring)
    se_reduction: int = 16  # squeeze-and-excitation reduction ratio (Hu et al. 2018 default)
    spatial_kernel: int = 7  # CBAM spatial attention kernel (Woo et al. 2018 default)

    def __post_init__(self) -> None:
        if min(self.recon_width, self.loc_width) < len(self.dilations):
            raise SynthgenError(
                f"network widths: recon_width and loc_width must be at least {len(self.dilations)} "
                f"(one channel per DCSA dilation), got {self.recon_width} and {self.loc_width}"
            )

    def to_dict(self) -> dict:
        return {**asdict(self), "dilations": list(self.dilations)}

    @classmethod
    def from_dict(cls, d: dict) -> "NetConfig":
        return cls(**{**d, "dilations": tuple(d["dilations"])})


PRESETS = {"full": NetConfig(), "tiny": NetConfig(recon_width=8, loc_width=8)}

RECON_POOLINGS = 4  # DRAEM reconstructive encoder: 4 max-poolings
LOC_POOLINGS = 5  # DRAEM discriminative encoder: 5 max-poolings
SIZE_MULTIPLE = 2**LOC_POOLINGS


class LogicALOutput(NamedTuple):
    """Everything one forward pass produces, all (B, C, H, W) at the input's resolution."""

    image: torch.Tensor  # reconstructed normal image, 3 channels (unbounded; trained towards [0, 1])
    jnd: torch.Tensor  # reconstructed JND map, 1 channel
    edge_logits: torch.Tensor  # reconstructed edge map before the sigmoid, 1 channel
    mask_logits: torch.Tensor  # localization logits, channel 0 normal, channel 1 anomalous

    @property
    def edge(self) -> torch.Tensor:
        """Reconstructed edge probability in [0, 1]."""
        return torch.sigmoid(self.edge_logits)


def conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def _split_channels(channels: int, parts: int) -> list[int]:
    """``channels`` split into ``parts`` near-equal positive counts, larger ones first."""
    base, extra = divmod(channels, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


class DCSA(nn.Module):
    """Dilated channel and spatial attention block (re-derived, see the module docstring).

    x -> [3x3 conv with dilation d, for each d, channels split between them] -> BN -> ReLU
      -> channel attention (squeeze-excitation) -> spatial attention (CBAM) -> + x
    """

    def __init__(self, channels: int, config: NetConfig):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(channels, c, 3, padding=d, dilation=d, bias=False)
            for c, d in zip(_split_channels(channels, len(config.dilations)), config.dilations)
        )
        self.norm = nn.BatchNorm2d(channels)
        hidden = max(channels // config.se_reduction, 1)
        self.channel_gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )
        k = config.spatial_kernel
        self.spatial_gate = nn.Conv2d(2, 1, k, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm(torch.cat([branch(x) for branch in self.branches], dim=1)))
        y = y * self.channel_gate(y)
        pooled = torch.cat([y.mean(dim=1, keepdim=True), y.amax(dim=1, keepdim=True)], dim=1)
        y = y * torch.sigmoid(self.spatial_gate(pooled))
        return x + y


def stage(c_in: int, c_out: int, config: NetConfig) -> nn.Sequential:
    """One encoder/decoder stage: DRAEM's first 3x3 convolution, then a DCSA block."""
    return nn.Sequential(conv_bn_relu(c_in, c_out), DCSA(c_out, config))


def up(c_in: int, c_out: int) -> nn.Sequential:
    """DRAEM's upsampling: bilinear x2, then 3x3 convolution + BN + ReLU."""
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True), conv_bn_relu(c_in, c_out))


class ReconstructionNet(nn.Module):
    """Encoder-decoder without skip connections; three heads: normal image, JND map, edge logits."""

    def __init__(self, config: NetConfig):
        super().__init__()
        w = config.recon_width
        enc = [w, 2 * w, 4 * w, 8 * w, 8 * w]  # DRAEM EncoderReconstructive widths
        self.encoder = nn.ModuleList(stage(c_in, c_out, config) for c_in, c_out in zip([3, *enc[:-1]], enc))
        # DRAEM DecoderReconstructive: each level upsamples, then its stage reduces the width
        dec = [(8 * w, 4 * w), (4 * w, 2 * w), (2 * w, w), (w, w)]
        self.ups = nn.ModuleList(up(c, c) for c, _ in dec)
        self.decoder = nn.ModuleList(stage(c_in, c_out, config) for c_in, c_out in dec)
        self.image_head = nn.Conv2d(w, 3, 3, padding=1)
        self.jnd_head = nn.Conv2d(w, 1, 3, padding=1)
        self.edge_head = nn.Conv2d(w, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        for i, block in enumerate(self.encoder):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
        for upsample, block in zip(self.ups, self.decoder):
            x = block(upsample(x))
        return self.image_head(x), self.jnd_head(x), self.edge_head(x)


class DiffNeck(nn.Module):
    """Difference features between input and reconstruction, with the reconstructed JND and edge maps."""

    def __init__(self, config: NetConfig):
        super().__init__()
        w = config.loc_width
        self.embed = stage(3, w, config)  # shared by input and reconstruction
        # input features + |feature difference| + |pixel difference| (3) + JND (1) + edge (1)
        self.fuse = conv_bn_relu(2 * w + 5, w)

    def forward(self, image: torch.Tensor, rec_image: torch.Tensor, rec_jnd: torch.Tensor, rec_edge: torch.Tensor) -> torch.Tensor:
        # one pass over both so that BatchNorm normalises input and reconstruction with the same statistics
        features = self.embed(torch.cat([image, rec_image], dim=0))
        f_image, f_rec = features.chunk(2, dim=0)
        return self.fuse(torch.cat([f_image, (f_image - f_rec).abs(), (image - rec_image).abs(), rec_jnd, rec_edge], dim=1))


class LocalizationNet(nn.Module):
    """U-Net with skip connections over the DiffNeck features; 2-channel mask logits."""

    def __init__(self, config: NetConfig):
        super().__init__()
        w = config.loc_width
        enc = [w, 2 * w, 4 * w, 8 * w, 8 * w, 8 * w]  # DRAEM EncoderDiscriminative widths
        self.encoder = nn.ModuleList(stage(c_in, c_out, config) for c_in, c_out in zip([w, *enc[:-1]], enc))
        # DRAEM DecoderDiscriminative: upsample (changing the width), concatenate the encoder's skip
        # of that resolution, convolve back to the upsampled width
        dec = [8 * w, 4 * w, 2 * w, w, w]
        skips = enc[-2::-1]  # 8w, 8w, 4w, 2w, w
        self.ups = nn.ModuleList(up(c_in, c_out) for c_in, c_out in zip([enc[-1], *dec[:-1]], dec))
        self.decoder = nn.ModuleList(stage(c + s, c, config) for c, s in zip(dec, skips))
        self.head = nn.Conv2d(w, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.encoder):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for upsample, block, skip in zip(self.ups, self.decoder, reversed(skips[:-1])):
            x = block(torch.cat([upsample(x), skip], dim=1))
        return self.head(x)


class LogicALNet(nn.Module):
    """image (B, 3, H, W) in [0, 1] -> :class:`LogicALOutput`. H and W must be multiples of 32."""

    def __init__(self, config: NetConfig = NetConfig()):
        super().__init__()
        self.config = config
        self.reconstruction = ReconstructionNet(config)
        self.neck = DiffNeck(config)
        self.localization = LocalizationNet(config)

    def forward(self, image: torch.Tensor) -> LogicALOutput:
        check_input_size(tuple(image.shape[-2:]))
        rec_image, rec_jnd, edge_logits = self.reconstruction(image)
        features = self.neck(image, rec_image, rec_jnd, torch.sigmoid(edge_logits))
        return LogicALOutput(rec_image, rec_jnd, edge_logits, self.localization(features))


def check_input_size(size_hw: tuple[int, int]) -> None:
    h, w = size_hw
    if h % SIZE_MULTIPLE or w % SIZE_MULTIPLE or h == 0 or w == 0:
        raise SynthgenError(
            f"image size {h}x{w}: LogicAL needs height and width that are positive multiples of "
            f"{SIZE_MULTIPLE} (its localization sub-network pools 5 times)"
        )


@torch.no_grad()
def init_weights(net: nn.Module, generator: torch.Generator) -> None:
    """DRAEM's initialisation (see the module docstring), drawn from ``generator`` only."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            m.weight.normal_(0.0, 0.02, generator=generator)
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.normal_(1.0, 0.02, generator=generator)
            m.bias.zero_()


def build_net(config: NetConfig, seed: int) -> LogicALNet:
    """A freshly initialised network; the same (config, seed) always gives the same weights."""
    net = LogicALNet(config)
    init_weights(net, torch.Generator().manual_seed(seed))
    return net
