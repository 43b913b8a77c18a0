"""Templates compiled once per process, not once per app.

Every app has Jinja environments of its own (their globals are the town's), and a deployment
makes an app per town, a config apply a new one, the tests some hundreds: each environment
would compile every template again, a tenth of a second per app. Environments made in one
place are configured alike, so they share that place's `CompiledTemplates`: the first
compiles, the others load the code (Jinja checks the source's checksum, so an edited
template is compiled anew)."""

from __future__ import annotations

from jinja2 import BytecodeCache
from jinja2.bccache import Bucket


class CompiledTemplates(BytecodeCache):
    """Compiled templates in memory, for the environments of one kind."""

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: Bucket) -> None:
        code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: Bucket) -> None:
        self._code[bucket.key] = bucket.bytecode_to_string()
