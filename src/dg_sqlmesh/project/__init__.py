"""Loading a SQLMesh project and describing its models (no Dagster): folders, config,
context, the serialisable description, its cache, column lineage.
"""
