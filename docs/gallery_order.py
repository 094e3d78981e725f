"""The order of the gallery's examples: the smallest round trip, registration, augmentation and training, then
timing and pictures."""

from pathlib import Path

ORDER = (
    "plot_rotate_batch.py",
    "plot_register_affine.py",
    "plot_tps_registration.py",
    "plot_augmentation_pipeline.py",
    "plot_torch_tutorial.py",
    "plot_cpu_vs_cuda.py",
    "plot_padding_modes.py",
)


class GalleryOrder:
    """A sphinx-gallery ``within_subsection_order`` key: the examples in ``ORDER``, then the rest by name."""

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename):
        name = Path(filename).name
        return (ORDER.index(name) if name in ORDER else len(ORDER), name)

    def __repr__(self):  # sphinx-gallery compares configurations by repr
        return f"GalleryOrder({ORDER})"
