"""Profiles: named sets of papermill parameters for each notebook of the book.

``quick`` runs the whole book on a 2-core laptop in minutes (it is what the committed book and CI
use, and each notebook's ``parameters`` cell holds the same values). ``paper`` follows the paper's
protocol. Any single parameter can be overridden on top of a profile.
"""

from __future__ import annotations

from typing import Any

PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "quick": {
        "01_chairs": {},
    },
    "paper": {
        "01_chairs": {},
    },
}


def profile_parameters(profile: str, notebook: str) -> dict[str, Any]:
    """The parameters that ``profile`` sets for ``notebook`` (a file stem such as ``"01_chairs"``).

    Raises
    ------
    ValueError
        If the profile is unknown.
    """
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {sorted(PROFILES)}; got {profile!r}")
    return dict(PROFILES[profile].get(notebook, {}))
