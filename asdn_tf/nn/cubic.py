"""Keys' cubic kernel (a = -0.5, MATLAB's bicubic), the one definition every bicubic resampler
uses: the network's `BicubicUpsample` (asdn_tf/nn/layers.py) and the resizers of asdn_tf/data/.
"""

import numpy as np


def cubic(x, where=np.where):
    """Keys' cubic kernel with a = -0.5 (MATLAB's bicubic) at distances `x`, in x's dtype.

    `where` is the array library's select (np.where, tf.where), so the same arithmetic runs on
    numpy arrays and on tensors.
    """
    ax = abs(x)
    ax2 = ax * ax
    ax3 = ax2 * ax
    near = 1.5 * ax3 - 2.5 * ax2 + 1.0
    far = -0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0
    return where(ax <= 1.0, near, where(ax <= 2.0, far, 0.0 * ax))
