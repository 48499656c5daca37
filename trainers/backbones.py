"""The trainers' frozen ImageNet backbones: they live in :mod:`generator.models.backbones`, because the
generator's inpainting renderer trains with EfficientNet-Lite0 features too (generator/ never imports
trainers/). Re-exported here so trainer code keeps importing ``from ..backbones import Backbone``."""

from synthgen.generator.models.backbones import (  # noqa: F401
    ARCHITECTURES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    RANDOM_INIT,
    RANDOM_INIT_SEED,
    TF_LITE_MEAN,
    TF_LITE_STD,
    Architecture,
    Backbone,
    LayerInfo,
    architecture,
    build_model,
    load_checkpoint,
)
