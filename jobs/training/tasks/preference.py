"""Preference tuning (DPO, ORPO, KTO, SimPO): held-out pairs scored by the model's own log-probabilities."""

from __future__ import annotations

from jobs.training import registry
from jobs.training.tasks.base import CausalKind, Evaluation


class Preference(CausalKind):
    name = "preference"
    metric_names = {
        "reward_accuracy": "Pair accuracy (prefers chosen)",
        "reward_margin": "Mean log-prob margin, chosen − rejected",
        "desirable_log_prob": "Mean log-prob of desirable answers",
        "undesirable_log_prob": "Mean log-prob of undesirable answers",
        "pairs_scored": "Held-out pairs scored (an answer token within max_length)",
        "rows_scored": "Held-out rows scored (an answer token within max_length)",
    }

    def metrics(self, evaluation: Evaluation) -> dict[str, float]:
        from jobs.training.metrics import preference_metrics

        hp = evaluation.hp
        return preference_metrics(
            evaluation.trainer, evaluation.eval_key, evaluation.raw, evaluation.trainer.model, evaluation.tokenizer,
            hp.max_length, hp.batch_size, length_normalised=hp.objective in registry.LENGTH_NORMALISED_OBJECTIVES,
        )


KIND = Preference()
