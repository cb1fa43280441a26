"""What a model serves is computed from its architecture (jobs.training.registry), not stored: a new task needs no
data migration. A derived model keeps the one task it was trained for."""

from django.db import migrations, models


def keep_trained_task(apps, schema_editor):  # type: ignore[no-untyped-def]
    CatalogModel = apps.get_model("catalog", "CatalogModel")
    for model in CatalogModel.objects.exclude(kind="base").only("id", "tasks"):
        if model.tasks:
            CatalogModel.objects.filter(pk=model.pk).update(task=str(model.tasks[0])[:32])


def restore_tasks(apps, schema_editor):  # type: ignore[no-untyped-def]
    CatalogModel = apps.get_model("catalog", "CatalogModel")
    for model in CatalogModel.objects.exclude(task="").only("id", "task"):
        CatalogModel.objects.filter(pk=model.pk).update(tasks=[model.task])


class Migration(migrations.Migration):
    dependencies = [("catalog", "0002_deployment_profile")]

    operations = [
        migrations.AddField(
            model_name="catalogmodel", name="task", field=models.CharField(blank=True, max_length=32)
        ),
        migrations.RunPython(keep_trained_task, restore_tasks),
        migrations.RemoveField(model_name="catalogmodel", name="tasks"),
    ]
