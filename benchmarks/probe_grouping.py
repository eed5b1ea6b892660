"""How much does the probe's inner split change sensor scores? Re-scores finished runs.

    python benchmarks/probe_grouping.py RUN [RUN ...] --out results.json

`fit_linear_probe` picks its L2 strength on 20 % of the probe's training windows. Before
`benchmarks/quality.py` passed recording groups, that 20 % was random windows, whose
half-overlapping neighbours (hop 64, length 128) were in the other 80 %: the strength was
chosen on near-copies of what the probe was fit on. This scores each run's encoder, and the
baselines of the first run, both ways on the same fit/val/test split that quality.py uses
(validation: whole subjects), so the published numbers can be read against the fixed probe.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from quality import fit_groups, group_of, validation_split  # noqa: E402

from vmcli.config import LoadOptions  # noqa: E402
from vmcli.data import MODALITIES, scan  # noqa: E402
from vmcli.evaluation import extract_features, fit_linear_probe  # noqa: E402
from vmcli.pipeline import FeatureExtractor, build_encoder, load_encoder  # noqa: E402


def scores(feats: torch.Tensor, y: torch.Tensor, split: dict, groups: torch.Tensor | None) -> dict:
    probe = fit_linear_probe(feats[split["fit"]], y[split["fit"]], 0, "cpu", groups=groups)
    return {
        "l2": probe.l2,
        "val": probe.accuracy(feats[split["val"]], y[split["val"]]),
        "test": probe.accuracy(feats[split["test"]], y[split["test"]]),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    first = json.loads((args.runs[0] / "config.json").read_text())
    root = Path(first["train"]["data"])
    modality = MODALITIES["sensor"]
    index = scan(root, MODALITIES, modality="sensor")
    labeled = [it for it in index.items if it.label is not None]
    data = modality.load(index.root, labeled, LoadOptions(), meta=first["data_meta"])
    classes = sorted({it.label for it in data.items})
    y = torch.tensor([classes.index(it.label) for it in data.items])
    train_idx = [i for i, it in enumerate(data.items) if it.split == "train"]
    test_idx = [i for i, it in enumerate(data.items) if it.split == "test"]
    fit_idx, val_idx = validation_split(data.items, train_idx, group_of=group_of)
    split = {
        k: torch.tensor(v) for k, v in (("fit", fit_idx), ("val", val_idx), ("test", test_idx))
    }
    groups = fit_groups(data.items, fit_idx, group_of)
    print(
        f"fit {len(fit_idx)} windows of {len(torch.unique(groups))} recordings / val {len(val_idx)} / test {len(test_idx)}"
    )

    report: dict = {"data": str(root), "runs": {}, "baselines": {}}
    features: dict[str, torch.Tensor] = {}
    extractor = None
    for run in args.runs:
        extractor = load_encoder(run)
        features[str(run)] = extract_features(extractor, data.x, "cpu")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        random_enc = build_encoder(
            first["train"]["encoder"], extractor.space, tuple(first["data_meta"]["raw_shape"])
        )
    baselines = {
        "random encoder": extract_features(
            FeatureExtractor(extractor.space, random_enc), data.x, "cpu"
        )
    }
    baselines.update(modality.raw_baselines(data, extractor.space))
    for kind, table in (("runs", features), ("baselines", baselines)):
        for name, feats in table.items():
            report[kind][name] = {
                "windows": scores(feats, y, split, None),
                "recordings": scores(feats, y, split, groups),
            }
            r = report[kind][name]
            print(
                f"{name[-60:]:>60}  val {r['windows']['val']:.3f} → {r['recordings']['val']:.3f}"
                f"  test {r['windows']['test']:.3f} → {r['recordings']['test']:.3f}"
                f"  L2 {r['windows']['l2']:g} → {r['recordings']['l2']:g}",
                flush=True,
            )
    for key in ("val", "test"):
        before = [r["windows"][key] for r in report["runs"].values()]
        after = [r["recordings"][key] for r in report["runs"].values()]
        diff = [a - b for a, b in zip(after, before, strict=True)]
        sd = statistics.stdev(diff) if len(diff) > 1 else 0.0
        report[f"runs_{key}"] = {
            "windows_mean": statistics.mean(before),
            "recordings_mean": statistics.mean(after),
            "paired_mean": statistics.mean(diff),
            "paired_sd": sd,
        }
        print(
            f"runs, {key}: {statistics.mean(before):.4f} → {statistics.mean(after):.4f} "
            f"(paired {statistics.mean(diff):+.4f} ± {sd:.4f}, {len(diff)} runs)"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
