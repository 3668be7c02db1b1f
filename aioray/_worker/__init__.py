"""See aioray/__init__.py for the layering."""
