"""What users call: the factories, their options, the resources, the executor, and each
asset's step.
"""
