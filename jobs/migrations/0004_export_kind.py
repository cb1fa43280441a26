from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("jobs", "0003_base_model_set_null_keeps_history"),
    ]

    operations = [
        migrations.AlterField(
            model_name="job",
            name="kind",
            field=models.CharField(
                choices=[("train", "Fine-tune"), ("merge", "Merge adapter"), ("export", "Export to GGUF")],
                default="train",
                max_length=16,
            ),
        ),
    ]
