"""The demo plans (billing/plans.py). Operators edit them in admin and sync
them to Stripe (manage.py sync_plans)."""
from django.db import migrations


def seed(apps, schema_editor):
    from billing.plans import ensure_default_plans

    ensure_default_plans(apps.get_model("billing", "Plan"), apps.get_model("billing", "PlanRate"))


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
