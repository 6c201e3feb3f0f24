"""A project description to Dagster specs: the translator, its defaults, the tag
convention, checks, partitions, crons, freshness and automation.
"""
