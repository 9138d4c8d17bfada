"""Who this process runs as, for the hints that name the account to fix: `$USER` in a hint would
be whoever types the fix (the admin's own account), not the detector's user."""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Callable
from pathlib import Path
from typing import Any


def user_name() -> str:
    """This process's user's name (its uid if it has none, as in some containers)."""
    return _name(pwd.getpwuid, os.geteuid())


def group_name() -> str:
    """This process's group's name (its gid if it has none)."""
    return _name(grp.getgrgid, os.getegid())


def why_unreadable(path: Path, exc: OSError) -> str:
    """Why this user cannot read `path`, and the fix: the file's group, or a folder on its way."""
    user = f"this user ({user_name()}, uid {os.geteuid()})"
    folder = path.absolute().parent
    if not os.access(folder, os.X_OK):
        return f"cannot be read by {user}: its folder {folder} cannot be entered ({exc.strerror or exc})"
    return (
        f"cannot be read by {user} ({exc.strerror or exc}): let its group read it: "
        f"sudo chgrp {group_name()} {path} && sudo chmod 640 {path}"
    )


def _name(lookup: Callable[[int], Any], number: int) -> str:
    """The name `lookup` finds for `number` (the entry's first field, pw_name or gr_name), else the number."""
    try:
        return lookup(number)[0]
    except KeyError:
        return str(number)
