"""The retail-mlops platform Pulumi program: read the stack's config once, build the platform."""

import pulumi

from infra.config import load_platform_config
from infra.platform import build_platform

platform = build_platform(load_platform_config())
for key, value in platform.outputs().items():
    pulumi.export(key, value)
