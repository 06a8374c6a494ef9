"""Write the ingest API's OpenAPI document (with auth and a rate limit configured) to docs/.

    python scripts/write_openapi.py

`tests/test_openapi_doc.py` fails when the checked-in copy differs from what the code serves,
so run this after changing the wire format.
"""

from __future__ import annotations

import json
from pathlib import Path

from watchkeeper.collectors.openapi import ingest_openapi

TARGET = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"


def render() -> str:
    return json.dumps(ingest_openapi(auth=True, rate_limited=True), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    TARGET.write_text(render())
    print(f"wrote {TARGET}")
