"""Every use of Dagster's and SQLMesh's internals, with the versions checked: the only
modules that touch either library's private API.
"""
