"""Running models: the batched model base, the model-job skeleton, the model registry and
weights, job status and preflight.
"""
