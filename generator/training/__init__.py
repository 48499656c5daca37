"""Training the networks a build runs (``synthgen train-e2i``); a build never imports this package.

:mod:`generator.training.e2i` trains the edge-to-image generator; :mod:`generator.training.gan` holds
pix2pixHD's discriminator and losses. A trained network is exported as a file that its model module
(:mod:`generator.models.e2i`) loads and runs.
"""
