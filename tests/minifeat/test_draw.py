import numpy as np

from minifeat import SIFT
from minifeat.draw import draw_keypoints, draw_matches, draw_outline


def _img():
    y, x = np.mgrid[0:64, 0:80]
    return (0.3 + 0.5 * np.exp(-((x - 40) ** 2 + (y - 30) ** 2) / 50.0)).astype(np.float32)


def test_pictures_have_the_right_sizes():
    a = _img()
    kp = SIFT().detect(a)
    im = draw_keypoints(a, kp)
    assert im.size == (80, 64) and im.mode == "RGB"
    assert np.asarray(im).std() > 0
    m = np.stack([np.arange(len(kp)), np.arange(len(kp))], axis=1)
    side = draw_matches(a, kp, a[:50], kp, m, inliers=np.ones(len(m), bool))
    assert side.size == (160, 64)
    out = draw_outline(side, np.eye(3), a.shape, offset=(80, 0))
    assert np.asarray(out)[0, 80:].any()
