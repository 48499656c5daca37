"""The renderers of the LogicAL strategies: one table, asked by everything that depends on the renderer.

- ``real`` (default): real pixels inside the edit (the other image's for replace and merge, the photo's own
  texture for remove), the inpainting generator on a band around the seam only (:mod:`.real_pixels`);
  it runs the inpainting renderer's generator files (and its automatic training).
- ``inpaint``: edge-guided inpainting of the edit region inside the real photo
  (:mod:`.inpaint`); trainable on a CPU, and a build trains and caches one when given no file.
- ``full``: LogicAL's own configuration, the pix2pixHD/DeepSIM generator that renders the whole photo
  from its edge map (:mod:`.e2i`); a GPU's job, trained with ``synthgen train-e2i --renderer full``.

Each is a :class:`Renderer` in :data:`RENDERERS`: how its generator files are tagged, checked and
loaded, what an error tells the user, whether a build trains one itself, its training presets and
what a sample costs (the dry run's cost model). The CLI, the config check, the plan, the automatic
generator and the cost model ask :func:`get_renderer` instead of comparing names, so a new renderer
is one entry here (plus its network module). The strategy asks the loaded model itself
(``repaints_whole_image`` and ``renderer_name``, attributes of :class:`.inpaint.InpaintModel`,
:class:`.real_pixels.RealPixelModel` and :class:`.e2i.E2IModel`).

A generator file says which renderer it is for (its ``format`` tag); a file of another renderer, or
not a generator at all, is a one-line error. This module imports no torch at import time (the CLI
lists the renderers' names from it).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SynthgenError
from .generator_file import E2I_FORMAT, FULL_HINT, INPAINT_FORMAT, INPAINT_HINT

@dataclass(frozen=True)
class RenderCost:
    """What the cost model needs to know of a build's renderer before rendering (see :mod:`generator.cost_model`).

    network: the cost table's network name of one forward pass (``e2i_forward:<network>``).
    steps, crop: training steps and crop side of the generator the build trains first (0: none).
    window: side of the square window rendered around each hole (0: the whole image).
    """

    network: str = ""
    steps: int = 0
    crop: int = 0
    window: int = 0


@dataclass(frozen=True)
class Renderer:
    """One ``--renderer``: everything outside its network module that depends on which one a build uses."""

    name: str
    #: ``format`` tag of its generator files (models/generator_file.py)
    file_format: str
    #: ``--renderer`` help text
    summary: str
    #: its row's role in the manifest's artifacts
    role: str
    #: what an error about a missing or unusable generator file tells the user to do
    hint: str
    #: a build given no ``--e2i`` trains and caches a generator itself (training/auto.py)
    trains_automatically: bool
    #: the renderer whose generator this one runs: the automatic generator's cache key and ``train-e2i``
    #: name it, so two renderers of one generator share its files and its training
    generator: str
    #: ``synthgen train-e2i --network`` presets of this renderer (the first is the default)
    network_presets: tuple[str, ...]
    #: checks a generator file against the build's image size (refuses, or warns), after its tag matched
    check_size: Callable[[Path, tuple[int, int]], None]
    #: loads a generator file for synthesis on a device: (path, device, image_size) -> model
    load: Callable[[Path, Any, tuple[int, int]], Any]
    #: what the cost model needs before rendering: (config, the training preset of the generator the
    #: build trains first or None: training/auto.py's training_preset) -> RenderCost
    cost_inputs: Callable[[Any, Any], RenderCost]
    #: seconds of one LogicAL sample: (costs per table entry, RenderCost, share of edits, scale of the
    #: window's pixels and of the image's pixels to the table's size) -> seconds
    sample_seconds: Callable[[Mapping[str, float], RenderCost, float, float, float], float]


# --------------------------------------------------------------------------------------------------
# inpaint


def _inpaint_check_size(path: Path, image_size: tuple[int, int]) -> None:
    # refused: its renders would not match its training
    from .inpaint import read_inpainter_file

    trained_at = tuple(int(v) for v in read_inpainter_file(path, INPAINT_HINT)["image_size"])
    if trained_at != tuple(image_size):
        raise SynthgenError(
            f"--e2i {path}: inpainting generator trained at {trained_at[0]}x{trained_at[1]}, this build renders at "
            f"{image_size[0]}x{image_size[1]}; leave out --e2i to train one at this size, or pass --image-size "
            f"{trained_at[0]}x{trained_at[1]}"
        )


def _inpaint_load(path: Path, device, image_size: tuple[int, int]):
    from .inpaint import load_inpainter

    return load_inpainter(path, device, image_size=image_size, hint=INPAINT_HINT)


def _real_load(path: Path, device, image_size: tuple[int, int]):
    from .real_pixels import RealPixelModel

    return RealPixelModel(_inpaint_load(path, device, image_size))


def _inpaint_cost_inputs(config, preset) -> RenderCost:
    if preset is not None:  # it renders a window of its training crop around each hole
        return RenderCost(steps=preset.steps, crop=preset.crop, window=preset.crop)
    if config.e2i:
        from .inpaint import load_inpainter

        return RenderCost(window=load_inpainter(config.e2i).window)
    return RenderCost()


def _inpaint_sample_seconds(costs, cost: RenderCost, edits: float, window_scale: float, pixel_scale: float) -> float:
    # an edit renders twice, an identity sample once, each a window around its hole; an edit takes
    # three SSIM maps of the whole image, an identity sample one (cost_model's docstring)
    return (1 + edits) * costs["inpaint_forward"] * window_scale + (1 + 2 * edits) * costs["ssim_mask"] * pixel_scale


# --------------------------------------------------------------------------------------------------
# full


def _full_check_size(path: Path, image_size: tuple[int, int]) -> None:
    # Fully convolutional, so another size runs; but its renders at another scale are off its training
    # distribution, and the SSIM masks then mark rendering errors, not the edits: a warning.
    from .e2i import check_image_size, generator_config, generator_training_size

    check_image_size(generator_config(path), *image_size, where=f"--e2i {path}")
    trained_at = generator_training_size(path)
    if trained_at is not None and trained_at != tuple(image_size):
        warnings.warn(
            f"--e2i {path}: trained at {trained_at[0]}x{trained_at[1]}, this build renders at "
            f"{image_size[0]}x{image_size[1]}; train it at the build's --image-size for faithful images and masks"
        )


def _full_load(path: Path, device, image_size: tuple[int, int]):
    from .e2i import load_e2i_model

    return load_e2i_model(path, device)


def _full_cost_inputs(config, preset) -> RenderCost:
    if config.e2i:
        from .e2i import GeneratorConfig, generator_config

        return RenderCost(network="global" if generator_config(config.e2i) == GeneratorConfig() else "small")
    return RenderCost(network="small")


def _full_sample_seconds(costs, cost: RenderCost, edits: float, window_scale: float, pixel_scale: float) -> float:
    # two whole-image renders (normal and edited edges) and the SSIM mask
    return (2 * costs[f"e2i_forward:{cost.network}"] + costs["ssim_mask"]) * pixel_scale


# --------------------------------------------------------------------------------------------------
# the table


RENDERERS: dict[str, Renderer] = {
    r.name: r
    for r in (
        Renderer(
            name="real", file_format=INPAINT_FORMAT,
            summary="real pixels in the edit (the other image's, or the photo's own texture for remove), the "
                    "inpainting generator on the seam band only (trained on first use)",
            role="inpainting generator (edge-guided, seam band only)", hint=INPAINT_HINT, trains_automatically=True,
            generator="inpaint", network_presets=("cpu", "demo", "edgeconnect"), check_size=_inpaint_check_size,
            load=_real_load, cost_inputs=_inpaint_cost_inputs, sample_seconds=_inpaint_sample_seconds,
        ),
        Renderer(
            name="inpaint", file_format=INPAINT_FORMAT,
            summary="re-renders only the edit region of the real photo (edge-guided inpainting; trained on first use)",
            role="inpainting generator (edge-guided)", hint=INPAINT_HINT, trains_automatically=True,
            generator="inpaint", network_presets=("cpu", "demo", "edgeconnect"), check_size=_inpaint_check_size,
            load=_inpaint_load, cost_inputs=_inpaint_cost_inputs, sample_seconds=_inpaint_sample_seconds,
        ),
        Renderer(
            name="full", file_format=E2I_FORMAT,
            summary="LogicAL's pix2pixHD rendering of the whole image from its edge map (needs --e2i)",
            role="edge-to-image generator (full image)", hint=FULL_HINT, trains_automatically=False, generator="full",
            network_presets=("full", "small", "tiny"), check_size=_full_check_size, load=_full_load,
            cost_inputs=_full_cost_inputs, sample_seconds=_full_sample_seconds,
        ),
    )
}
#: real pixels where they exist: sharper edits and fewer redraws than inpaint (issue 27's measurements,
#: README "LogicAL renderers")
DEFAULT_RENDERER = "real"


def get_renderer(name: str) -> Renderer:
    """The renderer called ``name``; an unknown name is a one-line error listing the known ones."""
    if name not in RENDERERS:
        raise SynthgenError(f"--renderer: must be one of {', '.join(RENDERERS)}, got '{name}'")
    return RENDERERS[name]


def renderer_of_file(path: str | Path, hint: str) -> Renderer:
    """The renderer a generator file belongs to (its format tag); not a generator file: one-line error."""
    from .generator_file import generator_file_payload

    tag = generator_file_payload(path, hint)["format"]
    return next(r for r in RENDERERS.values() if r.file_format == tag and r.generator == r.name)


def check_generator_file(path: str | Path, renderer: str, image_size: tuple[int, int]) -> str:
    """Check that ``path`` is a generator for ``renderer`` usable at ``image_size``; return its sha256.

    Refused with one line: a file that is no generator, a generator of another renderer, or one its
    renderer cannot use at ``image_size`` (:attr:`Renderer.check_size`).
    """
    from ..imageio import sha256_file

    path, wanted = Path(path), get_renderer(renderer)
    found = renderer_of_file(path, wanted.hint)
    if found.name != wanted.generator:
        raise SynthgenError(
            f"--e2i {path}: a generator for --renderer {found.name}, but this build uses --renderer {wanted.name}; "
            f"pass --renderer {found.name}, or a {wanted.generator} generator"
        )
    wanted.check_size(path, image_size)
    return sha256_file(path)


def load_renderer_model(path: str | Path, renderer: str, device, image_size: tuple[int, int]):
    """The generator a LogicAL build renders with (an :class:`.inpaint.InpaintModel`, a
    :class:`.real_pixels.RealPixelModel` or an :class:`.e2i.E2IModel`), on ``device``."""
    return get_renderer(renderer).load(Path(path), device, image_size)
