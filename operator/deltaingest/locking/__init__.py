"""Commit and maintenance locks: DynamoDB leases, local lock files, or none."""
