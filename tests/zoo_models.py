"""The keras.applications models of issue 13's zoo, as the pruning and QAT zoo tests build them: weights=None,
32x32x3 inputs, 10 classes, with the preprocessing layers each model has by default (Rescaling, Normalization).

Both zoo tests fit one batch with `run_eagerly=True`: a single step, where tracing the training function of a
model this size costs 10x the step itself (MobileNetV3Large: 30 s traced, 2.6 s eager); the compiled step is what
the layer-level tests check.
"""

import keras
import numpy as np

ZOO = {
    "MobileNetV2": {"alpha": 0.35},
    "ResNet50": {},
    "DenseNet121": {},  # standalone BatchNormalization
    "MobileNetV3Small": {},  # hard-swish as keras.ops calls, Rescaling
    "MobileNetV3Large": {},
    "EfficientNetB0": {},  # Rescaling, Normalization, SiLU, squeeze-and-excitation Multiply
    "EfficientNetV2B0": {},
    "ConvNeXtTiny": {},  # nested stem, Conv2D(groups=channels), LayerNormalization, GELU, LayerScale
}


def zoo_model(name):
    keras.utils.set_random_seed(0)
    return getattr(keras.applications, name)(weights=None, input_shape=(32, 32, 3), classes=10, **ZOO[name])


def random_images(count, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, size=(count, 32, 32, 3)).astype("float32"), rng.integers(0, 10, count)
