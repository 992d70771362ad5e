"""Running models: the batched model base, the model-job skeleton, the model registry,
locating and fetching weights, job status and preflight.
"""
