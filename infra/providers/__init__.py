"""Pulumi dynamic providers that start SageMaker training jobs and register model versions.

Each provider class goes into the stack's state (`__provider`) as a pickled reference to
`infra.providers.<module>.<Class>`, which the provider host imports, so the state does not
depend on the Python version that wrote it. That holds while a provider class is defined at
module level here, is built without arguments and keeps no attributes; renaming one needs
the old name kept importable. docs/internals.md ("Dynamic providers across Python
upgrades") says why; tests/providers/test_serialization.py checks it.
"""
