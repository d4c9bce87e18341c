from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('jobs', '0010_job_test_set_and_quote'),
    ]

    operations = [
        migrations.AddField(
            model_name='job',
            name='pause_requested_at',
            field=models.DateTimeField(blank=True, help_text='A pause asked of the running attempt: it stops at its next step, keeps a checkpoint and the job becomes paused.', null=True),
        ),
        migrations.AlterField(
            model_name='job',
            name='state',
            field=models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('succeeded', 'Succeeded'), ('failed', 'Failed'), ('cancelled', 'Cancelled'), ('paused', 'Paused')], db_index=True, default='queued', max_length=12),
        ),
    ]
