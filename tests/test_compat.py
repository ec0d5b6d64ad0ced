"""tfopt.compat in a Keras 3 process: argument checks, and the whole story of a tfmot-only tool used from Keras 3.

The conversions themselves are tested in tests/legacy/test_compat.py, where tf_keras may be imported.
"""

import json
import subprocess
import sys

import keras
import pytest

from tfopt.compat import to_keras3, to_tf_keras


def test_to_keras3_names_the_generation_it_got():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    with pytest.raises(TypeError, match="to_keras3: argument `model` must be a tf_keras Sequential or functional "
                                        "model. Received: a Keras 3 Sequential, which to_tf_keras carries to "
                                        "tf_keras"):
        to_keras3(model)


def test_a_subclassed_model_is_a_type_error():
    class Doubler(keras.Model):
        def call(self, inputs):
            return 2 * inputs

    with pytest.raises(TypeError, match="to_tf_keras: .* Received: a Keras 3 Doubler"):
        to_tf_keras(Doubler())


def test_layers_that_cannot_cross_are_named_before_tf_keras_is_needed():
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(2)(keras.layers.Lambda(lambda t: -t, name="negate")(inputs))
    with pytest.raises(ValueError, match=r"to_tf_keras: 1 layer\(s\) can't cross to tf_keras: 'negate' \(Lambda\)"):
        to_tf_keras(keras.Model(inputs, outputs))


STORY = """
import json, os
import keras, numpy as np
from tfopt.compat import to_keras3, to_tf_keras
from tfopt.demo.model import digits_cnn

model = digits_cnn()
import tensorflow_model_optimization as tfmot  # sets TF_USE_LEGACY_KERAS=1 from here on
clustering = tfmot.clustering.keras
clustered = clustering.cluster_weights(to_tf_keras(model), number_of_clusters=8,
                                       cluster_centroids_init=clustering.CentroidInitialization.KMEANS_PLUS_PLUS)
back = to_keras3(clustering.strip_clustering(clustered))
unique = [len(np.unique(layer.kernel.numpy())) for layer in back.layers if type(layer).__name__ in ("Conv2D", "Dense")]
back.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
history = back.fit(np.ones((8, 8, 8, 1), "float32"), np.zeros(8, "int32"), epochs=1, verbose=0)
print(json.dumps({
    "type": type(back).__module__.split(".")[0],
    "unique": unique,
    "loss": history.history["loss"][0],
    "legacy_flag": os.environ.get("TF_USE_LEGACY_KERAS"),
}))
"""


@pytest.mark.slow
def test_a_keras3_process_clusters_with_tfmot_and_comes_back():
    env = {"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"}
    output = subprocess.run([sys.executable, "-c", STORY], capture_output=True, text=True, env=env, check=True)
    story = json.loads(output.stdout.strip().splitlines()[-1])
    assert story["type"] == "keras" and story["legacy_flag"] == "1"
    assert len(story["unique"]) == 4 and max(story["unique"]) <= 8
    assert story["loss"] > 0


def test_keras_ops_calls_are_named_before_tf_keras_is_needed():
    inputs = keras.Input((4,))
    outputs = keras.ops.relu(keras.layers.Dense(2)(inputs))
    # Keras numbers the op's name ('relu', 'relu_1', ...) by how many were made before in the process
    with pytest.raises(ValueError, match=r"to_tf_keras: 1 layer\(s\) can't cross to tf_keras: 'relu(_\d+)?' \(Relu, "
                                         r"a keras.ops call\)\. .*keras.ops calls can't"):
        to_tf_keras(keras.Model(inputs, outputs))


def test_an_embedding_mask_read_past_another_layer_is_named():
    """Only the mask given to the layer called on the Embedding's own output is left to tf_keras to propagate."""
    inputs = keras.Input((6,), dtype="int32")
    x = keras.layers.Dropout(0.1)(keras.layers.Embedding(10, 4, mask_zero=True)(inputs))
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling1D()(x))
    with pytest.raises(ValueError, match=r"1 layer\(s\) can't cross to tf_keras: 'not_equal\w*' \(NotEqual, a "
                                         r"keras.ops call\)"):
        to_tf_keras(model)
