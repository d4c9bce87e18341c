"""UsageSegment now lives in billing (billing 0003 took it over, table and
rows unchanged): drop it from the jobs app's state only."""
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("billing", "0003_usagesegment_from_jobs"),
        ("jobs", "0007_job_progress_at_step_seconds"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="UsageSegment")],
            database_operations=[],
        ),
    ]
