"""Opening and creating Delta tables, their schemas and storage options."""
