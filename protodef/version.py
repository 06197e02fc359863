"""The version, in the core so that backends can stamp it without importing the application."""
__version__ = "0.1.0"
