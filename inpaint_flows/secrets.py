"""Where the Novita API key comes from: a Prefect Secret block, or the environment.

The key is read when a task needs it, never at import time and never as a flow parameter:
Prefect stores parameters and shows them in the UI, while a Secret block's name is harmless.
"""

from __future__ import annotations

import os

from inpaint_flows.errors import ConfigError

ENV_VAR = "NOVITA_API_KEY"


async def resolve_api_key(secret_block: str | None = None) -> str | None:
    """The API key from the Secret block `secret_block` if given, else `NOVITA_API_KEY`.

    Returns None when neither is set, which means "no key": the client then sends no
    Authorization header (the local server needs none). Surrounding whitespace is dropped,
    since keys pasted into a terminal or the UI often carry a newline.
    """
    if secret_block:
        return await _load_secret_block(secret_block)
    return os.environ.get(ENV_VAR, "").strip() or None


async def _load_secret_block(name: str) -> str:
    from prefect.blocks.system import Secret  # imported here: importing prefect is slow
    from pydantic import ValidationError

    create_hint = (
        f"Create it in the Prefect UI (Blocks > + > Secret, name {name!r}) or in Python: "
        f"`from prefect.blocks.system import Secret; Secret(value='<your key>').save({name!r})`; "
        f"or leave the block name empty to use ${ENV_VAR}."
    )
    try:
        block: object = await Secret.aload(name)
    except ValidationError:
        # The error's text would quote the stored value, which is the secret itself.
        raise ConfigError(
            f"The Prefect Secret block {name!r} exists but does not hold a valid Secret. "
            + create_hint
        ) from None
    except ValueError as exc:
        if "Unable to find block document" not in str(exc):
            raise
        raise ConfigError(
            f"No Prefect Secret block named {name!r} was found. " + create_hint
        ) from None
    if not isinstance(block, Secret):
        raise ConfigError(f"The Prefect block {name!r} is not a Secret block. " + create_hint)
    value = block.get()
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            f"The Prefect Secret block {name!r} must hold the API key as a non-empty string. "
            + create_hint
        )
    return value.strip()
