"""The write path: decode and validate, group commit, one commit, the HTTP server."""
