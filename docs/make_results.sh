#!/usr/bin/env bash
# Reproduce docs/results/: every SynthWorld run behind docs/results.md (under two CPU-hours).
#   bash docs/make_results.sh        # everything, one part after the other
#   bash docs/make_results.sh a      # part a only (base-to-novel, OOD, DiSa ablations); b likewise
# The two parts are independent and can run at the same time (one core each: OMP_NUM_THREADS=1).
# Each command resumes where it stopped (per-run checkpoints under docs/results/<name>/runs/).
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/results
all="zeroshot coop ivlp promptsrc disa gallop"
b2n="vlp protocol base2novel --datasets colour_shapes --seeds 1 --quiet"  # ablations: one seed

part_a() {
  vlp protocol base2novel --methods $all --seeds 1 2 3 --out $out/base2novel --quiet
  vlp protocol ood --methods zeroshot coop promptsrc disa gallop --seeds 1 --out $out/ood --quiet
  # DiSa ablations on colour_shapes (its novel half is held out of pretraining); rho = 0.3 is the default
  $b2n --methods disa --set disa.use_cir=false --out $out/ablation_disa/no_cir
  $b2n --methods disa --set disa.use_dir=false --out $out/ablation_disa/no_dir
  $b2n --methods disa --set disa.cir_use_mask=false --out $out/ablation_disa/no_mask
  $b2n --methods disa --set disa.use_sr=false --out $out/ablation_disa/no_sr
  for loss in mse l1; do
    $b2n --methods disa --set disa.dir_loss=$loss --out $out/ablation_disa/dir_$loss
  done
  for ratio in 0.0 0.2 0.4 0.6; do
    pool=$(python3 -c "print(max($ratio, 0.5))")
    $b2n --methods disa --set disa.mask_ratio=$ratio disa.mask_pool=$pool --out $out/ablation_disa/ratio_$ratio
  done
}

part_b() {
  vlp protocol dg --methods $all --seeds 1 --out $out/domain_generalisation --quiet
  vlp protocol fewshot --methods $all --datasets colour_shapes --shots 1 4 16 --seeds 1 \
    --out $out/few_shot --quiet
  # GalLoP ablations (global-only and local-only accuracies are reported by every GalLoP run)
  $b2n --methods gallop --set 'gallop.topk=[5,5,5,5]' --out $out/ablation_gallop/k5
  $b2n --methods gallop --set 'gallop.topk=[20,20,20,20]' --out $out/ablation_gallop/k20
  $b2n --methods gallop --set 'gallop.topk=[64,64,64,64]' --out $out/ablation_gallop/k_all
  $b2n --methods gallop --set gallop.dropout=0.0 gallop.dropout_sampling=without_replacement \
    --out $out/ablation_gallop/no_dropout
  $b2n --methods gallop --set gallop.dropout=0.5 --out $out/ablation_gallop/dropout_0.5
}

case "${1:-all}" in
  a) part_a ;;
  b) part_b ;;
  all) part_a; part_b ;;
  *) echo "usage: $0 [a|b|all]" >&2; exit 2 ;;
esac
