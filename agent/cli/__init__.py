"""The `oss-agent` command line."""
