"""Tables in the papers' layouts on rows written like the project's: column order (methods in the
project's order, datasets in the benchmark's), the average first (base-to-novel) or last (GalLoP's
tables), HM of the seed- and dataset-averaged base and novel, number formatting, missing cells, the
checkpoint beside a method's name, and the same table as markdown, booktabs LaTeX and CSV."""

import pytest

from vlp_core.experiments.paper_tables import latex_escape, paper_table, render

VITB16 = {"model": "ViT-B-16-quickgelu", "pretrained": "openai"}


def config(protocol):
    return {"spec": {"protocol": protocol}, **VITB16}


def b2n(method, dataset, seed, base, novel, **extra):
    return {"dataset": dataset, "method": method, "seed": seed, "shots": 16, "base": base, "novel": novel,
            "recipe": {}, **extra}


B2N_ROWS = [  # GalLoP before CLIP, DTD before ImageNet: the table reorders both; GalLoP has no DTD
    b2n("gallop", "ImageNet", 1, 84.0, 60.0, checkpoint="last epoch"),  # HM 70.00 and 75.67: their mean,
    b2n("gallop", "ImageNet", 2, 71.0, 81.0, checkpoint="last epoch"),  # 72.84, is not the HM of 77.5, 70.5
    b2n("zeroshot", "DTD", 1, 53.0, 60.0), b2n("zeroshot", "DTD", 2, 53.0, 60.0),
    b2n("zeroshot", "ImageNet", 1, 72.0, 68.0), b2n("zeroshot", "ImageNet", 2, 72.0, 68.0),
]


def test_base_to_novel_as_promptsrc_prints_it():
    table = paper_table(B2N_ROWS, config("base2novel"))
    # CLIP's average: HM(62.5, 64.0) = 63.24, not the mean of its per-dataset HMs (69.94, 56.28) = 63.11
    assert render(table, "markdown") == (
        "**Base-to-novel generalisation: top-1 (%) on base and novel classes, HM; ViT-B-16-quickgelu (openai), "
        "mean over seeds 1, 2**\n\n"
        "| Dataset | CLIP Base | CLIP Novel | CLIP HM | GalLoP (last epoch) Base | GalLoP (last epoch) Novel "
        "| GalLoP (last epoch) HM |\n"
        "|:---|---:|---:|---:|---:|---:|---:|\n"
        "| Average | 62.50 | 64.00 | 63.24 | - | - | - |\n"
        "| ImageNet | 72.00 | 68.00 | 69.94 | 77.50 | 70.50 | 73.83 |\n"
        "| DTD | 53.00 | 60.00 | 56.28 | - | - | - |\n")


def test_base_to_novel_in_booktabs():
    assert render(paper_table(B2N_ROWS, config("base2novel")), "latex") == (
        "\\begin{table}[t]\n"
        "\\centering\n"
        "\\caption{Base-to-novel generalisation: top-1 (\\%) on base and novel classes, HM; ViT-B-16-quickgelu "
        "(openai), mean over seeds 1, 2}\n"
        "\\begin{tabular}{lrrrrrr}\n"
        "\\toprule\n"
        " & \\multicolumn{3}{c}{CLIP} & \\multicolumn{3}{c}{GalLoP (last epoch)} \\\\\n"
        "\\cmidrule(lr){2-4} \\cmidrule(lr){5-7}\n"
        "Dataset & Base & Novel & HM & Base & Novel & HM \\\\\n"
        "\\midrule\n"
        "Average & 62.50 & 64.00 & 63.24 & -- & -- & -- \\\\\n"
        "\\midrule\n"
        "ImageNet & 72.00 & 68.00 & 69.94 & 77.50 & 70.50 & 73.83 \\\\\n"
        "DTD & 53.00 & 60.00 & 56.28 & -- & -- & -- \\\\\n"
        "\\bottomrule\n"
        "\\end{tabular}\n"
        "\\end{table}\n")


def test_base_to_novel_as_csv():
    assert render(paper_table(B2N_ROWS, config("base2novel")), "csv") == (
        "Dataset,CLIP Base,CLIP Novel,CLIP HM,GalLoP (last epoch) Base,GalLoP (last epoch) Novel,"
        "GalLoP (last epoch) HM\n"
        "Average,62.50,64.00,63.24,,,\n"
        "ImageNet,72.00,68.00,69.94,77.50,70.50,73.83\n"
        "DTD,53.00,60.00,56.28,,,\n")


def acc(method, dataset, shots, seed, value, **extra):
    return {"dataset": dataset, "method": method, "seed": seed, "shots": shots, "acc": value, "recipe": {}, **extra}


FEW_SHOT_ROWS = [
    acc("gallop", "DTD", 16, 1, 75.44), acc("gallop", "DTD", 16, 2, 75.56), acc("gallop", "ImageNet", 16, 1, 75.1),
    acc("gallop", "ImageNet", 16, 2, 75.1), acc("coop", "ImageNet", 16, 1, 71.66), acc("coop", "DTD", 16, 1, 69.94),
    acc("coop", "ImageNet", 1, 1, 65.0),  # no DTD at K = 1: no average either
]


