"""Pulumi dynamic providers that start SageMaker training jobs and register model versions."""
