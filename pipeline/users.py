"""Who this process runs as, for the hints that name the account to fix: `$USER` in a hint would
be whoever types the fix (the admin's own account), not the detector's user."""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Callable
from typing import Any


def user_name() -> str:
    """This process's user's name (its uid if it has none, as in some containers)."""
    return _name(pwd.getpwuid, os.geteuid())


def group_name() -> str:
    """This process's group's name (its gid if it has none)."""
    return _name(grp.getgrgid, os.getegid())


def _name(lookup: Callable[[int], Any], number: int) -> str:
    """The name `lookup` finds for `number` (the entry's first field, pw_name or gr_name), else the number."""
    try:
        return lookup(number)[0]
    except KeyError:
        return str(number)
