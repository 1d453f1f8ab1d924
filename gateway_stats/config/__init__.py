"""Config: a Higress ai-statistics config (bare, defaultConfig + matchRules, or a WasmPlugin object)
plus our `gateway_stats:` extensions, read into frozen dataclasses and validated field by field.
"""

from gateway_stats.config.reader import *  # noqa: F403
