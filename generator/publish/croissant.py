"""``croissant.json``: MLCommons Croissant 1.0 metadata with the Responsible-AI (RAI 1.0) fields.

Written with the ``mlcroissant`` package itself (so what it writes is what it reads): the distribution is
the publication folder with a FileSet of its Parquet files; one record set ``samples`` whose fields read
the Parquet columns, the images through the ``bytes`` member of their struct. ``mlcroissant validate
--jsonld croissant.json`` accepts it, and ``mlcroissant.Dataset(...).records("samples")`` yields the rows.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from .bench import CROISSANT_NAMESPACE, Bench, croissant_property
from .card import method_citations, pretty_name, rebuild_command
from .licence import LICENCES

RECORD_SET = "samples"
CROISSANT_1_0 = "http://mlcommons.org/croissant/1.0"
RAI_1_0 = "http://mlcommons.org/croissant/RAI/1.0"


def _published_date() -> dt.datetime:
    """Today (UTC), or $SOURCE_DATE_EPOCH's date (the reproducible-builds convention) so a rerun is byte-identical."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    moment = dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc) if epoch else dt.datetime.now(dt.timezone.utc)
    return dt.datetime(moment.year, moment.month, moment.day)


def croissant_metadata(manifest: dict, *, licence: str, source_licence: str, with_normals: bool,
                       counts: dict[str, dict[str, int]], url: str | None = None, bench: Bench | None = None) -> dict[str, Any]:
    """The Croissant JSON-LD document (a dict) of a publication; ``url``: where it is published, if known.

    Besides Croissant's and RAI's properties it carries ``synthgen:bench`` (namespace
    :data:`~generator.publish.bench.CROISSANT_NAMESPACE`, declared in ``@context``): the usefulness
    measurement of `synthgen bench` (method, budget, seeds, test split, mean and sd per metric), or
    ``{"run": false}`` when none was run (see generator/publish/bench.py)."""
    import mlcroissant as mlc

    parquet = "parquet-files"
    distribution = [
        # The folder itself (the Hub's convention: a "repo" FileObject holding the data files).
        mlc.FileObject(id="repo", name="repo", description="The publication folder (or its dataset repository).",
                       content_url=".", encoding_formats=[mlc.EncodingFormat.GIT], sha256="main"),
        mlc.FileSet(id=parquet, name=parquet, description="One row per sample.", contained_in=["repo"],
                    encoding_formats=[mlc.EncodingFormat.PARQUET], includes=["data/*.parquet"]),
    ]

    def column(name: str, data_type, description: str, image: bool = False) -> "mlc.Field":
        source = mlc.Source(file_set=parquet, extract=mlc.Extract(column=name),
                            transforms=[mlc.Transform(json_path="bytes")] if image else [])
        return mlc.Field(id=f"{RECORD_SET}/{name}", name=name, description=description, data_types=[data_type],
                         source=source)

    text, integer = mlc.DataType.TEXT, mlc.DataType.INTEGER
    fields = [
        column("image", mlc.DataType.IMAGE_OBJECT, "The synthesized RGB image (PNG).", image=True),
        column("mask", mlc.DataType.IMAGE_OBJECT, "Ground truth: 0 normal, 255 anomalous pixel (PNG).", image=True),
    ]
    if with_normals:
        fields.append(column("normal", mlc.DataType.IMAGE_OBJECT, "The clean image the sample was made from.", True))
    fields += [
        column("label", integer, "1 anomalous (the mask has an anomalous pixel), 0 normal."),
        column("strategy", text, "The synthesis strategy that made the sample."),
        column("category", text, "Object category of the source dataset."),
        column("source_dataset", text, "Name of the source dataset."),
        column("source_image_id", text, "Id of the source image inside its dataset."),
        column("source_sha256", text, "sha256 of the source image file."),
        column("source_license", text, "Licence of the source image."),
        column("index", integer, "Position of the sample in the build plan."),
        column("seed", integer, "Per-sample seed: fixes every random draw."),
        column("params", text, "JSON object: every random choice and option of the sample."),
        column("synthgen_version", text, "synthgen version that made the sample."),
    ]
    ds = manifest["dataset"]
    tools = [f"synthgen {manifest['synthgen_version']} strategies: {', '.join(manifest['strategies'])}"]
    tools += [f"{a.get('role') or a['name']}: {a['name']} (sha256 {a['sha256']})" for a in manifest.get("artifacts", [])]
    count_text = "; ".join(f"{name}: {c['anomalous']} anomalous, {c['normal']} normal" for name, c in sorted(counts.items()))
    metadata = mlc.Metadata(
        name=pretty_name(manifest),
        description=(f"{manifest['totals']['samples']} synthetic anomaly samples with pixel masks made by synthgen "
                     f"from the normal {ds['split']} images of {ds['name']} / {ds['category']} ({count_text})."),
        conforms_to=[CROISSANT_1_0, RAI_1_0],
        cite_as="; ".join(method_citations(manifest)),
        license=[LICENCES[licence].url],
        url=url,
        version="1.0.0",
        date_published=_published_date(),
        keywords=["anomaly detection", "synthetic data", "industrial inspection", *manifest["strategies"]],
        distribution=distribution,
        record_sets=[mlc.RecordSet(id=RECORD_SET, name=RECORD_SET, description="One record per sample.", fields=fields)],
        data_collection=(f"Synthetic: every sample was generated by machine from a normal source image of "
                         f"{ds['name']} / {ds['category']} (licence {source_licence}) with the recorded seed. "
                         f"Rebuild: {rebuild_command(manifest)} (config hash {manifest['config_hash']})."),
        data_collection_type=["Synthetic data"],
        data_annotation_protocol=["Masks and labels are produced by the same program that paints the anomaly: "
                                  "the mask marks exactly the pixels the strategy changed (see params)."],
        machine_annotation_tools=tools,
        data_limitations=[
            "Synthetic anomalies are not real defects; a detector trained on them must be evaluated on real "
            "test images.",
            "Normal rows are (near) copies of the source dataset's training images: do not use them as normal "
            "test images of that dataset.",
            f"Images are resized to {manifest['config']['image_size'][0]}x{manifest['config']['image_size'][1]}.",
        ],
        data_use_cases=["Training anomaly detection and localization models; comparing anomaly synthesis methods."],
        personal_sensitive_information=["None: industrial product images."],
        data_release_maintenance_plan="Immutable: a new build has a new config hash and is published anew.",
    )
    document = metadata.to_json()
    document["@context"]["synthgen"] = CROISSANT_NAMESPACE
    document["synthgen:bench"] = croissant_property(bench)
    return document
