"""Score a segmenter once on SIRST's frozen test split (val.txt): all 86 frames, and the frames whose
scene (``groups.scene_groups`` over all frames) holds no train.txt frame: the "new scenes" figure of
issue 19. One prediction pass; both figures come from the same masks, with the model card's own
post-processing (as ``python main.py evaluate segmenter`` applies it).

    PYTHONPATH=. python benchmarks/segmenter_test_once.py --data SIRST --model MODEL_DIR --json OUT.json [--record]

``--record`` writes the figures into the card's ``metrics.test`` and counts ``times_recorded``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any


def main() -> int:
    from inference.checkpoints import load_model
    from inference.segmenter_metrics import SegmentationMeter
    from inference.segmenter_predict import model_flips, model_members, model_post_process, predict_probabilities
    from inference.training.common import command_line, set_threads
    from inference.training.segmenter_cv import frame_groups
    from inference.training.segmenter_data import SegTree, load_frames
    from inference.training.test_record import record_test

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--json", type=Path)
    p.add_argument("--record", action="store_true")
    args = p.parse_args()
    set_threads(1)
    tree = SegTree.open(args.data)
    train, test = tree.stems("train"), tree.stems("val")
    groups = frame_groups(args.data, train + test)
    seen = set(groups[:len(train)])
    new_scene = {s for s, g in zip(test, groups[len(train):]) if g not in seen}
    loaded = load_model(args.model, family="segmenter")
    frames, _ = load_frames(tree, test, loaded.config.in_chans)
    post, members, flips = model_post_process(loaded), model_members(loaded), model_flips(loaded)
    meters = {"all": SegmentationMeter(), "new_scenes": SegmentationMeter(), "seen_scenes": SegmentationMeter()}
    t0 = time.monotonic()
    for f in frames:
        mask = post(predict_probabilities(members, [f.image], "cpu", standardised=True, flips=flips)[0], f.image).mask
        meters["all"].update(mask, f.mask)
        meters["new_scenes" if f.stem in new_scene else "seen_scenes"].update(mask, f.mask)
    result: dict[str, Any] = {k: m.result() for k, m in meters.items()}
    result.update(split="val.txt", frames={"all": len(frames), "new_scenes": len(new_scene), "seen_scenes": len(frames) - len(new_scene)},
                  seconds=round(time.monotonic() - t0, 1), model=str(args.model), fa_unit="1e-6")
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1), encoding="utf-8")
    if args.record:  # the one way every family records a test figure (inference/training/test_record.py)
        record_test(args.model, result, args.data / "val.txt", command_line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
