"""A model's outcome as Dagster events: materializations (per partition too), check
results, carried-over results.
"""
