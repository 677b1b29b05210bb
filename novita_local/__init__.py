"""A local, Novita-compatible async inpainting API (see README.md in this folder).

Public API: `novita_local.server.LocalServer`, `novita_local.config.ServerConfig`,
`novita_local.app.create_app`, the CLI command `novita_local.cli.local_api`, and the contract
constants in `inpaint_flows.contract`. Nothing is imported here, so importing the contract does not
pull in the web stack.
"""
