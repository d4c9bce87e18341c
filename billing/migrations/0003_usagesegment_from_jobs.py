"""UsageSegment moves from the jobs app into billing's metering (issue 13).

State only: the table keeps its name (`jobs_usagesegment`, via Meta.db_table),
its rows, index and constraints, so nothing is copied or locked on a large
table; the same on SQLite and PostgreSQL. UsageExclusion's foreign key points at
the same table and only changes target model in the state. jobs 0008 then
drops the old model from the jobs app's state. The content type row follows
the model, so operators' permissions on it stay granted."""
import django.db.models.deletion
from django.db import migrations, models


def move_content_type(apps, schema_editor, source="jobs", target="billing"):
    ContentType = apps.get_model("contenttypes", "ContentType")
    if not ContentType.objects.filter(app_label=target, model="usagesegment").exists():
        ContentType.objects.filter(app_label=source, model="usagesegment").update(app_label=target)


def move_content_type_back(apps, schema_editor):
    move_content_type(apps, schema_editor, source="billing", target="jobs")


class Migration(migrations.Migration):

    dependencies = [
        ("billing", "0002_seed_plans"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("jobs", "0007_job_progress_at_step_seconds"),
        ("tenancy", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="UsageSegment",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("attempt", models.PositiveSmallIntegerField()),
                        ("lease_token", models.UUIDField()),
                        ("device_class", models.CharField(max_length=40)),
                        ("device_count", models.PositiveSmallIntegerField(default=1)),
                        ("started_at", models.DateTimeField()),
                        ("ended_at", models.DateTimeField()),
                        ("seconds", models.DecimalField(decimal_places=3, max_digits=12)),
                        ("created_at", models.DateTimeField(auto_now_add=True, db_index=True)),
                        ("job", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="usage_segments",
                                                  to="jobs.job")),
                        ("ledger_entry", models.ForeignKey(blank=True, help_text="Set once, when the attempt's usage is rolled up.",
                                                           null=True, on_delete=django.db.models.deletion.PROTECT,
                                                           related_name="segments", to="billing.ledgerentry")),
                        ("organization", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT,
                                                           related_name="usage_segments", to="tenancy.organization")),
                    ],
                    options={
                        "db_table": "jobs_usagesegment",
                        "ordering": ("id",),
                        "indexes": [models.Index(fields=["organization", "created_at"], name="jobs_usages_organiz_20e606_idx")],
                    },
                ),
                migrations.AlterField(
                    model_name="usageexclusion",
                    name="segment",
                    field=models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name="exclusion",
                                               to="billing.usagesegment"),
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(move_content_type, move_content_type_back),
    ]
