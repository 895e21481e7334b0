"""The live-progress side-app: REST, SSE and a dashboard page over the state store."""

from api.main import create_app

__all__ = ["create_app"]
