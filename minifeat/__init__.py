"""minifeat: classical image features by hand (SIFT, edges, corners, blobs, bag-of-words).

Arrays follow the same backend switch as minidl (``minidl.use_backend``)."""

__version__ = "0.1.0"
