"""Pictures people look at: mask overlays, label-map colouring, and contact sheets.

A contact sheet is a grid of tiles with a caption over each row and each column, written as PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

CAPTION_H = 18
PAD = 4
BACKGROUND = (32, 32, 32)
TEXT = (235, 235, 235)


def overlay_mask(image: np.ndarray, mask: np.ndarray, color=(255, 40, 40), alpha: float = 0.45) -> np.ndarray:
    """Tint the masked pixels of an RGB uint8 image and draw the mask outline."""
    out = image.astype(np.float32).copy()
    on = mask > 0
    out[on] = (1 - alpha) * out[on] + alpha * np.asarray(color, np.float32)
    out = out.round().astype(np.uint8)
    contours, _ = cv2.findContours(on.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, color, 1)
    return out


def colorize_labels(labels: np.ndarray) -> np.ndarray:
    """Distinct colours for the values of a label map (0 stays black); stable across calls."""
    rng = np.random.default_rng(12345)
    palette = rng.integers(60, 256, size=(int(labels.max()) + 1, 3), dtype=np.uint8)
    palette[0] = 0
    return palette[labels]


def gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=2) if gray.ndim == 2 else gray


def _font(size: int = 12):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def contact_sheet(
    rows: Sequence[Sequence[np.ndarray]],
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    tile: int = 160,
) -> np.ndarray:
    """Arrange RGB (or grey) uint8 tiles in a grid; each tile is scaled to ``tile`` pixels high."""
    rows = [[gray_to_rgb(t) for t in r] for r in rows]
    scaled = [[cv2.resize(t, (max(1, round(t.shape[1] * tile / t.shape[0])), tile), interpolation=cv2.INTER_AREA)
               for t in r] for r in rows]
    n_cols = max(len(r) for r in scaled)
    col_w = [max((r[c].shape[1] for r in scaled if c < len(r)), default=tile) for c in range(n_cols)]
    top = CAPTION_H if col_labels else 0
    row_h = tile + (CAPTION_H if row_labels else 0) + PAD
    width = sum(col_w) + PAD * (n_cols + 1)
    height = top + row_h * len(scaled) + PAD
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = _font()
    if col_labels:
        x = PAD
        for c, text in enumerate(col_labels[:n_cols]):
            draw.text((x, 3), str(text), fill=TEXT, font=font)
            x += col_w[c] + PAD
    y = top + PAD
    for r, tiles in enumerate(scaled):
        if row_labels:
            draw.text((PAD, y), str(row_labels[r]), fill=TEXT, font=font)
            y += CAPTION_H
        x = PAD
        for c, t in enumerate(tiles):
            sheet.paste(Image.fromarray(t), (x, y))
            x += col_w[c] + PAD
        y += tile + PAD
    return np.asarray(sheet)


def save_sheet(path: str | Path, sheet: np.ndarray) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(path)
    return path
