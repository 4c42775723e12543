"""Generated avatar.gateway.v1 API (do not edit)."""
