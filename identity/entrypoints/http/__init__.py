"""The aiohttp application: middlewares, problem details, handlers."""
