"""The edge-guided inpainting renderer: re-render only the edited region of a real photo.

LogicAL renders a whole photo from its edited edge map (:mod:`.e2i`, the ``full`` renderer). A
generator a CPU can train re-paints everything it sees, so the whole image drifts from the real
photo and the SSIM ground truth marks rendering errors. This renderer keeps the real photo and
re-renders only the (dilated) edit region, conditioned on the edited edges: the formulation of
edge-guided inpainting (EdgeConnect, Nazeri et al. 2019, its second stage), re-derived here.

- Generator input (5 channels): the photo with the hole blanked to white, ``img (1 - m) + m``; the
  first-scale edge map, edited inside the region; the hole mask ``m``. Output: RGB in [0, 1].
- Network: EdgeConnect's stage-2 shape at CPU widths: a 7x7 conv (``ngf``), ``n_downsampling``
  stride-2 4x4 convs doubling the width, ``n_blocks`` residual blocks whose first conv is dilated
  (``dilation``; the receptive field must span a removed label), as many x2 upsamplings
  (``upsampling``: nearest x2 + 3x3 conv by default, EdgeConnect's stride-2 transposed 4x4 conv
  left a checkerboard in the holes a seam probe saw), and a 7x7 conv to RGB; InstanceNorm + ReLU
  between, reflection padding for the 7x7 convs and inside the blocks; ``(tanh + 1) / 2`` output.
- The sample (:func:`inpaint_composite`): the hole is the edit region dilated by
  ``HOLE_DILATION`` px; the generated pixels are blended in with a weight that is 1 on the region
  dilated by half of that and falls linearly to 0 at the hole's border (a feathered seam), so every
  pixel outside the hole is the real photo's, exactly.
- Rendering window (:func:`render_window`): a generator trained on crops around holes (the CPU
  presets' 128 px) renders the same size of window around each hole, not the whole image, so its
  InstanceNorm statistics are those of training, and a rendering costs the window, not the image.
  On the demo at 256 px (benchmarks/bench_logical.py --size 256, 48 samples per strategy, the demo
  preset's generator; windowed against whole-image rendering) the mask IoUs held: semantic remove
  0.911 / 0.916, replace 0.792 / 0.781, arbitrary remove 0.471 / 0.477, replace 0.539 / 0.539,
  logical 0.538 / 0.543; merges were refused a little more often (semantic 201 against 91
  redraws). On juice_bottle at 256x128 (semantic-remove): IoU 0.625 against 0.614, seam probe 0.85
  against 0.85, and 1.5 to 2 times as many samples per second.

A generator file (:func:`save_inpainter`) holds the format tag ``synthgen-inpaint-generator``, the
network config, the image size it was trained at, the training record (which loss terms were
active) and the weights. :func:`load_inpainter` refuses files of the other renderer and a training
size other than the build's with one line each.
"""

from __future__ import annotations

import dataclasses
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..atomic import atomic_path
from ..errors import SynthgenError
from ..imageio import sha256_file
from ..records import check_record
from .layers import ResidualBlock, check_ints, config_from_dict, output_layers, stem_layers
from .generator_file import INPAINT_FORMAT as FORMAT
from .generator_file import generator_file_payload

FORMAT_VERSION = 1
#: the edit region is widened by this many pixels into the hole the generator fills: the seam then
#: lies on unedited texture, and anti-aliased edge pixels just outside the region are re-rendered too
HOLE_DILATION = 6
#: how the generator doubles its resolution (see InpaintConfig.upsampling)
UPSAMPLING = ("resize", "transpose")


