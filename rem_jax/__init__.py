"""rem_jax: REM (Redirection for Erasing Memory) and the corrupted-data unlearning benchmark."""

__version__ = '0.1.0'
