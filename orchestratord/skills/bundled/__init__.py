"""The skills shipped with the package, one directory each (SKILL.md, actions.yaml, actions.py)."""