@dataclass(frozen=True)
class InpaintConfig:
    """Widths of the inpainting generator (EdgeConnect stage 2 has ngf 64, 2 downsamplings,
    8 blocks of dilation 2; the default here is a CPU-trainable version of the same shape)."""

    ngf: int = 32
    n_downsampling: int = 2
    n_blocks: int = 4
    dilation: int = 2
    in_channels: int = 3 + 1 + 1  # masked RGB, edge map, hole mask
    out_channels: int = 3
    #: "resize": nearest-neighbour x2 then a 3x3 conv (Odena et al. 2016, "Deconvolution and
    #: checkerboard artifacts"); "transpose": EdgeConnect's stride-2 4x4 transposed conv, whose uneven
    #: kernel overlap paints a period-2 checkerboard into every hole (files saved before this option)
    upsampling: str = "resize"

    def __post_init__(self):
        check_ints(self, ("ngf", "dilation", "in_channels", "out_channels"), minimum=1)
        check_ints(self, ("n_downsampling", "n_blocks"), minimum=0)
        if self.upsampling not in UPSAMPLING:
            raise SynthgenError(f"InpaintConfig.upsampling: one of {', '.join(UPSAMPLING)}, got {self.upsampling!r}")

    @property
    def size_multiple(self) -> int:
        return 2**self.n_downsampling


