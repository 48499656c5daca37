"""MVTec AD reader, and the MVTec-AD-style layout that MPDD, MAD-Sim and user folders share.

Layout (MVTec AD; MPDD and MAD-Sim use the same one)::

    <root>/<category>/train/good/*.png
    <root>/<category>/test/good/*.png
    <root>/<category>/test/<defect>/*.png
    <root>/<category>/ground_truth/<defect>/<stem>_mask.png     one binary mask per test anomaly

A test anomaly without a mask file is kept with ``masks=()`` (some redistributed copies, like the
shared bottle subset, carry no ground truth). Besides ``<stem>_mask.png`` the plain ``<stem>.png``
is accepted, as anomalib's MVTec-style readers do, for copies renamed by other tools.
"""

from __future__ import annotations

from pathlib import Path

from ._layout import NORMAL, category_dir, finish_index, image_id, scan_splits
from .base import DatasetIndex, MaskRef, SourceImage, register_reader

# Masks of the MVTec AD layout are anomalous wherever a pixel is non-zero (``MaskRef.pixel_value``
# None): MVTec AD and MPDD write 255, but MVTec 3D-AD ships 0/254 and re-saved copies may hold other
# values, and a reader that compared with 255 read those masks as empty without a word.


def find_ad_mask(gt_defect_dir: Path, stem: str) -> Path | None:
    """The ground-truth file of image ``stem``: ``<stem>_mask.png``, else ``<stem>.png``, else None."""
    for name in (f"{stem}_mask.png", f"{stem}.png"):
        if (gt_defect_dir / name).is_file():
            return gt_defect_dir / name
    return None


def read_ad_layout(
    dataset: str, root: str | Path, category: str, *, extra: dict | None = None
) -> DatasetIndex:
    """Index one category of an MVTec-AD-style folder (any non-zero mask pixel is anomalous)."""
    cat = category_dir(root, category)
    items = []
    for split, defect, path in scan_splits(cat, dataset):
        masks: tuple[MaskRef, ...] = ()
        if defect != NORMAL:
            mask = find_ad_mask(cat / "ground_truth" / defect, path.stem)
            masks = (MaskRef(mask),) if mask is not None else ()
        label = 0 if defect == NORMAL else 1
        items.append(SourceImage(image_id(split, defect, path), path, split, defect, label, masks))
    return finish_index(dataset, category, cat.parent, items, extra=extra)


@register_reader("mvtec_ad")
def read_mvtec_ad(root: Path, category: str) -> DatasetIndex:
    """MVTec AD (Bergmann et al., CVPR 2019): 15 categories, binary masks (255; any non-zero pixel counts)."""
    return read_ad_layout("mvtec_ad", root, category)
