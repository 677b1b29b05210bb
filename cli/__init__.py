"""The `inpaint-flows` command line: the top layer, above flows, deployments and the core."""
