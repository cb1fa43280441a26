"""Fine-tuning jobs: the Django app (models, views, tasks); the ML engine lives in jobs.training."""
