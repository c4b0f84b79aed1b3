"""synth-clip, the bundled small CLIP: its pretraining on SynthWorld and its model card."""
