"""The training engine: a TrainingSpec in, a fine-tuned artifact folder and a TrainingResult out (no Django)."""
