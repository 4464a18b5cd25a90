"""The retail-mlops policy pack: rules as plain functions, wired into pulumi-policy in `__main__.py`."""
