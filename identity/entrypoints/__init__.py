"""The edges: settings, container, HTTP application, CLI."""
