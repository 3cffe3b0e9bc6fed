"""Built-in actions (`core.*`)."""
