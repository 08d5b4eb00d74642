"""End-to-end tests: each starts a subprocess (the CLI, a Hydra sweep, torchrun, a venv install).

Every module here sets ``pytestmark = pytest.mark.e2e``; select them with ``-m e2e``.
"""