def test_few_shot_as_gallop_prints_it():
    table = paper_table(FEW_SHOT_ROWS, config("fewshot"))
    assert render(table, "markdown") == (
        "**Few-shot classification: top-1 (%); ViT-B-16-quickgelu (openai), mean over seeds 1, 2**\n\n"
        "| K | Method | ImageNet | DTD | Average |\n"
        "|:---|:---|---:|---:|---:|\n"
        "| 1 | CoOp | 65.0 | - | - |\n"
        "| 16 | CoOp | 71.7 | 69.9 | 70.8 |\n"
        "| 16 | GalLoP | 75.1 | 75.5 | 75.3 |\n")
    assert render(table, "csv").splitlines() == ["K,Method,ImageNet,DTD,Average", "1,CoOp,65.0,,",
                                                  "16,CoOp,71.7,69.9,70.8", "16,GalLoP,75.1,75.5,75.3"]
    latex = render(table, "latex")
    assert "\\begin{tabular}{llrrr}" in latex and "\\multicolumn" not in latex
    assert "K & Method & ImageNet & DTD & Average \\\\\n\\midrule\n1 & CoOp & 65.0 & -- & -- \\\\" in latex


def test_domain_generalisation_puts_the_source_first_and_averages_the_targets():
    rows = [{**acc("gallop", target, 16, 1, value), "source": "ImageNet"} for target, value in
            (("ImageNet-R", 77.8), ("ImageNet", 75.1), ("ImageNet-A", 50.3), ("ImageNet-V2", 67.5),
             ("ImageNet-Sketch", 49.5))]
    csv = render(paper_table(rows, config("dg")), "csv").splitlines()
    assert csv == ["K,Method,ImageNet,ImageNet-V2,ImageNet-Sketch,ImageNet-A,ImageNet-R,Average",
                   "16,GalLoP,75.1,67.5,49.5,50.3,77.8,61.3"]  # (67.5 + 49.5 + 50.3 + 77.8) / 4 = 61.275


OOD = {"iNaturalist": (13.7, 97.1), "SUN": (24.9, 94.0), "Places": (32.5, 91.3), "Textures": (38.4, 90.4)}


def ood_rows():
    rows = [{"dataset": "ImageNet", "ood": ood, "method": "gallop", "seed": 1, "score": "gl_mcm", "fpr95": fpr,
             "auroc": auroc, "fpr95_rule": "closest", "recipe": {}} for ood, (fpr, auroc) in OOD.items()]
    rows += [{**row, "method": "zeroshot", "score": "mcm", "fpr95": row["fpr95"] + 10.0} for row in rows]
    return rows


def test_ood_as_gallop_prints_it():
    table = paper_table(ood_rows(), config("ood"))
    assert render(table, "markdown").splitlines()[2:] == [
        "| Method | iNaturalist FPR95 / AUROC | SUN FPR95 / AUROC | Places FPR95 / AUROC | Textures FPR95 / AUROC "
        "| Average FPR95 / AUROC |",
        "|:---|---:|---:|---:|---:|---:|",
        "| CLIP (MCM) | 23.7 / 97.1 | 34.9 / 94.0 | 42.5 / 91.3 | 48.4 / 90.4 | 37.4 / 93.2 |",
        "| GalLoP (GL-MCM) | 13.7 / 97.1 | 24.9 / 94.0 | 32.5 / 91.3 | 38.4 / 90.4 | 27.4 / 93.2 |"]
    assert render(table, "csv").splitlines()[0] == (
        "Method,iNaturalist FPR95,iNaturalist AUROC,SUN FPR95,SUN AUROC,Places FPR95,Places AUROC,Textures FPR95,"
        "Textures AUROC,Average FPR95,Average AUROC")
    latex = render(table, "latex")
    assert (" & \\multicolumn{2}{c}{iNaturalist} & \\multicolumn{2}{c}{SUN} & \\multicolumn{2}{c}{Places} & "
            "\\multicolumn{2}{c}{Textures} & \\multicolumn{2}{c}{Average} \\\\") in latex
    assert "\\cmidrule(lr){2-3} \\cmidrule(lr){4-5}" in latex
    assert "GalLoP (GL-MCM) & 13.7 & 97.1 & 24.9 & 94.0" in latex


def test_errors_and_escaping():
    with pytest.raises(ValueError, match="unknown table format 'html'; choose from markdown, latex, csv"):
        render(paper_table(B2N_ROWS, config("base2novel")), "html")
    with pytest.raises(ValueError, match="no rows"):
        paper_table([], config("fewshot"))
    assert latex_escape("colour_shapes 5% & #1") == "colour\\_shapes 5\\% \\& \\#1"
