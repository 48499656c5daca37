"""synthgen trainers: localization networks that consume synthgen shards (or, for PBAS, synthesize
anomalies online in feature space), plus the metrics and evaluation shared by all of them.

Trainers use only the generator's public surface: the shard reading API (``generator.shards.reader``),
the dataset readers (``generator.datasets``) for real test sets, the weight registry
(``generator.models.weights``) and the error type (``generator.errors``).
"""
