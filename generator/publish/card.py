"""The dataset card (README.md) of a publication: the YAML header hubs read and a datasheet body.

Header keys are those the Hugging Face Hub reads (license, pretty_name, task_categories, tags,
annotations_creators, source_datasets, size_categories, configs/data_files). The body follows the
sections of "Datasheets for Datasets" (Gebru et al., CACM 2021): motivation, composition, collection
process (how synthgen made it: the command that rebuilds it, the config hash), uses, distribution,
maintenance; then the counts per strategy, the contact sheet and the citations of the methods used.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

import yaml

from .bench import Bench, card_section
from .licence import LICENCES, SourceLicence

#: What to cite for each strategy (the method's paper); the LogicAL family shares one entry.
_CUTPASTE = ("Li, Sohn, Yoon, Pfister. CutPaste: Self-Supervised Learning for Anomaly Detection and "
             "Localization. CVPR 2021.")
_FRAMEWORK = "Lin, Yan. A Comprehensive Augmentation Framework for Anomaly Detection. AAAI 2024."
_LOGICAL = ("Zhao. LogicAL: Towards logical anomaly synthesis for unsupervised anomaly localization. "
            "CVPR Workshops (VAND) 2024.")
STRATEGY_CITATIONS = {
    "draem": ("Zavrtanik, Kristan, Skocaj. DRAEM - A discriminatively trained reconstruction embedding for "
              "surface anomaly detection. ICCV 2021."),
    "cutpaste": _CUTPASTE,
    "cutpaste-scar": _CUTPASTE,
    "transparent": _FRAMEWORK,
    "opaque": _FRAMEWORK,
    "ndaa": _FRAMEWORK,
    "rotation": _FRAMEWORK,
    "caf": _FRAMEWORK,
}
TOOL_CITATIONS = {
    "perlin": "Perlin. An image synthesizer. SIGGRAPH 1985.",
    "dtd": "Cimpoi, Maji, Kokkinos, Mohamed, Vedaldi. Describing Textures in the Wild. CVPR 2014.",
    "pidinet": "Su, Liu, Pietikainen et al. Pixel Difference Networks for Efficient Edge Detection. ICCV 2021.",
    "sam": "Kirillov et al. Segment Anything. ICCV 2023.",
}
DATASET_CITATIONS = {
    "mvtec_ad": ("Bergmann, Fauser, Sattlegger, Steger. MVTec AD - A Comprehensive Real-World Dataset for "
                 "Unsupervised Anomaly Detection. CVPR 2019."),
    "mvtec_loco": ("Bergmann, Batzner, Fauser, Sattlegger, Steger. Beyond Dents and Scratches: Logical Constraints "
                   "in Unsupervised Anomaly Detection and Localization. IJCV 2022."),
    "visa": ("Zou, Jeong, Pemula, Zhang, Dabeer. SPot-the-Difference Self-Supervised Pre-training for Anomaly "
             "Detection and Segmentation. ECCV 2022."),
}


# ------------------------------------------------------------------------ text from records, made inert
# Everything below that comes from a record (versions, names, paths, the source's attribution text) is
# untrusted: a newline, a markdown heading, a code fence or an HTML tag in it must not change the card's
# structure (a fake "## Licence" section). Values go in code spans, prose is escaped, and the rebuild
# command's fence is longer than any run of backticks inside it.

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~&])")


def _one_line(value: Any) -> str:
    return " ".join(str(value).split())


def code(value: Any) -> str:
    """``value`` as an inline code span on one line: rendered literally (no markdown, no HTML), whatever it holds."""
    text = _one_line(value)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    return f"{fence} {text} {fence}" if text.startswith("`") or text.endswith("`") or longest else f"{fence}{text}{fence}"


def cell(value: Any) -> str:
    """``value`` for a table cell: a code span whose pipes cannot end the cell."""
    return code(value).replace("|", "\\|")


def prose(value: Any) -> str:
    """``value`` as plain text on one line, every character markdown or HTML would read escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", _one_line(value))


