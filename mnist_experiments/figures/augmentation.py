"""What training-time augmentation does: each image beside augmented versions of it."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
from matplotlib.figure import Figure

from mnist_experiments.figures.style import (
    IMAGE_CMAP,
    as_images,
    as_labels,
    class_name,
    message_figure,
    new_figure,
    suptitle,
)

__all__ = ["augmentation_grid"]


def augmentation_grid(images: Any, augmented: Any, labels: Any,
                      class_names: Optional[Sequence[str]] = None,
                      title: str = "Training augmentation") -> Figure:
    """One row per training image: the image, then each augmented version of it.

    ``augmented`` has shape (variants, n, 28, 28): what the model saw in ``variants``
    draws of the augmentation layers (in [0, 1], like ``images`` / 255).
    """
    originals = as_images(images).astype(np.float32)
    if originals.max(initial=0.0) > 1.0:
        originals = originals / 255.0
    variants = np.asarray(augmented, dtype=np.float32)
    labs = as_labels(labels)
    n = min(len(originals), variants.shape[1] if variants.ndim == 4 else 0, len(labs))
    if n == 0:
        return message_figure(title, "No images to show.")
    cols = 1 + variants.shape[0]
    fig = new_figure(1.25 * cols + 0.6, 1.3 * n + 0.7, images=True)
    axes = fig.subplots(n, cols, squeeze=False)
    for row in range(n):
        panels = [originals[row]] + [variants[v, row] for v in range(variants.shape[0])]
        for col, (ax, img) in enumerate(zip(axes[row], panels)):
            ax.imshow(img, cmap=IMAGE_CMAP, vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_axis_off()
            if row == 0:
                ax.set_title("original" if col == 0 else f"augmented {col}", fontsize=9.5)
        axes[row][0].text(-0.12, 0.5, class_name(class_names, labs[row]), fontsize=9.5,
                          transform=axes[row][0].transAxes, ha="right", va="center")
    suptitle(fig, title)
    return fig
