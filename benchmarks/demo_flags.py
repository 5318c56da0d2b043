"""Which of the demo's tiles the station flags, with the demo's model routing (issue 19: "the demo's defective
tiles flagged"): the tile classifier and the anomaly model both run on ``tiles/`` there (ADR 0059), and an image is
flagged when either answer calls for it. ``benchmarks/tile_anomaly_demo.py`` gives the anomaly model's part alone.

A fresh project in a temporary station home: ``routing set`` the demo's rules, ``prelabel`` the demo folder (the
same commands a user runs), then the flags the database holds, per tile. The class is the file-name prefix
(``free`` = good).

    python benchmarks/demo_flags.py [--threads 1]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", default="1")
    args = p.parse_args(argv)
    from database import open_database

    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "INSPECTION_STATION_HOME": home}
        for cmd in (["routing", "set", str(ROOT / "resources" / "samples" / "demo_routing.json")],
                    ["prelabel", str(ROOT / "resources" / "samples" / "demo"), "--threads", args.threads]):
            subprocess.run([sys.executable, str(ROOT / "main.py"), *cmd], env=env, check=True,
                           stdout=subprocess.DEVNULL)
        db = open_database(f"sqlite:///{Path(home) / 'station.sqlite'}")
        try:
            tiles = sorted((im for im in db.images.query() if im.rel_path.startswith("tiles/")), key=lambda im: im.rel_path)
            print("| tile | class | flagged |\n|---|---|---|")
            hits = {"defect": [0, 0], "good": [0, 0]}
            for im in tiles:
                cls = Path(im.rel_path).name.split("_", 1)[0]
                kind = "good" if cls == "free" else "defect"
                hits[kind][0] += int(im.flagged)
                hits[kind][1] += 1
                print(f"| {Path(im.rel_path).name} | {cls} | {'yes' if im.flagged else 'no'} |")
        finally:
            db.close()
    print(f"\ndefective tiles flagged: {hits['defect'][0]} of {hits['defect'][1]}; "
          f"good tiles flagged: {hits['good'][0]} of {hits['good'][1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
