"""Test helpers: warp an image with a known homography (bilinear, by hand) and score matches."""
import math

import numpy as np
import scipy.ndimage


def warp(image, H, shape):
    """Output (h, w) where out(q) = image(H^-1 q), bilinear, 0 outside (host numpy)."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    q = np.stack([xx.ravel(), yy.ravel(), np.ones(h * w)])
    p = np.linalg.inv(H) @ q
    px, py = p[0] / p[2], p[1] / p[2]
    out = scipy.ndimage.map_coordinates(image.astype(np.float64), [py, px], order=1,
                                        mode="constant", cval=0.0)
    return out.reshape(h, w).astype(np.float32)


def rotation(deg, shape):
    """Homography rotating about the centre, and the output shape that holds the result."""
    h, w = shape
    t = math.radians(deg)
    c, s = math.cos(t), math.sin(t)
    R = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [w - 1, h - 1, 1], [0, h - 1, 1.0]]).T
    rc = R @ corners
    lo = rc[:2].min(axis=1)
    hi = rc[:2].max(axis=1)
    T = np.array([[1, 0, -lo[0]], [0, 1, -lo[1]], [0, 0, 1.0]])
    out = (int(math.ceil(hi[1] - lo[1])) + 1, int(math.ceil(hi[0] - lo[0])) + 1)
    return T @ R, out


def scaling(f, shape):
    h, w = shape
    return np.diag([f, f, 1.0]), (int(round(h * f)), int(round(w * f)))


def correct_mask(H, pts1, pts2, tol=3.0):
    p = np.c_[pts1, np.ones(len(pts1))] @ H.T
    p = p[:, :2] / p[:, 2:3]
    return np.linalg.norm(p - pts2, axis=1) < tol
