"""Source connectors: one module per kind of source. See `connectors.base.Connector`."""
