"""REST routers of the central service, one module per resource; composed by ``orchestrator.app``."""
