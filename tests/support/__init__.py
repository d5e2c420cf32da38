"""Test support shared across test folders: private PostgreSQL clusters, live `knhk serve` processes."""
