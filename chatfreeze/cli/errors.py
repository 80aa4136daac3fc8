"""What every chatfreeze command line shares: user errors become one line on stderr and exit status 2."""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable

from ..common import UserError, first_line

# Faults of the machine, not bugs: a full disk, no permission, a read-only file system, a quota.
MACHINE_ERRNOS = {errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EDQUOT, errno.EPERM}


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the input is wrong", as opposed to a bug (which keeps its traceback)."""
    from yaml import YAMLError

    return (ValueError, FileNotFoundError, NotADirectoryError, UserError, YAMLError)


def run_cli(main: Callable[[], int | None]) -> int:
    """Call ``main``; on a user error print ``error: <first line>`` to stderr and return 2."""
    try:
        status = main()
    except user_errors() as err:
        print(f"error: {first_line(err)}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.errno not in MACHINE_ERRNOS:
            raise
        where = f" ({err.filename})" if err.filename else ""
        print(f"error: {err.strerror}{where}: free space or choose a writable --output_dir, then run the same "
              "command again (finished checkpoints are resumed).", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0 if status is None else int(status)
