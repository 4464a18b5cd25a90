"""Policy rules, one module per area of the platform; `policies.catalog` lists them all."""
