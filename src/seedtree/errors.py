"""One exception type for problems the user can fix.

Every `SeedtreeError` message is a single line that names the problem and the fix. The CLI prints
it as `error: <message>` and exits with status 2, without a traceback.
"""


class SeedtreeError(ValueError):
    """Bad input or a missing resource; the message says what to do about it."""
