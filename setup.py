"""Only what pyproject.toml cannot say: the top-level ``migrations/`` (the source of
truth for the Alembic scripts) ships inside the package as ``identity.migrations``,
so a plain wheel install can run ``identity migrate``."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["identity", "identity.*"]), "identity.migrations"],
    package_dir={"identity.migrations": "migrations"},
)
