"""Send traffic to the example service: held-out tumours, then their diagnoses as labels.

    python traffic.py --url http://127.0.0.1:8000 --requests 200

`--shift 1.5` multiplies the size measurements (radius, perimeter, area) by 1.5, the kind of
change a new scanner's calibration makes: watchkeeper's drift check notices it.
`--missing-every 10` leaves a measurement out of every 10th request, which the service
answers from its fallback. Only the standard library is used.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from typing import Any

SIZE_FEATURES = ("radius", "perimeter", "area")


def call(url: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the example service")
    parser.add_argument("--requests", type=int, default=100, help="how many predictions")
    parser.add_argument("--shift", type=float, default=1.0, help="scale size measurements")
    parser.add_argument("--missing-every", type=int, default=0, help="drop a feature every Nth")
    args = parser.parse_args(argv)

    predicted = fallbacks = 0
    for i in range(args.requests):
        sample = call(f"{args.url}/samples/{i % 100}")
        features = {
            name: value * args.shift if name.endswith(SIZE_FEATURES) else value
            for name, value in sample["features"].items()
        }
        if args.missing_every and i % args.missing_every == args.missing_every - 1:
            features.pop("mean_radius")
        answer = call(f"{args.url}/predict", {"features": features})
        if answer["fallback"]:
            fallbacks += 1
            continue
        predicted += 1
        call(
            f"{args.url}/labels",
            {"prediction_id": answer["prediction_id"], "malignant": sample["malignant"]},
        )
    print(f"{predicted} predictions labelled, {fallbacks} fallbacks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
