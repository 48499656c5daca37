"""synthgen trainers: localization networks that consume synthgen shards (or, for PBAS, synthesize
anomalies online in feature space), plus the metrics and evaluation shared by all of them.

Trainers import only the generator's public reading API (``generator.shards.reader``) and its
dataset readers (``generator.datasets``) for real test sets.
"""
