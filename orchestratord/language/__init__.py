"""The workflow language: source files -> models -> graph -> loader and catalog;
expressions; the skill registry and routing the loader resolves steps with; the
settings file."""
