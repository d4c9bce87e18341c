from django.db import migrations, models
import django.db.models.deletion


class Migration(migrations.Migration):

    dependencies = [
        ('corpora', '0002_chat_task'),
        ('jobs', '0009_chat_finetune_kind'),
    ]

    operations = [
        migrations.AddField(
            model_name='job',
            name='test_dataset_version',
            field=models.ForeignKey(blank=True, help_text='Fine-tunes: a dataset version of the same task scored once by the final model (every row of it), never used for training or selection.', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='test_jobs', to='corpora.datasetversion'),
        ),
        migrations.AddField(
            model_name='job',
            name='validation_dataset_version',
            field=models.ForeignKey(blank=True, help_text='Fine-tunes: a dataset version whose every row is the validation split; the training dataset version is then trained on whole (its own validation split included).', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='validation_jobs', to='corpora.datasetversion'),
        ),
        migrations.AddField(
            model_name='job',
            name='test_fraction',
            field=models.FloatField(blank=True, help_text='Fine-tunes: the share of the train split carved (seeded, stratified) as a test split before training.', null=True),
        ),
        migrations.AddField(
            model_name='job',
            name='quote',
            field=models.JSONField(blank=True, default=dict, help_text='The quote (time, cost) at submission, kept to compare with what the job really took.'),
        ),
    ]
