"""Dataset readers (one module per on-disk layout) and the procedural demo dataset."""

from .base import DatasetIndex, DefectSpec, MaskRef, SourceImage, get_reader, reader_names, register_reader

__all__ = ["DatasetIndex", "DefectSpec", "MaskRef", "SourceImage", "get_reader", "reader_names", "register_reader"]
