"""HTTP API: app factory, routers, schemas, errors."""