class InpaintGenerator(nn.Module):
    """(masked RGB (B, 3, H, W), edges (B, 1, H, W), hole (B, 1, H, W)), all in [0, 1] -> RGB in [0, 1]."""

    def __init__(self, config: InpaintConfig = InpaintConfig()):
        super().__init__()
        self.config = config
        ngf, n_down = config.ngf, config.n_downsampling
        layers = stem_layers(config.in_channels, ngf)
        for i in range(n_down):
            width = ngf * 2**i
            layers += [nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.InstanceNorm2d(2 * width), nn.ReLU(inplace=True)]
        layers += [ResidualBlock(ngf * 2**n_down, config.dilation) for _ in range(config.n_blocks)]
        for i in range(n_down, 0, -1):
            width = ngf * 2**i
            if config.upsampling == "resize":
                layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.ReflectionPad2d(1), nn.Conv2d(width, width // 2, 3)]
            else:
                layers += [nn.ConvTranspose2d(width, width // 2, 4, stride=2, padding=1)]
            layers += [nn.InstanceNorm2d(width // 2), nn.ReLU(inplace=True)]
        layers += output_layers(ngf, config.out_channels)
        self.layers = nn.Sequential(*layers)

    def forward(self, masked: torch.Tensor, edges: torch.Tensor, holes: torch.Tensor) -> torch.Tensor:
        x = torch.cat([masked * 2 - 1, edges * 2 - 1, holes], dim=1)
        return (torch.tanh(self.layers(x)) + 1) / 2


# --------------------------------------------------------------------------------------------------
# holes and the composite


def dilate(masks: torch.Tensor, radius: int) -> torch.Tensor:
    """Binary dilation of (B, H, W) masks by a (2r+1)^2 square, as a row then a column max filter
    (separable: 2(2r+1) comparisons per pixel instead of (2r+1)^2)."""
    if radius <= 0:
        return masks.float()
    k = 2 * radius + 1
    rows = F.max_pool2d(masks[:, None].float(), (1, k), stride=1, padding=(0, radius))
    return F.max_pool2d(rows, (k, 1), stride=1, padding=(radius, 0))[:, 0]


def holes_and_weights(regions: torch.Tensor, dilation: int = HOLE_DILATION) -> tuple[torch.Tensor, torch.Tensor]:
    """(hole (B, H, W) {0, 1}, blend weight (B, H, W) in [0, 1]) of edit regions (B, H, W).

    hole = region dilated by ``dilation``; weight = 1 on the region dilated by ``dilation // 2``,
    box-blurred by a (2 * (dilation // 2) + 1)-wide window, so it falls to 0 inside the hole and is
    exactly 0 outside it (the blur cannot reach past the hole: the inner region plus the blur's
    half-width is the hole).
    """
    half = dilation // 2
    hole = dilate(regions, dilation)
    inner = dilate(regions, half)
    k = 2 * half + 1
    weight = F.avg_pool2d(inner[:, None], k, stride=1, padding=half, count_include_pad=False)[:, 0] if half else inner
    return hole, weight * hole


def inpaint_composite(generated: torch.Tensor, real: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The sample: ``real`` outside the hole, ``generated`` inside, feathered by ``weight`` (B, H, W)."""
    w = weight[:, None]
    return generated * w + real * (1 - w)


def masked_input(real: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
    """The photo with the hole set to white: ``img (1 - m) + m`` (EdgeConnect's masked image)."""
    m = hole[:, None]
    return real * (1 - m) + m


# --------------------------------------------------------------------------------------------------
# generator files


def save_inpainter(generator: InpaintGenerator, path: str | Path, *, image_size: tuple[int, int], training: dict[str, Any]) -> None:
    """Write the generator atomically; equal generators give equal files (serialised in memory, so
    the archive's folder name does not come from the temporary file name)."""
    payload = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "renderer": "inpaint",
        "config": dataclasses.asdict(generator.config),
        "image_size": [int(v) for v in image_size],
        "hole_dilation": HOLE_DILATION,
        "training": json.loads(json.dumps(training)),  # plain values only: loadable with weights_only
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()},
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    with atomic_path(path, suffix=".pt") as tmp:
        tmp.write_bytes(buffer.getvalue())


@dataclass(frozen=True)
class InpaintModel:
    """A loaded inpainting generator: the network, the size it was trained at, what identifies it."""

    #: it re-renders the edit region only; the rest of the sample is the real photo
    repaints_whole_image: ClassVar[bool] = False
    renderer_name: ClassVar[str] = "inpaint"  # the --renderer it renders for (recorded in every sample)

    generator: InpaintGenerator
    image_size: tuple[int, int]
    hole_dilation: int
    path: Path
    sha256: str
    training: dict[str, Any]

    @property
    def window(self) -> int:
        """The side of the square crops the generator was trained on (0: whole images): it renders
        the same size of window around each hole (:func:`render_window`)."""
        config = self.training.get("config") if isinstance(self.training, dict) else None  # the file's record: untrusted
        crop = config.get("crop", 0) if isinstance(config, dict) else 0
        valid = isinstance(crop, int) and not isinstance(crop, bool) and crop > 0 and crop % self.generator.config.size_multiple == 0
        return crop if valid else 0


def read_inpainter_file(path: str | Path, hint: str) -> dict[str, Any]:
    """The validated contents of an inpainting generator file; ``hint`` says how to get one."""
    payload = generator_file_payload(path, hint)
    if payload.get("format") != FORMAT:
        raise SynthgenError(
            f"{path}: a full-image (pix2pixHD, --renderer full) generator file, not an inpainting one; "
            f"use --renderer full with it, or {hint}"
        )
    if payload.get("version") != FORMAT_VERSION:
        raise SynthgenError(f"{path}: inpainting generator file version {payload.get('version')!r}; this synthgen reads {FORMAT_VERSION}")
    # types and bounds of everything besides the weights (image size, hole dilation): generator/records.py
    check_record(payload, "inpainting generator file", path)
    return payload


def load_inpainter(path: str | Path, device: str | torch.device = "cpu", *, image_size: tuple[int, int] | None = None,
                   hint: str = "") -> InpaintModel:
    """The inpainting generator in ``path`` on ``device``; with ``image_size``, refuse another size."""
    path = Path(path)
    payload = read_inpainter_file(path, hint)
    trained_at = (int(payload["image_size"][0]), int(payload["image_size"][1]))
    if image_size is not None and trained_at != tuple(image_size):
        raise SynthgenError(
            f"{path}: inpainting generator trained at {trained_at[0]}x{trained_at[1]}, this build renders at "
            f"{image_size[0]}x{image_size[1]}; train one at the build's --image-size, or {hint}"
        )
    # files written before the upsampling option have EdgeConnect's transposed convolutions
    config = config_from_dict(InpaintConfig, {"upsampling": "transpose", **payload["config"]}, str(path))
    with torch.device("meta"):
        generator = InpaintGenerator(config)
    try:
        generator.load_state_dict(payload["state_dict"], assign=True)
    except RuntimeError as e:
        raise SynthgenError(f"{path}: weights do not match the generator config ({str(e).splitlines()[0]})") from None
    return InpaintModel(generator.to(device).eval(), trained_at, payload.get("hole_dilation", HOLE_DILATION),
                        path, sha256_file(path), payload.get("training") or {})


def render_window(hole: torch.Tensor, side: int, multiple: int) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the window in which the generator renders ``hole`` (H, W).

    A generator trained on ``side`` x ``side`` crops around holes renders such a window around the
    hole: its InstanceNorm layers then normalise over the same extent of photo and hole as in
    training (over the whole image the white hole is a smaller share of the statistics, and the
    rendered colours drift), and it computes a crop instead of the image. The window is ``side``
    (clipped to the image) or, for a larger hole, the hole's extent rounded up to ``multiple``; it
    lies over the hole's bounding box, shifted inside the image, so it always holds the whole hole.
    Its size depends on the hole alone, so a sample's pixels do not depend on its batch.
    """
    height, width = hole.shape
    rows, cols = torch.nonzero(hole.any(1)).flatten(), torch.nonzero(hole.any(0)).flatten()
    if len(rows) == 0:  # nothing to render: any window will do
        rows, cols = torch.tensor([height // 2]), torch.tensor([width // 2])
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    round_up = lambda n: -(-n // multiple) * multiple  # noqa: E731
    h, w = min(height, max(side, round_up(y1 - y0))), min(width, max(side, round_up(x1 - x0)))
    top = min(max(y0 - (h - (y1 - y0)) // 2, 0), height - h)
    left = min(max(x0 - (w - (x1 - x0)) // 2, 0), width - w)
    return top, left, h, w


def inpaint_tensor(model: InpaintModel, images: torch.Tensor, edges: torch.Tensor, regions: torch.Tensor,
                   dilation: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(composite (B, 3, H, W) in [0, 1], hole (B, H, W)) for real images (B, 3, H, W), the edge maps
    to render (B, 1, H, W, edited inside the regions) and the edit regions (B, H, W), on the
    generator's device; bf16 autocast on CUDA. Each sample depends on its own inputs only.

    A generator trained on crops renders a window of the crop's size around each hole
    (:func:`render_window`; samples with equal window sizes share a forward pass), one trained on
    whole images the whole image. ``dilation``: how far the hole reaches beyond the regions (default:
    the generator's own, ``model.hole_dilation``; the real-pixel renderer renders a narrower band)."""
    device = next(model.generator.parameters()).device
    images, edges, regions = images.to(device, torch.float32), edges.to(device, torch.float32), regions.to(device, torch.float32)
    hole, weight = holes_and_weights(regions, model.hole_dilation if dilation is None else dilation)
    masked = masked_input(images, hole)
    if model.window:
        windows = [render_window(h, model.window, model.generator.config.size_multiple) for h in hole]
    else:
        windows = [(0, 0, *images.shape[-2:])] * len(images)
    cuts = [(slice(top, top + h), slice(left, left + w)) for top, left, h, w in windows]
    generated = images.clone()  # outside the holes the weight is 0: these pixels are never used
    for size in dict.fromkeys((h, w) for _, _, h, w in windows):  # one forward pass per window size
        members = [b for b, window in enumerate(windows) if window[2:] == size]

        def crop(x: torch.Tensor) -> torch.Tensor:
            return torch.stack([x[b][(..., *cuts[b])] for b in members])

        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = model.generator(crop(masked), crop(edges), crop(hole[:, None])).float()
        for b, rendered in zip(members, out):
            generated[b][(..., *cuts[b])] = rendered
    return inpaint_composite(generated.clamp(0, 1), images, weight), hole
