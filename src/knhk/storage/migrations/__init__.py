"""Versioned SQL migrations, one file per version and dialect: ``NNNN_name.<dialect>.sql``."""
