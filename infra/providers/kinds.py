"""Markers the dynamic resources carry in their inputs, so policies can tell them apart.

Every Python dynamic resource has the type `pulumi-python:dynamic:Resource`; the `kind`
input says which provider made it. Kept free of boto3 so the policy pack can import it.
"""

DYNAMIC_TYPE = "pulumi-python:dynamic:Resource"
TRAINING_JOB = "retail:sagemaker:TrainingJob"
MODEL_VERSION = "retail:sagemaker:ModelVersion"
SERVED_MODEL = "retail:sagemaker:ServedModel"
REGISTERED_PACKAGE = "retail:sagemaker:RegisteredPackage"
LAKE_JOB = "retail:emrserverless:LakeJob"
