"""The renderers of the LogicAL strategies, and which one a generator file belongs to.

- ``inpaint``: edge-guided inpainting of the edit region inside the real photo
  (:mod:`.inpaint`); trainable on a CPU, and a build trains and caches one when given no file.
- ``real`` (default): real pixels inside the edit (the other image's for replace and merge, the photo's own
  texture for remove), the inpainting generator on a band around the seam only (:mod:`.real_pixels`);
  it uses the inpainting renderer's generator files (and its auto-training).
- ``full``: LogicAL's own configuration, the pix2pixHD/DeepSIM generator that renders the whole photo
  from its edge map (:mod:`.e2i`); a GPU's job, trained with ``synthgen train-e2i --renderer full``.

A generator file says which renderer it is for (its ``format`` tag); a file of the other renderer,
or not a generator at all, is a one-line error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import SynthgenError
from .generator_file import FORMATS, generator_file_payload

RENDERERS = ("inpaint", "full", "real")
#: which generator (the renderer named by its file's format tag) each renderer runs
GENERATOR_OF = {"inpaint": "inpaint", "full": "full", "real": "inpaint"}

#: what every "no usable inpainting generator" error tells the user to do
INPAINT_HINT = (
    "leave out --e2i and the build trains one on the category's normal images (cached), or train one with "
    "`synthgen train-e2i --renderer inpaint ... --out DIR` and pass DIR/inpaint_generator.pt"
)


def _hint(renderer: str) -> str:
    from .e2i import TRAIN_HINT

    return INPAINT_HINT if GENERATOR_OF[renderer] == "inpaint" else TRAIN_HINT


def check_generator_file(path: str | Path, renderer: str, image_size: tuple[int, int]) -> str:
    """Check that ``path`` is a generator for ``renderer`` usable at ``image_size``; return its sha256.

    Refused with one line: a file that is no generator, a generator of the other renderer, an
    inpainting generator trained at another size (its renders would not match its training). A
    full-image generator at another size only warns, as before (it runs, fully convolutional).
    """
    import warnings

    from ..imageio import sha256_file

    path = Path(path)
    found = FORMATS[generator_file_payload(path, _hint(renderer))["format"]]
    if found != GENERATOR_OF[renderer]:
        raise SynthgenError(
            f"--e2i {path}: a generator for --renderer {found}, but this build uses --renderer {renderer}; "
            f"pass --renderer {found}, or a {GENERATOR_OF[renderer]} generator"
        )
    if found == "inpaint":
        from .inpaint import read_inpainter_file

        trained_at = tuple(int(v) for v in read_inpainter_file(path, INPAINT_HINT)["image_size"])
        if trained_at != tuple(image_size):
            raise SynthgenError(
                f"--e2i {path}: inpainting generator trained at {trained_at[0]}x{trained_at[1]}, this build renders at "
                f"{image_size[0]}x{image_size[1]}; leave out --e2i to train one at this size, or pass --image-size "
                f"{trained_at[0]}x{trained_at[1]}"
            )
    else:
        from .e2i import check_image_size, generator_config, generator_training_size

        check_image_size(generator_config(path), *image_size, where=f"--e2i {path}")
        trained_at = generator_training_size(path)
        if trained_at is not None and trained_at != tuple(image_size):
            # Fully convolutional, so it runs; but its renders at another scale are off its training
            # distribution, and the SSIM masks then mark rendering errors, not the edits.
            warnings.warn(
                f"--e2i {path}: trained at {trained_at[0]}x{trained_at[1]}, this build renders at "
                f"{image_size[0]}x{image_size[1]}; train it at the build's --image-size for faithful images and masks"
            )
    return sha256_file(path)


def load_renderer_model(path: str | Path, renderer: str, device, image_size: tuple[int, int]):
    """The generator a LogicAL build renders with: an :class:`.inpaint.InpaintModel`, a
    :class:`.real_pixels.RealPixelModel` or an :class:`.e2i.E2IModel`, on ``device``."""
    if GENERATOR_OF[renderer] == "inpaint":
        from .inpaint import load_inpainter

        inpainter = load_inpainter(path, device, image_size=image_size, hint=INPAINT_HINT)
        if renderer == "real":
            from .real_pixels import RealPixelModel

            return RealPixelModel(inpainter)
        return inpainter
    from .e2i import load_e2i_model

    return load_e2i_model(path, device)
