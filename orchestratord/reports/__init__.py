"""The report of a run: its model, Markdown and HTML renderings, the layout they share,
templates."""
