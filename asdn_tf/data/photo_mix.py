"""The photo degradation mix (`--degradation=photo`), defined once for `tf.data` and the JAX
path: which damage each LR patch gets, drawn from the ranges of `config.PhotoDegradation`, and
in which order it is applied: downscale, blur, noise, 8-bit quantisation, JPEG.

Clean patches (the benchmark's bicubic LR, only quantised) keep the network exact on clean
input; the others take one kernel drawn from `photo.kernels` and maybe each of the rest. The
arithmetic is a backend's (`degradation.TensorFlowMix`, `photo_degradation.NumpyMix`): its
random draws by name, `where` and the image operations on a batch of N patches.
"""

import math

KERNELS = ("bicubic", "bicubic_noaa", "bilinear", "area")


def draw(photo, ops):
    """(kernel, blur, noise, quality), each [N]: the index in `KERNELS`, the blur sigma in LR
    pixels, the noise sigma in grey levels and the JPEG quality (0: none of it)."""
    clean = ops.uniform("clean") < photo.clean_probability
    kernel = ops.where(clean, KERNELS.index("bicubic"),
                       ops.choose("kernel", [KERNELS.index(name) for name in photo.kernels]))

    def sometimes(name, probability, low, high):
        return ops.where((ops.uniform(f"{name} applied") < probability) & ~clean,
                         ops.uniform(name, low, high), 0.0)

    blur = sometimes("blur", photo.blur_probability, *photo.blur_sigma)
    noise = sometimes("noise", photo.noise_probability, *photo.noise_sigma)
    quality = ops.round_int(sometimes("jpeg", photo.jpeg_probability, *photo.jpeg_quality))
    return kernel, blur, noise, quality


def random_lr(hr, size, scale, photo, ops):
    """N×size×3 float32 LR patches, quantised to 8 bits, made from N×H×W×3 float HR patches at
    `scale` (HR / LR) by a degradation drawn per patch (`draw`)."""
    kernel, blur, noise, quality = draw(photo, ops)
    lr = ops.downscale(hr, size, scale, kernel)
    lr = ops.gaussian_blur(lr, blur, math.ceil(3 * photo.blur_sigma[1]))
    lr = ops.quantize(ops.add_noise(lr, noise))
    return ops.jpeg(lr, quality)
