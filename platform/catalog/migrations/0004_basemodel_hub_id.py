"""The catalog knows each model's public Hugging Face id (model cards and LoRA
adapter configs name it instead of a path on the server)."""
from django.db import migrations, models


def set_minilm(apps, schema_editor):
    from catalog.defaults import MINILM, MINILM_HUB_ID

    apps.get_model("catalog", "BaseModel").objects.filter(
        slug="all-minilm-l6-v2", source=MINILM["source"], hub_id="").update(hub_id=MINILM_HUB_ID)


class Migration(migrations.Migration):
    dependencies = [("catalog", "0003_default_hyperparameters")]
    operations = [
        migrations.AddField(
            model_name="basemodel",
            name="hub_id",
            field=models.CharField(blank=True, max_length=200, help_text=(
                "The model's public Hugging Face id (e.g. sentence-transformers/all-MiniLM-L6-v2), written into model "
                "cards and adapter configs; for a 'hub' source it is the source itself.")),
        ),
        migrations.RunPython(set_minilm, migrations.RunPython.noop),
    ]
