"""Who this process runs as, for the hints that name the account to fix: `$USER` in a hint would
be whoever types the fix (the admin's own account), not the detector's user."""

from __future__ import annotations

import grp
import os
import pwd


def user_name() -> str:
    """This process's user's name (its uid if it has none, as in some containers)."""
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def group_name() -> str:
    """This process's group's name (its gid if it has none)."""
    gid = os.getegid()
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
