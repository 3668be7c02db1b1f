"""Running user code, shared by the implementations. See aioray/__init__.py for the layering."""
