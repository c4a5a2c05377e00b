"""All file access of geoseg: rasters, vectors, checksums and atomic writes.

Nothing outside this package opens a file, so everything else can be tested in
memory.
"""
