# The status shown while rows are checked reads "Checking" ("validation" names the held-out split only);
# its stored value stays "validating", the word API v1 published. A label: no change to the table.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("datasets", "0006_check_sending_and_start"),
    ]

    operations = [
        migrations.AlterField(
            model_name="dataset",
            name="status",
            field=models.CharField(
                choices=[("uploaded", "Uploaded"), ("validating", "Checking"), ("ready", "Ready"), ("invalid", "Invalid")],
                default="uploaded",
                max_length=16,
            ),
        ),
    ]
