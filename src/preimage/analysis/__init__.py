"""The analysis of invariant sets: concepts (CLIP embeddings, clusters, spurious scores) and the report.

It imports the engine and the utilities, never the shortcut world or the pipeline glue.
"""
