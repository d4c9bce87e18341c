"""Chat models in the catalog (issue 15): task family, context length, notes, the chat template's source,
one default model per family (all-MiniLM-L6-v2 for classification), object-storage sources."""

from django.db import migrations, models


def minilm_facts(apps, schema_editor):
    from catalog.defaults import MINILM, MINILM_FACTS

    apps.get_model("catalog", "BaseModel").objects.filter(slug="all-minilm-l6-v2", source=MINILM["source"]).update(
        **MINILM_FACTS)


class Migration(migrations.Migration):

    dependencies = [
        ('catalog', '0004_basemodel_hub_id'),
    ]

    operations = [
        migrations.AddField(
            model_name='basemodel',
            name='chat_template_source',
            field=models.CharField(blank=True, choices=[('', 'None (not a chat model)'), ('model', "The tokenizer's own"), ('default', "Lathe's default (ChatML, docs/datasets.md)")], default='', help_text='Chat models: where the chat template comes from (set when the folder is validated).', max_length=10),
        ),
        migrations.AddField(
            model_name='basemodel',
            name='context_length',
            field=models.PositiveIntegerField(blank=True, help_text='Most tokens the model takes (max_position_embeddings); read from config.json for chat models when left blank.', null=True),
        ),
        migrations.AddField(
            model_name='basemodel',
            name='is_default',
            field=models.BooleanField(default=False, help_text='The model of its family that measures datasets at upload (one per family).'),
        ),
        migrations.AddField(
            model_name='basemodel',
            name='notes',
            field=models.TextField(blank=True, help_text="Shown to customers, e.g. 'weights passed through 4-bit rounding'."),
        ),
        migrations.AddField(
            model_name='basemodel',
            name='task_family',
            field=models.CharField(choices=[('classification', 'Classification (encoder models)'), ('chat', 'Chat (causal language models)')], default='classification', max_length=20),
        ),
        migrations.AlterField(
            model_name='basemodel',
            name='architecture',
            field=models.CharField(help_text="The config's model_type, e.g. bert, llama", max_length=60),
        ),
        migrations.AlterField(
            model_name='basemodel',
            name='source',
            field=models.CharField(help_text='Package module, directory, storage prefix or hub id', max_length=300),
        ),
        migrations.AlterField(
            model_name='basemodel',
            name='source_kind',
            field=models.CharField(choices=[('package', 'Installed Python package (get_model_path())'), ('path', 'Local directory'), ('storage', 'Object-storage prefix (the storage API; copied once into a local cache)'), ('hub', 'Hugging Face Hub id (deployments with internet only)')], max_length=16),
        ),
        migrations.AddConstraint(
            model_name='basemodel',
            constraint=models.UniqueConstraint(condition=models.Q(('is_default', True)), fields=('task_family',), name='catalog_one_default_per_family'),
        ),
        migrations.RunPython(minilm_facts, migrations.RunPython.noop),
    ]
