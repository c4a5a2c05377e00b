"""geoseg: out-of-core land-use and deforestation segmentation of large GeoTIFFs.

The library is a set of small modules of pure functions over arrays and grids
(``tiling``, ``blending``, ``vectorize``, ``change``...), with all file access in
:mod:`geoseg.io`. The :mod:`workflows` package wires them into Dask graphs and
:mod:`geoseg.cli` exposes them as commands.
"""

from geoseg.errors import GeosegError

__all__ = ["GeosegError", "__version__"]
__version__ = "0.1.0"
