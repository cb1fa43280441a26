from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("jobs", "0004_export_kind"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="checkpoints_deleted_at",
            field=models.DateTimeField(
                blank=True,
                help_text="When the retention rule deleted the checkpoints of this failed or cancelled job.",
                null=True,
            ),
        ),
    ]
