"""Plain data shared by every layer: specs, versions, rotation records, phases. No I/O."""
