"""Dask workflows: wiring of geoseg library functions into task graphs.

Modules here contain no maths and no file formats; they decide what runs where
(which tasks, which chunks, which workers) and call :mod:`geoseg` for the work.
"""
