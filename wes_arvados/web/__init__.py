"""The HTTP layer: connexion app, thin WES handlers, error mapping."""
