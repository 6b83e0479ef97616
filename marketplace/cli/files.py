"""The JSON files an operator hands the CLI (a task, a grant, an evidence bundle, a decision).

One reader, so that every command names the file and the cause in one line the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aaex_agents.errors import UsageError


def read_json_file(path: str, what: str = "") -> Any:
    """The JSON document in `path`.

    Raises:
        UsageError: it cannot be read, or is not JSON; the message names `what` (the
            argument it came from, e.g. ``--task``) and the file.
    """
    named = f"{what} {path}" if what else path
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{named}: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(f"{named}: not JSON ({exc})") from None
