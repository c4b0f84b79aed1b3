"""`vlp diagnose`: does prompt learning have room on a backbone and dataset?"""

from __future__ import annotations

import argparse

from vlp_core.commands.common import add_backbone_arguments, add_device_arguments, check_out

HELP = "does prompt learning have room? zero-shot vs few-shot probes, localisation, OOD"
DESCRIPTION = (
    "Measure a frozen CLIP on datasets: zero-shot top-1 (single template and ensemble), K-shot class-mean and "
    "linear-probe top-1 of the frozen image features and their gap to zero-shot (headroom), the pointing game "
    "of patch and value-only local features where masks exist, and zero-shot MCM OOD detection. Writes "
    "diagnosis.md/json and headroom.png to --out.")
EXAMPLES = """\
  vlp diagnose                                    # synth-clip on every SynthWorld suite
  vlp diagnose --data shapes colour_shapes --seeds 1 --out results/diag
  vlp diagnose --model ViT-B-16-quickgelu --pretrained openai --data-root /data/coop --data Caltech101 DTD \\
      --ood ImageNet:Textures
  vlp diagnose --model ViT-B-16-quickgelu --pretrained openai --data ~/my_photos --shots 8 --out results/diag-mine"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", nargs="+", default=None,
                        help="datasets (default: every SynthWorld classification suite and style domain); also the "
                             "paths of your own images (folders of class folders or CoOp split .json files)")
    parser.add_argument("--ood", nargs="*", default=None, metavar="ID:OOD",
                        help="in-distribution:OOD dataset pairs (default, where shapes is measured: shapes:ood)")
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--n-test", type=int, default=None, help="first N test images per dataset (default: all)")
    parser.add_argument("--data-root", default=None, help="folder holding the CoOp-format datasets (default: "
                                                          "SynthWorld)")
    parser.add_argument("--out", default="results/diagnosis")
    add_backbone_arguments(parser)
    add_device_arguments(parser, workers=False, precision=False)


def run(args: argparse.Namespace) -> int:
    check_out(args.out, "diagnose")
    from vlp_core.backbone import DEFAULT_MODEL, load_clip
    from vlp_core.engine.trainer import resolve_device
    from vlp_core.tools.diagnose import diagnose, write_diagnosis

    clip = load_clip(args.model or DEFAULT_MODEL, args.pretrained, device=resolve_device(args.device))
    datasets, ood_pairs = diagnosis_datasets(args.data, args.ood, args.data_root, clip.image_size)
    report = diagnose(clip, datasets, ood_pairs, shots=args.shots, seeds=args.seeds, n_test=args.n_test)
    path = write_diagnosis(report, args.out)
    print(path.read_text())
    print(f"diagnosis in {args.out} (diagnosis.md, diagnosis.json, headroom.png)")
    return 0


def diagnosis_datasets(names: list[str] | None, ood_pairs: list[str] | None, root: str | None, image_size: int):
    """The datasets and "ID:OOD" pairs to measure -> (datasets, [(ID, OOD)]); SynthWorld (no data
    root) defaults to every classification suite and style domain, and, where shapes is measured, the
    pair shapes:ood."""
    from vlp_core.data.datasets import data_source, open_dataset

    synthetic = data_source(root) == "synthworld"
    if names is None:
        if not synthetic:
            raise ValueError("name the datasets to diagnose: --data Caltech101 DTD ...")
        from vlp_core.data.synthworld import CLASSIFICATION_SUITES

        names = list(CLASSIFICATION_SUITES)
    if ood_pairs is None:
        ood_pairs = ["shapes:ood"] if synthetic and "shapes" in names else []
    pairs = []
    for pair in ood_pairs:
        if pair.count(":") != 1:
            raise ValueError(f"--ood takes ID:OOD pairs such as shapes:ood, got {pair!r}")
        id_name, ood_name = pair.split(":")
        pairs.append((open_dataset(id_name, root, image_size=image_size, splits=("test",)),
                      open_dataset(ood_name, root, image_size=image_size, splits=("test",), ood=True)))
    return [open_dataset(name, root, image_size=image_size) for name in names], pairs
