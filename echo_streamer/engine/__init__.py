"""The engine: paces frames into the SDK from its completions, one segment after another."""