def fenced(text: str) -> str:
    """``text`` in a fenced code block that no line of it can close."""
    longest = max((len(run) for run in re.findall(r"`{3,}", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{text}\n{fence}"


def method_citations(manifest: dict) -> list[str]:
    """The papers behind every strategy, texture source and model the build used (each once, in order)."""
    cites: list[str] = []
    for name in manifest["strategies"]:
        logical = name == "logical" or name.startswith(("semantic-", "arbitrary-"))
        cites.append(_LOGICAL if logical else STRATEGY_CITATIONS.get(name, ""))
    texture = (manifest.get("textures") or {}).get("source")
    if texture in ("perlin", "dtd") or "draem" in manifest["strategies"]:
        cites.append(TOOL_CITATIONS["perlin"])
    if texture == "dtd":
        cites.append(TOOL_CITATIONS["dtd"])
    for artifact in manifest.get("artifacts", []):
        for key in ("pidinet", "sam"):
            if key in str(artifact.get("name", "")).lower():
                cites.append(TOOL_CITATIONS[key])
    return list(dict.fromkeys(c for c in cites if c))


# config key -> the `synthgen build` option that sets it (None: not an option of its own)
_OPTION = {
    "dataset": "--dataset", "root": "--root", "category": "--category", "num_samples": "--num-samples",
    "seed": "--seed", "caf_table": "--caf-table", "samples_per_shard": "--samples-per-shard",
    "batch_size": "--batch-size", "device": "--device", "edge_model": "--edge-model", "regions": "--regions",
    "sam_model": "--sam-model", "sam_checkpoint": "--sam-checkpoint", "weights_dir": "--weights-dir", "e2i": "--e2i",
}


def rebuild_command(manifest: dict, out: str = "OUT") -> str:
    """The `synthgen build` command line that makes this build again (same config, so same config hash)."""
    config = manifest["config"]
    recipe = config.get("recipe")
    if recipe:  # the recipe fixes everything else; only the places are the user's
        args = ["synthgen", "build", "--recipe", f"{recipe['name']}-v{recipe['version']}", "--category", config["category"]]
        for key, option in (("root", "--root"), ("texture_root", "--textures"), ("weights_dir", "--weights-dir"), ("device", "--device")):
            if config.get(key) is not None:
                args += [option, str(config[key])]
        return " ".join(shlex.quote(a) for a in [*args, "--out", out])
    args = ["synthgen", "build", "--strategy", ",".join(config["strategies"])]
    for key, option in _OPTION.items():
        value = config.get(key)
        if value is not None:
            args += [option, str(value)]
    h, w = config["image_size"]
    args += ["--image-size", f"{h}x{w}"]
    if config.get("texture_source") == "dtd":
        args += ["--textures", str(config["texture_root"])]
    elif config.get("texture_source"):
        args += ["--textures", config["texture_source"]]
    for strategy, options in sorted((config.get("options") or {}).items()):
        for key, value in sorted(options.items()):
            args += ["--set", f"{strategy}.{key}={value}"]
    if config.get("compress_images"):
        args.append("--compress-images")
    args += ["--out", out]
    return " ".join(shlex.quote(a) for a in args)


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"


def pretty_name(manifest: dict) -> str:
    ds = manifest["dataset"]
    return f"synthgen {ds['name']} {ds['category']}: {', '.join(manifest['strategies'])}"


def dataset_card(manifest: dict, *, licence: str, source: SourceLicence, split: str, counts: dict[str, dict[str, int]],
                 with_normals: bool, sheet: str, parquet_files: list[str], bench: Bench | None = None) -> str:
    """The README.md text. ``counts``: strategy -> {"anomalous": a, "normal": n} as published."""
    ds = manifest["dataset"]
    config = manifest["config"]
    total = manifest["totals"]["samples"]
    header: dict[str, Any] = {
        "license": licence,
        "pretty_name": pretty_name(manifest),
        "task_categories": ["image-segmentation", "image-classification"],
        "tags": ["anomaly-detection", "synthetic", "industrial-inspection", "synthgen", *manifest["strategies"]],
        "annotations_creators": ["machine-generated"],
        "language_creators": ["machine-generated"],
        "source_datasets": [f"extended|{ds['name']}"] if ds["name"] != "demo" else ["original"],
        "size_categories": [_size_category(total)],
        "configs": [{"config_name": "default", "data_files": [{"split": split, "path": f"data/{split}-*.parquet"}]}],
    }
    h, w = config["image_size"]
    info = LICENCES[licence]
    source_info = LICENCES.get(source.id)
    rows = "\n".join(f"| {cell(name)} | {c['anomalous'] + c['normal']} | {c['anomalous']} | {c['normal']} |"
                     for name, c in sorted(counts.items()))
    tools = ", ".join(f"{prose(a.get('role') or a['name'])} ({code(a['name'])}, sha256 {code(a['sha256'][:12])}...)"
                      for a in manifest.get("artifacts", [])) or "none (the strategies use no pretrained model)"
    citations = "\n".join(f"- {c}" for c in method_citations(manifest))
    dataset_cite = DATASET_CITATIONS.get(ds["name"])
    attribution = prose((source.attribution or dataset_cite or f"the {ds['name']} dataset").rstrip(".") + ".")
    textures = manifest.get("textures") or {}
    texture_note = (f" Anomaly textures were taken from {len(textures.get('files', []))} images of a DTD-style folder "
                    f"(the Describable Textures Dataset's terms apply to those pixels)." if textures.get("source") == "dtd"
                    else "")
    columns = "`image`, `mask`" + (", `normal`" if with_normals else "")
    fingerprint = (manifest.get("environment") or {}).get("synthgen_code")  # absent in manifests before it
    code_note = f", synthgen code fingerprint {code(fingerprint[:12])} (the same code draws the same samples)" \
        if isinstance(fingerprint, str) else ""
    recipe = config.get("recipe")
    recipe_text = (f"It follows the recipe **{recipe['name']} v{recipe['version']}** "
                   f"(`manifests/recipes/{recipe['name']}-v{recipe['version']}.json` of synthgen, sha256 `{recipe['sha256']}`), "
                   "a versioned build definition that is the same for everyone. " if recipe else "")
    body = f"""
# {prose(pretty_name(manifest))}

{total} synthetic anomaly samples ({h}x{w} RGB) made by synthgen {code(manifest['synthgen_version'])}
from the normal {code(ds['split'])} images of **{code(ds['name'])} / {code(ds['category'])}**, each with a pixel mask (0 normal,
255 anomalous) and the exact recipe that made it.

![contact sheet]({sheet})

## Motivation
Training and benchmarking industrial anomaly detectors needs anomalous images that real production rarely
yields. This dataset holds synthetic anomalies made offline, once and reproducibly, so that methods can be
trained and compared on the same synthetic data instead of each drawing its own online.

## Composition
One row per sample ({len(parquet_files)} Parquet file(s) under `data/`, split {code(split)}). Image columns
({columns}) are PNG files (Hugging Face `Image` features: a struct of `bytes` and `path`). Other columns:
`label` (0 normal, 1 anomalous: the mask has an anomalous pixel), `strategy`, `category`, `source_dataset`,
`source_image_id` and `source_sha256` (the normal image the sample was made from), `source_license`,
`index` (position in the build plan), `seed` (fixes every random draw of the sample), `params` (JSON: every
random choice and option of the sample), `synthgen_version`.

| strategy | samples | anomalous | normal |
|---|---|---|---|
{rows}

Normal rows are samples a strategy keeps unchanged by design (DRAEM keeps half; a rotation sample is a
rotated normal) or whose every attempt gave an empty mask. Their images are (near) copies of the source
training images: do **not** use them as normal *test* images of {code(ds['name'])} / {code(ds['category'])}.

## Collection process
Made by machine, with no human annotation: each sample is a pure function of its source image, the
build's config and its seed. {recipe_text}Rebuild it bit for bit with

{fenced(rebuild_command(manifest))}

config hash {code(manifest['config_hash'])}, seed {manifest['seed']}{code_note}. `manifest.json` records the full
config, every source image's sha256, the models used and the sha256 of every file of this folder
(`synthgen verify .` checks them). Models used: {tools}.

## Usefulness (measured on real test images)
{card_section(bench)}

## Uses
Training and evaluating anomaly detection and localization models on synthetic anomalies; comparing
anomaly synthesis methods. Synthetic anomalies are not real defects: report results on real test images.

## Distribution
Licence: **{info.name}** ({info.url}). The source images are {source_info.name if source_info else code(source.id)}
(stated in {code(source.found_in)}); this dataset is an adaptation of them: {attribution}
Modifications: the source images were resized to {h}x{w} and synthetic anomalies were painted into them by
the strategies listed above; masks, labels and parameters were generated by synthgen.{texture_note}

## Maintenance
The folder is immutable: a new build gets a new config hash. Report problems to the publisher of this
copy; the recipe and manifest let anyone rebuild and check it.

## Citations
Methods used:
{citations}

Source dataset: {dataset_cite or attribution}

Datasheet sections: Gebru et al. Datasheets for Datasets. Communications of the ACM 64(12), 2021.
"""
    return "---\n" + yaml.safe_dump(header, sort_keys=False, allow_unicode=True) + "---\n" + body
