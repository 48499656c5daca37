"""anomalib's own models (SuperSimpleNet, DRAEM, DSR, GLASS) trained on synthgen shards, or with their built-in
synthesis for comparison: ``synthgen-train anomalib --model NAME --shards BUILD --out RUN``.

anomalib is an optional extra (``pip install synthgen-anomaly[anomalib]``) and is imported only inside this
package, and only when a command runs. Pieces: :mod:`.backbones` (offline weights registered with timm),
:mod:`.data` (training items as anomalib ImageBatches), :mod:`.models` (the shard-fed subclasses),
:mod:`.train` (the run folder), :mod:`.loader` (``synthgen-eval``; importing this package registers it),
:mod:`.cli` (the click command).
"""


from .cli import command  # noqa: E402,F401
from .models import METHOD  # noqa: E402


def _register_loader() -> None:
    """Register the evaluation loader without importing anomalib or timm's models until a run is loaded."""
    from ..base import register_loader

    @register_loader(METHOD)
    def load(run_dir, device):
        from .loader import load as load_run

        return load_run(run_dir, device)


_register_loader()
