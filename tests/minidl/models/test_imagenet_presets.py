"""The preprocessing each weight source expects: torchvision's mean/std, Keras's "caffe"
(ResNet50) and "tf" (InceptionV3), checked by hand and against Keras's own preprocess_input
where Keras is installed."""
import os
import warnings

import numpy as np
import pytest

from minidl.data.imagenet import CAFFE_BGR_MEAN, preprocess, preset


@pytest.fixture
def square():
    """A 224x224 RGB image: no resize, no crop, so the values are the pixels'."""
    return np.random.default_rng(1).integers(0, 256, (224, 224, 3), dtype=np.uint8)


def test_presets_per_source():
    assert preset("resnet50") == {"resize": 256, "crop": 224, "mode": "torch"}
    assert preset("resnet50", "keras") == {"resize": 256, "crop": 224, "mode": "caffe"}
    assert preset("inception_v3", "keras") == {"resize": 342, "crop": 299, "mode": "tf"}
    assert preset("inception_v3") == {"resize": 342, "crop": 299, "mode": "torch"}
    with pytest.raises(ValueError, match=r"source must be 'torchvision' or 'keras', got 'tf'"):
        preset("resnet50", "tf")


def test_caffe_mode_is_bgr_minus_the_bgr_means(square):
    x = preprocess(square, 224, 224, mode="caffe")
    assert x.shape == (3, 224, 224) and x.dtype == np.float32
    for c in range(3):    # channel 0 is blue
        np.testing.assert_array_equal(x[c], square[..., 2 - c].astype(np.float32)
                                      - np.float32(CAFFE_BGR_MEAN[c]))


def test_tf_mode_maps_0_255_to_minus_1_plus_1(square):
    x = preprocess(square, 224, 224, mode="tf")
    np.testing.assert_allclose(x, square.transpose(2, 0, 1) / 127.5 - 1, rtol=0, atol=1e-6)
    assert x.min() >= -1 and x.max() <= 1
    with pytest.raises(ValueError, match=r"mode must be one of torch, caffe, tf, got 'bgr'"):
        preprocess(square, mode="bgr")


@pytest.mark.parametrize("mode", ["caffe", "tf"])
def test_modes_equal_keras_preprocess_input(square, mode):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        from keras.applications import imagenet_utils
    except ImportError as exc:
        pytest.skip(f"keras not importable ({exc})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ref = imagenet_utils.preprocess_input(square[None].astype(np.float32), mode=mode)
    ours = preprocess(square, 224, 224, mode=mode)
    np.testing.assert_allclose(ours, np.asarray(ref)[0].transpose(2, 0, 1), rtol=0, atol=1e-5)
