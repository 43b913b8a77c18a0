"""Output renderers: one module per kind of channel. See `renderers.base`."""
