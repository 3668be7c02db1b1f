"""The seam: the Backend interface, the registry that selects an implementation by module name,
argument checks shared by every backend. See aioray/__init__.py for the layering."""
