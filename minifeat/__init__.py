"""minifeat: classical image features by hand (SIFT, edges, corners, blobs, bag-of-words,
retrieval).

Arrays follow the same backend switch as minidl (``minidl.use_backend``)."""

from .filters import gaussian_blur, gaussian_kernel1d  # noqa: F401
from .gradients import image_gradients  # noqa: F401
from .io import LowBitDepthWarning, as_image, load_image  # noqa: F401
from .keypoints import Keypoints  # noqa: F401
from .matching import match_descriptors, ransac_homography  # noqa: F401
from .sift import SIFT  # noqa: F401
from .edges import edges_canny, gradient_magnitude, gradient_scharr, gradient_sobel  # noqa: F401
from .corners import corner_harris, corner_peaks, corner_shi_tomasi  # noqa: F401
from .blobs import blob_dog, blob_doh, blob_log  # noqa: F401
from .kmeans import KMeans, MiniBatchKMeans  # noqa: F401
from .bovw import BagOfWords  # noqa: F401
from .dense_sift import DenseSIFT, dense_grid, keypoint_sift  # noqa: F401
from .retrieval import InvertedIndex  # noqa: F401

__version__ = "0.1.0"
