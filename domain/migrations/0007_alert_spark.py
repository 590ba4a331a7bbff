from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0006_alert_lifecycle')]

    initial = False

    operations = [
        ops.AddField(
            model_name='AlertRecord',
            name='spark',
            field=fields.CharField(default='', max_length=64),
        ),
    ]
